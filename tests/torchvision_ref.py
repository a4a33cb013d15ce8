"""torchvision's model builders as reference models, on the CPU-only torch the tests use.

PyPI's torchvision wheel is built against CUDA torch: beside ``torch+cpu`` its compiled
detection ops (``torchvision::nms``/``qnms``) fail to load and ``import torchvision`` stops
while registering their fake kernels. Installed into site-packages it would also break
transformers, which imports torchvision whenever it finds it (tokenizers included). So the
README's test command installs it apart, into ``<venv>/reference``, where only this module
looks; declaring the two op schemas first lets the pure-Python model definitions import.
Classification models never call those ops. Use ``from tests.torchvision_ref import torchvision``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

REFERENCE_DIR = Path(sys.prefix) / "reference"
_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _import():
    if REFERENCE_DIR.is_dir() and str(REFERENCE_DIR) not in sys.path:
        sys.path.append(str(REFERENCE_DIR))
    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"torchvision is not installed in {REFERENCE_DIR}: `pip install --no-deps --target {REFERENCE_DIR} "
            "torchvision==0.28.0` (the README's test command does); never into site-packages, where it breaks "
            "transformers"
        ) from None
    except RuntimeError:
        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]
    for name, schema in _SCHEMAS.items():
        try:
            torch.library.define(name, schema)
        except RuntimeError:
            pass  # declared already
    return importlib.import_module("torchvision")


torchvision = _import()

__all__ = ["torchvision"]
