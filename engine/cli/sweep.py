"""`sweep`: quantize with each recipe, evaluate and benchmark every variant."""

from __future__ import annotations

import argparse
import json

from engine.cli import _run
from engine.core.argtypes import (
    OVERWRITE_HELP,
    nonneg_int,
    positive_int,
)
from engine.image.quant.methods.names import DEFAULT_CALIB_SIZE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="float model bundle directory or 'default'")
    p.add_argument("--recipes", required=True, help="comma-separated recipes; fp32 is the float model itself")
    p.add_argument("--data", default="default", help="folder of class subfolders, .npz, or 'default'")
    p.add_argument("--out", required=True, help="directory for variants, summary.csv, metrics.csv, plots")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--group-size", type=int, choices=(16, 32, 64, 128), help="group size of integer recipes")
    p.add_argument("--batch-size", type=positive_int, default=1, help="benchmark batch size")
    p.add_argument("--iters", type=positive_int, default=30)
    p.add_argument("--warmup", type=nonneg_int, default=5)
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    p.add_argument(
        "--calib",
        metavar="DATA",
        help="calibration images for FORMAT@METHOD recipes (e.g. int4@gptq+bc): any folder or .npz of images, "
        "labels optional, or a dataset name (default: default-val)",
    )
    p.add_argument("--calib-size", type=positive_int, help=f"calibration images (default {DEFAULT_CALIB_SIZE})")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args) -> int:
    from engine.image.benchmark import BenchmarkSettings
    from engine.jobs.sweep import SweepJob, format_variant_table, front_labels

    job = SweepJob(
        model=args.model,
        recipes=tuple(args.recipes.split(",")),
        data=args.data,
        out=args.out,
        overwrite=args.overwrite,
        bench=BenchmarkSettings(batch_size=args.batch_size, iters=args.iters, warmup=args.warmup),
        eval_limit=args.limit,
        group_size=args.group_size,
        calib=args.calib,
        calib_size=args.calib_size or DEFAULT_CALIB_SIZE,
    )
    o = _run(job, args)
    if args.json:
        print(json.dumps({"sweep_id": o.sweep_id, "out": o.out_dir, "rows": [r.values for r in o.rows]}, indent=2))
        return 0
    print(f"sweep {o.sweep_id}")
    print(format_variant_table(r.values for r in o.rows))
    print(f"Pareto frontier, accuracy vs latency: {', '.join(front_labels(o.rows, 'latency_p50_ms'))}")
    print(f"Pareto frontier, accuracy vs size:    {', '.join(front_labels(o.rows, 'size_on_disk_bytes'))}")
    for f in o.files:
        print(f"wrote {f}")
    return 0
