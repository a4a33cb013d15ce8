"""Quantization methods: how a layer's codes are chosen, beside recipes (which format each layer gets).

``rtn`` rounds to nearest (``engine.quant.apply.quantize_model``); the calibrated methods
(``gptq``, ``gptq+bc``, ``adaround``) run through ``quantize_with_method`` on calibration
images and store the same MLX formats.
"""

from engine.quant.methods.run import (
    DEFAULT_CALIB_SIZE,
    DEFAULT_METHOD,
    METHODS,
    MethodReport,
    MethodSettings,
    check_method,
    memory_estimate,
    quantize_with_method,
)

apply_method = quantize_with_method

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
