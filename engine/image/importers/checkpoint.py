"""Read state-dict checkpoints (.safetensors, .npz, .pth) and fit them to an architecture."""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from engine.core.budgets import check_class_count
from engine.core.errors import Cancelled, UserError
from engine.core.native_gate import check_hdf5, check_safetensors
from engine.image.bundle import ModelBundle, check_weights_fit
from engine.image.data.preprocess import Preprocessing
from engine.image.models import registry

TORCH_HINT = (
    "reading .pth needs PyTorch (pip install torch); or convert it once with "
    '`python -c "import torch, safetensors.torch as st; '
    "st.save_file(torch.load('model.pth', weights_only=True), 'model.safetensors')\"`"
)


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Named float tensors from a checkpoint file, as numpy arrays.

    ``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)``, which
    refuses pickled code; a checkpoint that needs it is rejected, never run.

    Raises:
        UserError: missing, truncated or unreadable file, or no tensors in it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError("checkpoint not found", path)
    if path.stat().st_size == 0:
        raise UserError("checkpoint file is empty", path)
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".npz"):
        if suffix == ".safetensors":
            check_safetensors(path)  # a stated size beyond the file never reaches MLX's native reader
        try:
            loaded = mx.load(str(path))
        except (RuntimeError, ValueError, OSError) as exc:
            raise UserError(f"checkpoint is truncated or corrupt ({exc})", path) from None
        if not isinstance(loaded, dict):
            raise UserError("checkpoint holds a single array, not named tensors", path)
        tensors = strip_common_prefix(
            {k: np.array(v.astype(mx.float32) if v.dtype == mx.bfloat16 else v) for k, v in loaded.items()}
        )
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        tensors = _read_torch(path)
    elif suffix in (".h5", ".hdf5"):
        tensors = _read_keras_h5(path)
    else:
        raise UserError(f"unsupported checkpoint type '{suffix}' (use .safetensors, .npz, .pth or Keras .h5)", path)
    if not tensors:
        raise UserError("checkpoint holds no tensors", path)
    return tensors


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise UserError(TORCH_HINT, path) from None
    try:
        # torch warns on stderr about legacy (non-zip) pickles; the CLI's one line must stay one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch's message carries ANSI bold
        first = text.splitlines()[0] if text else type(exc).__name__
        if "Weights only load failed" in first:
            first = "it holds pickled Python objects, not only tensors"
        raise UserError(f"not a plain weights checkpoint, refused to unpickle ({first[:160]})", path) from None
    if not isinstance(obj, dict):
        raise UserError(f"expected a state dict, found {type(obj).__name__}", path)
    # Training checkpoints wrap the weights: {"state_dict": ...}, {"model": ...}, {"model_state_dict": ...}.
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            if v.dtype == torch.bfloat16:
                v = v.float()
            out[str(k)] = v.numpy()
    return strip_common_prefix(out)


def _read_keras_h5(path: Path) -> dict[str, np.ndarray]:
    """Keras HDF5 weights as ``{"layer/var": array}`` (legacy whole-model or weights-only files)."""
    try:
        import h5py
    except ImportError:
        raise UserError("reading .h5 needs the 'h5py' package (pip install h5py)", path) from None
    out = {}
    check_hdf5(path, path)
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for layer in root:
                group = root[layer]
                for n in group.attrs.get("weight_names", []):
                    n = n.decode() if isinstance(n, bytes) else str(n)
                    if n in group:
                        out[n.removesuffix(":0")] = np.asarray(group[n], dtype=np.float32)
    except OSError as exc:
        raise UserError(f"not a readable HDF5 file ({exc})", path) from None
    return out


WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "ema", "model_ema")


def strip_common_prefix(weights: dict) -> dict:
    """Drop a ``module.`` (DataParallel) or ``model.`` (Lightning) prefix that every key shares."""
    for prefix in ("module.", "model."):
        if weights and all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix) :]: v for k, v in weights.items()}
    return weights


def conform_layouts(model_params: dict[str, mx.array], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Transpose PyTorch conv kernels (O, I, kh, kw) to MLX's (O, kh, kw, I).

    The layout is decided for the whole checkpoint: a kernel such as (32, 3, 3, 3)
    fits either way, so it follows the kernels whose shape tells.
    """
    votes = {"torch": 0, "mlx": 0}
    for name, value in weights.items():
        expected = model_params.get(name)
        if expected is None or value.ndim != 4:
            continue
        as_is = tuple(value.shape) == tuple(expected.shape)
        moved = tuple(value.transpose(0, 2, 3, 1).shape) == tuple(expected.shape)
        if as_is != moved:
            votes["mlx" if as_is else "torch"] += 1
    torch_layout = votes["torch"] > votes["mlx"]
    out = {}
    for name, value in weights.items():
        expected = model_params.get(name)
        if expected is not None and value.ndim == 4:
            t = value.transpose(0, 2, 3, 1)
            fits_moved = tuple(t.shape) == tuple(expected.shape)
            if fits_moved and (torch_layout or tuple(value.shape) != tuple(expected.shape)):
                value = np.ascontiguousarray(t)
        out[name] = value
    return out


def _fit_hint(arch_name: str, weights: dict[str, np.ndarray]) -> str:
    """' (the checkpoint's names match resnet50)' when another architecture fits the keys better."""
    best, best_score = None, 0.0
    for other in registry.names():
        arch = registry.get(other)
        if arch.name in ("small_cnn", "graph"):
            continue
        try:
            names = set(dict(tree_flatten(arch.build(arch.default_config()).parameters())))
            keys = set(arch.sanitize(dict(weights)))
        except Exception:  # an architecture that cannot even build from defaults gives no hint
            continue
        score = len(names & keys) / max(1, len(names | keys))
        if score > best_score:
            best, best_score = other, score
    if best is not None and best != arch_name and best_score > 0.9:
        return f" (the checkpoint's names match {best})"
    return ""


def import_checkpoint(
    arch_name: str,
    weights_path: str | Path,
    num_classes: int | None = None,
    labels: list[str] | None = None,
    preprocessing: Preprocessing | None = None,
    name: str | None = None,
    arch_overrides: dict | None = None,
    progress=None,
    should_stop=None,
) -> ModelBundle:
    """Build ``arch_name`` and load a PyTorch-style state dict into it, reporting every mismatch by name.

    Args:
        arch_name: a registered architecture (``resnet18``, ``mobilenet_v2``...; timm names are aliases).
        weights_path: ``.safetensors``/``.npz`` (no torch needed) or ``.pth``/``.pt``/``.bin``.
        num_classes, labels: the head's class count and names (read off the checkpoint when omitted).
        preprocessing: stored in the bundle (default: the architecture's).
        arch_overrides: config values such as ``{"width_mult": 0.5}``.
        progress, should_stop: the usual callbacks.

    Raises:
        UserError: unknown architecture, unreadable checkpoint, inconsistent
            labels/class count, or tensors that are missing, unexpected or mis-shaped.
        Cancelled: should_stop() turned true.
    """
    report = progress or (lambda f, m: None)
    stop = should_stop or (lambda: False)
    arch = registry.get(arch_name)
    path = Path(weights_path).expanduser()
    report(0.05, f"reading {path.name}")
    state = read_state_dict(path)
    if stop():
        raise Cancelled()
    raw = arch.sanitize(state)
    if labels is not None and num_classes is not None and len(labels) != num_classes:
        raise UserError(f"--labels gives {len(labels)} names but --num-classes is {num_classes}")
    if num_classes is None and labels is not None:
        num_classes = len(labels)
    if num_classes is not None:
        num_classes = check_class_count(num_classes, path)
    config = dict(arch.infer_config(raw)) if arch.infer_config is not None else {}
    config.update(arch_overrides or {})
    if num_classes is not None:
        config["num_classes"] = num_classes
    report(0.3, f"building {arch.name}")
    try:
        model = arch.build(arch.default_config(**config))
    except (ValueError, TypeError) as exc:
        raise UserError(f"cannot build {arch.name} with {config} ({exc})", path) from None
    params = dict(tree_flatten(model.parameters()))
    weights = conform_layouts(params, raw)
    try:
        check_weights_fit(model, weights, path)
    except UserError as exc:
        raise UserError(f"{exc}{_fit_hint(arch.name, state)}") from None
    if stop():
        raise Cancelled()
    report(0.6, "loading weights")
    model.load_weights([(k, mx.array(as_float32(v))) for k, v in weights.items()], strict=True)
    model.eval()
    mx.eval(model.parameters())
    arch_config = arch.default_config(**config)
    n = arch_config.get("num_classes")
    labels = labels or [str(i) for i in range(n)]
    if len(labels) != n:
        raise UserError(f"{len(labels)} labels given but the checkpoint's head has {n} classes", path)
    report(0.9, "loaded")
    if preprocessing is None and arch_config.get("image_size"):
        # A ViT takes one input size (its position embeddings): 384 for the SWAG checkpoints, say.
        size = int(arch_config["image_size"])
        preprocessing = replace(arch.default_preprocessing, input_size=(size, size))
    return ModelBundle(
        name=name or path.stem,
        arch=arch.name,
        arch_config=arch_config,
        preprocessing=preprocessing or arch.default_preprocessing,
        labels=labels,
        model=model,
        source={"kind": "imported", "checkpoint": str(path.resolve()), "format": path.suffix.lower().lstrip(".")},
    )


def as_float32(v: np.ndarray) -> np.ndarray:
    """Float tensors become float32 (a source model is kept in full precision); others stay."""
    return v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) and v.dtype != np.float32 else v
