"""One entry point for every importable file: state dicts, Keras files and ONNX graphs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.core.errors import UserError
from engine.core.memory_guard import IMPORT_FACTOR, check_memory, files_size
from engine.image.bundle import ModelBundle
from engine.image.data.presets import apply_spec

STATE_DICT_SUFFIXES = (".safetensors", ".npz", ".pth", ".pt", ".bin", ".ckpt")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
ONNX_SUFFIXES = (".onnx",)
IMPORTABLE_SUFFIXES = STATE_DICT_SUFFIXES + KERAS_SUFFIXES + ONNX_SUFFIXES


def file_kind(path: str | Path) -> str:
    """'state_dict', 'keras' or 'onnx' from the suffix, 'huggingface' for a transformers folder; else UserError."""
    from engine.image.importers.hf_folder import is_hf_folder

    if is_hf_folder(path):
        return "huggingface"
    suffix = Path(path).suffix.lower()
    if suffix in STATE_DICT_SUFFIXES:
        return "state_dict"
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    raise UserError(
        f"unsupported checkpoint type '{suffix or 'no suffix'}' (use {', '.join(IMPORTABLE_SUFFIXES)})",
        path,
    )


def check_importable(path: str | Path) -> str | None:
    """None if ``path`` is an existing file of an importable kind, else a one-line reason (for drop targets)."""
    p = Path(path)
    if not p.is_file() and not p.is_dir():
        return f"{p}: not a file"
    try:
        file_kind(p)
    except UserError as exc:
        return str(exc)
    return None


def import_file(
    path: str | Path,
    arch: str | None = None,
    num_classes: int | None = None,
    labels: list[str] | None = None,
    preprocess: str | None = None,
    input_size: str | tuple | None = None,
    name: str | None = None,
    arch_overrides: dict | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ModelBundle:
    """Import a checkpoint or model file into a (float32, unsaved) bundle.

    State dicts need ``arch``; Keras and ONNX files carry their own graph.
    ``preprocess`` (a preset and overrides, see :func:`engine.image.data.presets.apply_spec`)
    and ``input_size`` change the preprocessing the bundle records.

    Raises:
        UserError: an unsupported file, a missing architecture, or any problem the importer names.
    """
    path = Path(path).expanduser()
    kind = file_kind(path)
    check_memory(files_size([path]), IMPORT_FACTOR, "import", path)
    if kind == "keras" and arch and arch != "graph" and path.suffix.lower() != ".keras":
        kind = "state_dict"  # a Keras HDF5 file read by layer names into a built-in architecture (xception)
    if kind == "state_dict":
        from engine.image.importers.checkpoint import import_checkpoint
        from engine.image.models import registry

        if not arch:
            raise UserError(
                f"a state dict holds no architecture: choose one with --arch ({', '.join(registry.names())})", path
            )
        bundle = import_checkpoint(
            arch, path, num_classes, labels, None, name, arch_overrides, progress=progress, should_stop=should_stop
        )
    elif kind == "huggingface":
        from engine.image.importers.hf_folder import import_hf_folder

        bundle = import_hf_folder(path, labels, name, progress=progress, should_stop=should_stop)
    elif kind == "keras":
        from engine.image.importers.keras_file import import_keras

        bundle = import_keras(path, labels, name, progress=progress, should_stop=should_stop)
    else:
        from engine.image.importers.onnx_graph import import_onnx

        bundle = import_onnx(path, labels, name, progress=progress, should_stop=should_stop)
    if kind != "state_dict" and num_classes is not None and num_classes != len(bundle.labels):
        raise UserError(f"--num-classes is {num_classes} but the model has {len(bundle.labels)} outputs", path)
    if preprocess or input_size:
        bundle.preprocessing = apply_spec(bundle.preprocessing, preprocess, input_size)
    return bundle
