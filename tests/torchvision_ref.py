"""torchvision's model builders as reference models, on the CPU-only torch the tests use.

PyPI's torchvision wheel is built against CUDA torch, so its compiled detection ops
(``torchvision::nms``/``qnms``) fail to load beside ``torch+cpu``, and ``import torchvision``
then stops while registering their fake kernels. Classification models never call them:
declaring the two schemas first lets the pure-Python model definitions import. Use
``from tests.torchvision_ref import torchvision`` instead of ``import torchvision``.
"""

from __future__ import annotations

import torch

_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

try:
    import torchvision  # noqa: F401  (works where the wheel matches torch)
except RuntimeError:
    for name, schema in _SCHEMAS.items():
        try:
            torch.library.define(name, schema)
        except RuntimeError:
            pass  # declared already (a second import attempt)
    import importlib
    import sys

    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]
    torchvision = importlib.import_module("torchvision")

__all__ = ["torchvision"]
