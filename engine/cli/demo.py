"""`demo`: the default workflow headless (fp32/fp16/int8/int4: quantize, evaluate, benchmark)."""

from __future__ import annotations

import argparse

from engine.cli import _run
from engine.core.argtypes import (
    OVERWRITE_HELP,
    nonneg_int,
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory for bundles, summary.csv and PNG plots")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--model", default="default")
    p.add_argument("--data", default="default")
    p.add_argument("--recipes", default="fp16,int8,int4", help="comma-separated recipes besides fp32")
    p.add_argument("--iters", type=positive_int, default=30)
    p.add_argument("--warmup", type=nonneg_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=1)


def run(args) -> int:
    from engine.image.benchmark import BenchmarkSettings
    from engine.jobs.demo import DemoJob, format_demo_table

    recipes = tuple(r.strip() for r in args.recipes.split(",") if r.strip() and r.strip() != "fp32")
    settings = BenchmarkSettings(batch_size=args.batch_size, iters=args.iters, warmup=args.warmup)
    outcome = _run(
        DemoJob(
            out=args.out,
            model=args.model,
            data=args.data,
            recipes=recipes,
            bench=settings,
            overwrite=args.overwrite,
        ),
        args,
    )
    print(format_demo_table(outcome.rows))
    for f in outcome.files:
        print(f"wrote {f}")
    return 0
