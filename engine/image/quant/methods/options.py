"""Command-line options of the quantization methods (``quantize --method ... --calib ...``)."""

from __future__ import annotations

import argparse

from engine.core.argtypes import positive_float, positive_int
from engine.core.errors import UserError
from engine.image.quant.methods.names import DEFAULT_CALIB_SIZE, DEFAULT_METHOD, METHODS

LM_ONLY = ("awq", "dwq")  # language models: mlx-lm's AWQ, DWQ (and GPTQ), see engine.llm.methods
METHOD_HELP = (
    "how codes are chosen: rtn (round to nearest, no calibration, default), gptq (second-order rounding "
    "with error feedback), gptq+bc (GPTQ then bias correction), adaround (learned rounding; slowest), "
    "adaround+bc (AdaRound then bias correction); "
    "language models: gptq, awq or dwq (mlx-lm's, --calib a text file, --calib-size chunks; dwq trains "
    "100 steps, minutes). "
    "Cost on the bench's models (2 CPU cores, 128 images): README, Quantization methods"
)


def add_method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("quantization method (image models)")
    g.add_argument("--method", choices=tuple(METHODS) + LM_ONLY, default=DEFAULT_METHOD, help=METHOD_HELP)
    g.add_argument(
        "--calib",
        metavar="DATA",
        help="calibration data for --method other than rtn: any folder or .npz of images, labels optional, "
        "or a dataset name (default: default-val); for a language model any UTF-8 text file",
    )
    g.add_argument(
        "--calib-size",
        type=positive_int,
        help=f"calibration images to use (default {DEFAULT_CALIB_SIZE}; time grows linearly, memory barely); "
        "language models: text chunks (default 32 of 256 tokens)",
    )
    g.add_argument(
        "--dwq-steps", type=positive_int, help="language models, --method dwq: Adam steps of 4 chunks (default 100)"
    )
    g.add_argument(
        "--dwq-learning-rate",
        type=positive_float,
        help="language models, --method dwq: learning rate of the scales and biases (default 1e-4)",
    )


def method_kwargs(args) -> dict:
    """QuantizeJob keyword arguments from parsed options (an image model's)."""
    if getattr(args, "dwq_steps", None) or getattr(args, "dwq_learning_rate", None):
        raise UserError("--dwq-steps and --dwq-learning-rate are options of DWQ, a language-model method")
    return {"method": args.method, "calib": args.calib, "calib_size": args.calib_size or DEFAULT_CALIB_SIZE}
