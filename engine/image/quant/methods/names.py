"""The methods' names and defaults, importable without MLX (the command line's --help reads them)."""

METHODS = {
    "rtn": "round to nearest (no calibration; milliseconds per layer)",
    "gptq": "second-order rounding with error feedback (GPTQ), sequential over layers",
    "gptq+bc": "GPTQ, then bias correction of each layer's mean output",
    "adaround": "learned rounding (AdaRound, MLX autograd), sequential over layers",
    "adaround+bc": "AdaRound, then bias correction of each layer's mean output",
}
DEFAULT_METHOD = "rtn"
DEFAULT_CALIB_SIZE = 128
