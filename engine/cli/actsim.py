"""`actsim`: int8 activation simulation, observers x calibration-set sizes."""

from __future__ import annotations

import argparse
import json

from engine.cli import _run
from engine.cli.quant import _pct
from engine.core.argtypes import (
    csv_list,
    int_list,
)
from engine.core.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="default", help="evaluation images")
    p.add_argument("--calib-data", default="default-val")
    p.add_argument("--observers", type=csv_list, default=("minmax", "percentile", "mse"))
    p.add_argument("--calib", type=int_list, default=(1, 8, 64, 256), help="calibration-set sizes")
    p.add_argument("--draws", type=int, default=1, help="random calibration draws per size")
    p.add_argument("--bits", type=int, default=8, help="activation bits")
    p.add_argument("--limit", type=int, help="evaluate only N images")
    p.add_argument("--csv")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    from engine.core.fileio import write_csv
    from engine.image.quant.actsim import OBSERVERS
    from engine.jobs.quant import CalibrationSweepJob

    bad = [o for o in args.observers if o not in OBSERVERS]
    if bad:
        raise UserError(f"unknown observer {', '.join(bad)} (use {', '.join(OBSERVERS)})")
    job = CalibrationSweepJob(
        args.model, args.data, args.calib_data, args.observers, args.calib, args.draws, args.bits, args.limit
    )
    rows = _run(job, args)
    header = [
        "observer",
        "calibration_images",
        "draw",
        "weight_only_accuracy",
        "simulated_accuracy",
        "drop_points",
        "kl_vs_weight_only",
        "flip_rate_vs_weight_only",
    ]
    table = [
        [
            r.observer,
            r.calib,
            r.draw,
            r.weight_only_accuracy,
            r.accuracy,
            100 * (r.weight_only_accuracy - r.accuracy),
            r.kl_vs_weight_only,
            r.flip_rate_vs_weight_only,
        ]
        for r in rows
    ]
    if args.csv:
        write_csv(args.csv, header, table)
    if args.json:
        print(json.dumps([dict(zip(header, row, strict=True)) for row in table], indent=2))
        return 0
    print(
        f"int{args.bits} activations simulated (static, per tensor) on {args.data}; weight-only = the model as stored"
    )
    print(f"  {'observer':<12}{'calib':>6}{'draw':>5}{'weight-only':>13}{'simulated':>11}{'drop':>8}{'KL':>10}")
    for r in rows:
        print(
            f"  {r.observer:<12}{r.calib:>6}{r.draw:>5}{_pct(r.weight_only_accuracy):>13}{_pct(r.accuracy):>11}"
            f"{100 * (r.weight_only_accuracy - r.accuracy):>+8.2f}{r.kl_vs_weight_only:>10.5f}"
        )
    return 0
