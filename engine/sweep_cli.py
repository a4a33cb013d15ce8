"""CLI commands `sweep` (recipes) and `throughput` (batch sizes), registered through engine.cli.EXTENSIONS."""

from __future__ import annotations

import json


def register(sub) -> dict:
    from engine.argtypes import OVERWRITE_HELP, nonneg_int, positive_int

    p = sub.add_parser(
        "sweep",
        help="quantize with each recipe, evaluate and benchmark every variant; summary.csv + Pareto PNGs",
    )
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
    p.add_argument("--json", action="store_true", help="print the rows as JSON")

    p = sub.add_parser("throughput", help="latency and throughput of one model across batch sizes")
    p.add_argument("--model", required=True)
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32,64", help="comma-separated, e.g. 1,2,4,8,16,32,64")
    p.add_argument("--iters", type=positive_int, default=20)
    p.add_argument("--warmup", type=nonneg_int, default=3)
    p.add_argument("--csv", help="write one row per batch size")
    p.add_argument("--json", action="store_true")
    return {"sweep": cmd_sweep, "throughput": cmd_throughput}


def cmd_sweep(args) -> int:
    from engine.bench.harness import BenchmarkSettings
    from engine.cli import _run
    from engine.sweeps import SweepJob, format_variant_table, front_labels

    job = SweepJob(
        model=args.model,
        recipes=tuple(args.recipes.split(",")),
        data=args.data,
        out=args.out,
        overwrite=args.overwrite,
        bench=BenchmarkSettings(batch_size=args.batch_size, iters=args.iters, warmup=args.warmup),
        eval_limit=args.limit,
        group_size=args.group_size,
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


def cmd_throughput(args) -> int:
    from engine.cli import _run
    from engine.fileio import write_csv
    from engine.model_card import human_bytes
    from engine.sweeps import THROUGHPUT_COLUMNS, ThroughputJob, parse_batch_sizes

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
