"""Model bundles: a directory with config.json and model.safetensors.

config.json holds everything needed to rebuild the model exactly: the
architecture and its config, the preprocessing, the class labels and the
per-layer quantization. Saving writes a temporary sibling directory and
renames it into place, so a crash never leaves a half-written bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from engine.core import paths
from engine.core.budgets import check_bundle_config
from engine.core.errors import UserError
from engine.core.fileio import atomic_directory
from engine.core.memory_guard import LOAD_FACTOR, check_memory, files_size
from engine.core.native_gate import check_safetensors
from engine.image.data.preprocess import Preprocessing
from engine.image.models import registry
from engine.image.quant.apply import apply_quant_config, from_storage, to_storage
from engine.image.quant.formats import FLOAT_DTYPES

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


@dataclass
class ModelBundle:
    """A loaded model with everything needed to run and describe it."""

    name: str
    arch: str
    arch_config: dict
    preprocessing: Preprocessing
    labels: list[str]
    model: nn.Module
    quantization: dict | None = None
    source: dict = field(default_factory=dict)
    path: Path | None = None
    _hash: str | None = None

    # -- description -----------------------------------------------------------
    @property
    def compute_dtype(self) -> str:
        return (self.quantization or {}).get("compute_dtype", "float32")

    @property
    def recipe_name(self) -> str:
        if not self.quantization:
            return "fp32"
        return self.quantization.get("recipe", {}).get("name", "custom")

    def config_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "arch": self.arch,
            "arch_config": self.arch_config,
            "preprocessing": self.preprocessing.to_dict(),
            "labels": list(self.labels),
            "quantization": self.quantization,
            "source": self.source,
        }

    def weights(self) -> dict[str, mx.array]:
        return dict(tree_flatten(self.model.parameters()))

    def content_hash(self) -> str:
        """sha256 over the weights and the config that defines the computation."""
        if self._hash is None:
            h = hashlib.sha256()
            defining = {k: v for k, v in self.config_dict().items() if k not in ("name", "source")}
            h.update(json.dumps(defining, sort_keys=True).encode())
            for key, value in sorted(self.weights().items()):
                h.update(key.encode())
                h.update(str(value.dtype).encode())
                h.update(np.asarray(value.view(mx.uint8) if value.dtype != mx.bool_ else value).tobytes())
            self._hash = h.hexdigest()
        return self._hash

    def size_on_disk(self) -> int | None:
        if self.path is None:
            return None
        return sum(f.stat().st_size for f in Path(self.path).iterdir() if f.is_file())

    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one preprocessed input."""
        h, w = self.preprocessing.input_size
        return (h, w, self.preprocessing.channels)

    def clone(self) -> ModelBundle:
        """An independent copy (same structure and weights) to modify without touching this one."""
        import copy

        model = registry.get(self.arch).build(self.arch_config)
        apply_quant_config(model, self.quantization)
        model.load_weights(list(self.weights().items()), strict=True)
        model.eval()
        mx.eval(model.parameters())
        return ModelBundle(
            name=self.name,
            arch=self.arch,
            arch_config=copy.deepcopy(self.arch_config),
            preprocessing=self.preprocessing,
            labels=list(self.labels),
            model=model,
            quantization=copy.deepcopy(self.quantization),
            source=copy.deepcopy(self.source),
            path=self.path,
        )

    # -- running -----------------------------------------------------------------
    def forward(self, x: mx.array) -> mx.array:
        """Float32 NHWC input -> float32 logits, computing in the bundle's dtype."""
        dtype = FLOAT_DTYPES[self.compute_dtype]
        return self.model(x.astype(dtype)).astype(mx.float32)

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        logits = self.forward(mx.array(x))
        mx.eval(logits)
        return np.array(logits)

    # -- saving ------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False, inputs: tuple[str | Path, ...] = ()) -> Path:
        """Write the bundle atomically to ``path`` (a directory).

        ``path`` follows :func:`engine.core.fileio.check_output_dir`: a folder this app wrote is replaced
        only with ``overwrite``; anything else already there is refused, as are ``inputs``.
        """
        path = Path(path).expanduser().resolve()
        with atomic_directory(path, "model bundle", overwrite=overwrite, inputs=inputs) as tmp:
            weights = to_storage(self.weights(), self.quantization)
            mx.save_safetensors(str(tmp / WEIGHTS_NAME), weights, metadata={"format": "mlx"})
            _write_json(tmp / CONFIG_NAME, self.config_dict())
            _fsync_dir(tmp)
        self.path = path
        return path


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def resolve_model_path(spec: str | Path) -> Path:
    """'default' -> the shipped model; anything else is a bundle directory path."""
    if str(spec) == "default":
        return paths.DEFAULT_MODEL_DIR
    return Path(spec).expanduser()


def read_config(path: Path) -> dict:
    cfg_path = path / CONFIG_NAME
    if not path.exists():
        raise UserError("model bundle not found", path)
    if not path.is_dir():
        raise UserError("not a model bundle: expected a directory with config.json and model.safetensors", path)
    if not cfg_path.exists():
        raise UserError("not a model bundle: config.json is missing", path)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config.json is not valid JSON ({exc})", cfg_path) from None
    for key in ("arch", "labels", "preprocessing"):
        if key not in cfg:
            raise UserError(f"config.json lacks '{key}'", cfg_path)
    check_bundle_config(cfg, cfg_path)  # sizes a file states pass a budget before anything is allocated
    return cfg


def load_weights_file(path: Path) -> dict[str, mx.array]:
    """Read a safetensors file; truncation and corruption become UserErrors."""
    if not path.exists():
        raise UserError("weights file is missing", path)
    if path.stat().st_size < 8:
        raise UserError("weights file is empty or truncated", path)
    check_safetensors(path)  # a stated size beyond the file never reaches MLX's native reader
    try:
        weights = mx.load(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise UserError(f"weights file is truncated or corrupt ({exc})", path) from None
    if not isinstance(weights, dict):
        raise UserError("weights file holds a single array, not named tensors", path)
    return weights


#: Bundles read from disk, by resolved path: how tests see that a job loads each model once.
LOADS: Counter[str] = Counter()


def load_bundle(spec: str | Path) -> ModelBundle:
    """Load a bundle directory (or 'default').

    Raises:
        UserError: missing files, invalid JSON, unknown architecture, truncated
            weights, or weights that do not fit the recorded architecture.
    """
    path = resolve_model_path(spec)
    cfg = read_config(path)
    LOADS[str(path.resolve())] += 1
    arch = registry.get(cfg["arch"])
    try:
        model = arch.build(cfg.get("arch_config", {}))
        apply_quant_config(model, cfg.get("quantization"))
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"config.json does not describe a buildable {cfg['arch']} ({exc})", path) from None
    check_memory(files_size([path / WEIGHTS_NAME]), LOAD_FACTOR, "load", path)
    weights = from_storage(load_weights_file(path / WEIGHTS_NAME), cfg.get("quantization"))
    check_weights_fit(model, weights, path / WEIGHTS_NAME)
    model.load_weights(list(weights.items()), strict=True)
    model.eval()
    mx.eval(model.parameters())
    labels = [str(x) for x in cfg["labels"]]
    return ModelBundle(
        name=cfg.get("name") or path.name,
        arch=cfg["arch"],
        arch_config=cfg.get("arch_config", {}),
        preprocessing=Preprocessing.from_dict(cfg["preprocessing"]),
        labels=labels,
        model=model,
        quantization=cfg.get("quantization"),
        source=cfg.get("source", {}),
        path=path.resolve(),
    )


def check_weights_fit(model: nn.Module, weights: dict, where: Path | str) -> None:
    """Raise a UserError naming missing, unexpected and mis-shaped tensors."""
    expected = dict(tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshaped = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(weights))
        if tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_clip(missing)}")
    if unexpected:
        problems.append(f"unexpected {_clip(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape {_clip(misshaped)}")
    if problems:
        raise UserError("weights do not fit the architecture: " + "; ".join(problems), where)


def _clip(items: list[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
