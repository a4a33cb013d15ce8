"""Quantization methods: how a layer's codes are chosen, beside recipes (which format each layer gets).

``rtn`` rounds to nearest (``engine.image.quant.apply.quantize_model``); the calibrated methods
(``gptq``, ``gptq+bc``, ``adaround``) run through ``quantize_with_method`` on calibration
images and store the same MLX formats.
"""

from engine.image.quant.methods.names import DEFAULT_CALIB_SIZE, DEFAULT_METHOD, METHODS

_LAZY = {"MethodReport", "MethodSettings", "check_method", "memory_estimate", "quantize_with_method", "apply_method"}


def __getattr__(name: str):
    """The algorithms load MLX: imported on first use, so the names above stay cheap to read."""
    if name in _LAZY:
        from engine.image.quant.methods import run

        return run.quantize_with_method if name == "apply_method" else getattr(run, name)
    raise AttributeError(name)


__all__ = [
    "DEFAULT_CALIB_SIZE",
    "DEFAULT_METHOD",
    "METHODS",
    "MethodReport",
    "MethodSettings",
    "apply_method",
    "check_method",
    "memory_estimate",
    "quantize_with_method",
]
