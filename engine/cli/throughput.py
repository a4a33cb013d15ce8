"""`throughput`: latency and throughput of one model across batch sizes."""

from __future__ import annotations

import argparse
import json

from engine.cli import _run
from engine.core.argtypes import (
    nonneg_int,
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32,64", help="comma-separated, e.g. 1,2,4,8,16,32,64")
    p.add_argument("--iters", type=positive_int, default=20)
    p.add_argument("--warmup", type=nonneg_int, default=3)
    p.add_argument("--csv", help="write one row per batch size")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    from engine.core.fileio import write_csv
    from engine.core.units import human_bytes
    from engine.jobs.sweep import THROUGHPUT_COLUMNS, ThroughputJob, parse_batch_sizes

    job = ThroughputJob(args.model, parse_batch_sizes(args.batch_sizes), args.iters, args.warmup)
    o = _run(job, args)
    if args.csv:
        write_csv(args.csv, THROUGHPUT_COLUMNS, ([p.values.get(c) for c in THROUGHPUT_COLUMNS] for p in o.points))
    if args.json:
        print(json.dumps({"model": o.model_name, "recipe": o.recipe, "points": [p.values for p in o.points]}, indent=2))
        return 0
    print(f"{o.model_name} [{o.recipe}], cold load {o.load_time_s * 1000:.1f} ms")
    print(f"{'batch':>6}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'images/s':>11}{'peak mem':>11}")
    for p in o.points:
        v = p.values
        print(
            f"{p.batch_size:>6}{v['latency_mean_ms']:>10.3f}{v['latency_p50_ms']:>10.3f}{v['latency_p99_ms']:>10.3f}"
            f"{v['throughput_ips']:>11.1f}{human_bytes(v['peak_memory_bytes']):>11}"
        )
    return 0
