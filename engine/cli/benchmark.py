"""`benchmark`: latency, throughput, memory and size; tokens/s for language models (the kind decides)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.cli import _run, language
from engine.core.argtypes import (
    nonneg_int,
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--iters", type=positive_int, default=50)
    p.add_argument("--warmup", type=nonneg_int, default=5)
    p.add_argument("--csv", help="summary CSV (metric,value) plus a per-iteration CSV beside it")
    p.add_argument("--json", action="store_true")
    g = p.add_argument_group("language models")
    g.add_argument("--prompt-tokens", type=positive_int, default=128, help="prompt length")
    g.add_argument("--gen-tokens", type=positive_int, default=64, help="tokens to generate")
    g.add_argument("--runs", type=positive_int, default=3, help="measured runs")


def run(args) -> int:
    if language.is_language(args):
        return language.cmd_benchmark(args)
    return _image(args)


def _image(args) -> int:
    from engine.core.fileio import write_csv
    from engine.core.units import human_bytes
    from engine.image.benchmark import BenchmarkSettings
    from engine.jobs.image import BenchmarkJob

    settings = BenchmarkSettings(batch_size=args.batch_size, iters=args.iters, warmup=args.warmup)
    o = _run(BenchmarkJob(args.model, settings), args)
    summary = o.result.summary()
    if args.csv:
        csv_path = Path(args.csv)
        write_csv(
            csv_path,
            ["model", "recipe", "metric", "value"],
            ([o.result.model_name, o.result.recipe, k, v] for k, v in summary.items()),
        )
        write_csv(
            csv_path.with_name(csv_path.stem + "_iterations.csv"),
            ["iteration", "latency_ms", "active_memory", "rss"],
            ((s.index, s.latency_ms, s.active_memory, s.rss) for s in o.result.samples),
        )
    if args.json:
        print(
            json.dumps(
                {
                    "model": o.result.model_name,
                    "recipe": o.result.recipe,
                    **summary,
                    "environment": o.result.environment,
                },
                indent=2,
            )
        )
    else:
        s = summary
        print(
            f"{o.result.model_name} [{o.result.recipe}] batch {settings.batch_size}, {settings.iters} iterations "
            f"on {o.result.environment.get('device')}:"
        )
        print(
            f"  latency ms: mean {s['latency_mean_ms']:.3f}  p50 {s['latency_p50_ms']:.3f}  "
            f"p90 {s['latency_p90_ms']:.3f}  p99 {s['latency_p99_ms']:.3f}  (std {s['latency_std_ms']:.3f})"
        )
        print(
            f"  throughput {s['throughput_ips']:.1f} images/s, first inference {s['first_inference_ms']:.1f} ms, "
            f"load {s.get('load_time_s', 0):.3f} s"
        )
        print(
            f"  peak memory {human_bytes(s['peak_memory_bytes'])} (MLX), {human_bytes(s['peak_rss_bytes'])} (RSS); "
            f"size {human_bytes(s.get('size_on_disk_bytes'))}, {s['bits_per_weight']:.2f} bits/weight"
        )
    return 0
