"""Read state-dict checkpoints (.safetensors, .npz, .pth) and fit them to an architecture."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from engine.bundle import ModelBundle, check_weights_fit
from engine.data.preprocess import Preprocessing
from engine.errors import UserError
from engine.models import registry

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
        try:
            loaded = mx.load(str(path))
        except (RuntimeError, ValueError, OSError) as exc:
            raise UserError(f"checkpoint is truncated or corrupt ({exc})", path) from None
        tensors = {k: np.array(v.astype(mx.float32) if v.dtype == mx.bfloat16 else v) for k, v in loaded.items()}
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        tensors = _read_torch(path)
    else:
        raise UserError(f"unsupported checkpoint type '{suffix}' (use .safetensors, .npz or .pth)", path)
    if not tensors:
        raise UserError("checkpoint holds no tensors", path)
    return tensors


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise UserError(TORCH_HINT, path) from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"not a plain weights checkpoint, refused to unpickle ({first[:160]})", path) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(f"expected a state dict, found {type(obj).__name__}", path)
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            if v.dtype == torch.bfloat16:
                v = v.float()
            out[k.removeprefix("module.")] = v.numpy()
    return out


def conform_layouts(model_params: dict[str, mx.array], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Transpose PyTorch conv kernels (O, I, kh, kw) to MLX's (O, kh, kw, I) where that makes them fit."""
    out = {}
    for name, value in weights.items():
        expected = model_params.get(name)
        if expected is not None and value.ndim == 4 and tuple(value.shape) != tuple(expected.shape):
            t = value.transpose(0, 2, 3, 1)
            if tuple(t.shape) == tuple(expected.shape):
                value = t
        out[name] = value
    return out


def import_checkpoint(
    arch_name: str,
    weights_path: str | Path,
    num_classes: int | None = None,
    labels: list[str] | None = None,
    preprocessing: Preprocessing | None = None,
    name: str | None = None,
    arch_overrides: dict | None = None,
) -> ModelBundle:
    """Build ``arch_name`` and load a checkpoint into it, reporting every mismatch by name.

    Raises:
        UserError: unknown architecture, unreadable checkpoint, inconsistent
            labels/class count, or tensors that are missing, unexpected or mis-shaped.
    """
    arch = registry.get(arch_name)
    path = Path(weights_path).expanduser()
    raw = arch.sanitize(read_state_dict(path))
    config = dict(arch_overrides or {})
    if labels is not None and num_classes is not None and len(labels) != num_classes:
        raise UserError(f"--labels gives {len(labels)} names but --num-classes is {num_classes}")
    if num_classes is None and labels is not None:
        num_classes = len(labels)
    if num_classes is None and arch.infer_config is not None:
        config.update(arch.infer_config(raw))
    if num_classes is not None:
        config["num_classes"] = num_classes
    model = arch.build(arch.default_config(**config))
    params = dict(tree_flatten(model.parameters()))
    weights = conform_layouts(params, raw)
    check_weights_fit(model, weights, path)
    model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=True)
    model.eval()
    mx.eval(model.parameters())
    arch_config = arch.default_config(**config)
    n = arch_config.get("num_classes")
    labels = labels or [str(i) for i in range(n)]
    if len(labels) != n:
        raise UserError(f"{len(labels)} labels given but the checkpoint's head has {n} classes", path)
    return ModelBundle(
        name=name or path.stem,
        arch=arch_name,
        arch_config=arch_config,
        preprocessing=preprocessing or arch.default_preprocessing,
        labels=labels,
        model=model,
        source={"kind": "imported", "checkpoint": str(path.resolve()), "format": path.suffix.lower().lstrip(".")},
    )
