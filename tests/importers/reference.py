"""Load the torchvision/timm reference fixtures and rebuild their weights and inputs with numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.fixtures.synthetic_weights import synthetic_input, synthetic_state_dict

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "reference"


def load_reference(name: str) -> dict:
    return json.loads((REFERENCE_DIR / f"{name}.json").read_text())


def reference_weights(ref: dict) -> dict[str, np.ndarray]:
    """The exact tensors the fixture script loaded into torchvision/timm (PyTorch layout)."""
    return synthetic_state_dict(ref["state_dict"], ref.get("rules", ()))


def reference_input_nhwc(ref: dict) -> np.ndarray:
    return np.ascontiguousarray(synthetic_input(ref["input_shape"], ref["input_seed"]).transpose(0, 2, 3, 1))


def reference_logits(ref: dict) -> np.ndarray:
    return np.asarray(ref["logits"], dtype=np.float32)


def save_safetensors(weights: dict[str, np.ndarray], path: Path) -> Path:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path))
    return path


def save_pth(weights: dict[str, np.ndarray], path: Path) -> Path:
    import torch

    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}, str(path))
    return path
