"""`intsim`: full-integer (ONNX Runtime QDQ-style) simulation of a float model."""

from __future__ import annotations

import argparse
import json

from engine.core.argtypes import positive_int
from engine.core.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a float bundle (MobileNetV2, DenseNet or an imported graph)")
    p.add_argument("--data", default="default", help="evaluation images (accuracy where labels match the model)")
    p.add_argument(
        "--calib-data", default="default-val", help="calibration images: any folder or .npz of images (labels ignored)"
    )
    p.add_argument("--calib", type=positive_int, default=128, help="number of calibration images")
    p.add_argument("--observer", default="minmax", help="minmax | percentile | entropy | mse")
    p.add_argument("--percentile", type=float, default=99.999)
    p.add_argument("--bins", type=int, default=0, help="histogram bins (default: ORT's, 2048 percentile / 128 entropy)")
    p.add_argument("--act-type", default="uint8", choices=("uint8", "int8"))
    p.add_argument("--limit", type=positive_int, help="evaluate only N images")
    p.add_argument("--report-images", type=int, default=32, help="images for the per-tensor report (0: none)")
    p.add_argument("--layers-csv", help="write the per-tensor error report")
    p.add_argument("--top", type=int, default=10, help="print the N costliest tensors")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    from engine.cli import _run
    from engine.core.fileio import write_csv
    from engine.image.quant.intsim import LAYER_CSV_HEADER, IntSimSettings, layer_rows
    from engine.image.quant.observers import ObserverSettings
    from engine.jobs.intsim import IntSimJob

    if args.report_images < 0:
        raise UserError(f"--report-images must be 0 or more, not {args.report_images}")
    settings = IntSimSettings(
        ObserverSettings(args.observer, args.percentile, args.bins), args.act_type, args.calib, seed=0
    )
    o = _run(IntSimJob(args.model, args.data, args.calib_data, settings, args.limit, args.report_images), args)
    if args.layers_csv:
        write_csv(args.layers_csv, LAYER_CSV_HEADER, layer_rows(o.layers))
    summary = {
        "settings": settings.label(),
        "images": o.n_images,
        "calibration_images": o.calibration.n_images,
        "tensors": len(o.calibration.tensors),
        "float_accuracy": o.float_accuracy,
        "int_accuracy": o.int_accuracy,
        "top1_agreement": o.agreement,
        "mean_abs_logit_error": o.mean_logit_error,
        "max_abs_logit_error": o.max_logit_error,
    }
    if args.json:
        rows = [dict(zip(LAYER_CSV_HEADER, r, strict=True)) for r in layer_rows(o.layers[: args.top])]
        print(json.dumps({**summary, "costliest": rows}, indent=2))
        return 0
    pct = lambda v: "n/a (no matching labels)" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    print(f"{settings.label()}; {len(o.calibration.tensors)} int8 tensors; {o.n_images} images of {args.data}")
    print(f"  accuracy: float {pct(o.float_accuracy)}, full-integer {pct(o.int_accuracy)}")
    print(
        f"  top-1 agreement {100 * o.agreement:.2f}%, |logit error| mean {o.mean_logit_error:.4f} max {o.max_logit_error:.4f}"
    )
    if o.layers:
        print(
            f"  costliest tensors alone (mean |logit error| with only that tensor quantized, {args.report_images} images):"
        )
        for r in o.layers[: args.top]:
            print(f"    {r.tensor:<40}{r.kind:<11}{r.op:<12}{r.isolated_logit_error:>10.4f}   SQNR {r.sqnr_db:6.1f} dB")
    return 0
