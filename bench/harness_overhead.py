"""The benchmark harness's own overhead against a bare timing loop, measured side by side in one run.

    python bench/harness_overhead.py                       # the shipped default model
    python bench/harness_overhead.py --arch mobilenet_v2   # any registered architecture, random weights
    python bench/harness_overhead.py --arch small_cnn --input-size 64 --pairs 7

Blocks of bare loop and harness alternate (the order flips each pair) so drift
and neighbours' load hit both alike. The harness runs with the callbacks the
GUI gives it (per-iteration samples buffered and flushed at most every 0.1 s,
progress, a cancel flag). Reported per round and as the median over rounds:

* median latency as the harness reports it against the bare loop's median;
* the harness's bookkeeping per iteration (time outside the timed region:
  memory sampling, callbacks), as a share of the median;
* wall time per iteration, harness against bare loop.

Target: overhead under 2 % of the median at batch 1 for MobileNetV2.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import threading
import time

from common import bare_loop, median, model_bundle, pct

PARTIAL_INTERVAL_S = 0.1  # as gui/engine_thread.py


def gui_like_context():
    """Callbacks shaped like the engine worker's: buffered partials, throttled progress, a cancel Event."""
    from engine.runtime import JobContext

    buffer: list = []
    flushed: list = []
    last = {"partial": time.monotonic(), "progress": 0.0}
    cancel = threading.Event()

    def partial(payload) -> None:
        buffer.append(payload)
        if time.monotonic() - last["partial"] >= PARTIAL_INTERVAL_S:
            flushed.append(tuple(buffer))
            buffer.clear()
            last["partial"] = time.monotonic()

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last["progress"] >= 0.05:
            last["progress"] = now

    return JobContext(progress, partial, cancel.is_set)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a bundle directory or 'default' (default when no --arch)")
    ap.add_argument("--arch", help="registered architecture, built with random weights")
    ap.add_argument("--input-size", type=int, help="square input size (default: the architecture's)")
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=15, help="bare/harness block pairs")
    # 150 ms blocks held 3 MobileNetV2 iterations and reported noise (3-5 % "over"); 1.5 s blocks don't.
    ap.add_argument("--block-ms", type=float, default=1500.0, help="work per block (sets iterations per block)")
    args = ap.parse_args()

    import mlx.core as mx

    from engine.image.benchmark import BenchmarkSettings, benchmark_input, run_benchmark
    from engine.measure.environment import environment

    bundle = model_bundle(
        args.model or (None if args.arch else "default"), args.arch, args.input_size, args.num_classes
    )
    x = mx.array(benchmark_input(bundle, args.batch_size))
    mx.eval(x)
    for _ in range(10):
        mx.eval(bundle.forward(x))
    probe, _ = bare_loop(bundle.forward, x, 10)
    iters = max(20, int(args.block_ms / max(median(probe), 1e-3)))
    env = environment()
    h, w = bundle.preprocessing.input_size
    print(
        f"{bundle.name} ({bundle.arch}), input {args.batch_size}x{h}x{w}x{bundle.preprocessing.channels}; "
        f"{args.pairs} pairs of blocks x {iters} iterations, alternating order; "
        f"MLX {env['mlx_version']} on {env['device']} ({env['cpu']}, {env['cpu_count']} cores)"
    )
    settings = BenchmarkSettings(batch_size=args.batch_size, iters=iters, warmup=0)
    bare_all, harness_all, book, wall_diff, walls_bare = [], [], [], [], []
    for k in range(args.pairs):
        got = {}
        for which in ("bare", "harness") if k % 2 == 0 else ("harness", "bare"):
            if which == "bare":
                got["bare"] = bare_loop(bundle.forward, x, iters)
            else:
                ctx = gui_like_context()
                got["harness"] = run_benchmark(bundle, settings, None, ctx.partial, ctx.progress, ctx.should_stop)
        lat, wall = got["bare"]
        res = got["harness"]
        bare_all += lat
        harness_all += res.latencies_ms
        book.append(res.harness_overhead_ms)
        walls_bare.append(1000 * wall / iters)
        wall_diff.append(1000 * res.loop_seconds / iters - 1000 * wall / iters)

    b50, h50 = median(bare_all), median(harness_all)
    book_ms = statistics.median(book)
    diff_ms = statistics.median(wall_diff)  # paired: drift and neighbours' load cancel
    print(f"{'':<34}{'bare loop':>12}{'harness':>12}")
    print(f"{'p50 latency (ms)':<34}{b50:>12.4f}{h50:>12.4f}   {pct(h50, b50)}")
    print(f"{'mean latency (ms)':<34}{statistics.fmean(bare_all):>12.4f}{statistics.fmean(harness_all):>12.4f}")
    print(f"{'wall per iteration (ms, median)':<34}{statistics.median(walls_bare):>12.4f}"
          f"{statistics.median(walls_bare) + diff_ms:>12.4f}")  # fmt: skip
    print()
    print(f"harness bookkeeping outside the timed region: {1000 * book_ms:.1f} us per iteration "
          f"= {100 * book_ms / b50:.3f} % of the median")  # fmt: skip
    print(f"extra wall time per iteration, harness - bare (median of {args.pairs} pairs): {1000 * diff_ms:+.1f} us "
          f"= {100 * diff_ms / b50:+.3f} % of the median")  # fmt: skip
    print(f"reported p50, harness vs bare: {pct(h50, b50)}")
    # The same harness around a forward pass that does nothing: its cost alone, little touched by load.
    noop = dataclasses.replace(bundle)
    y = mx.zeros((1, 1))
    mx.eval(y)
    noop.forward = lambda _x: y
    floor = []
    for _ in range(5):
        ctx = gui_like_context()
        r = run_benchmark(
            noop, BenchmarkSettings(args.batch_size, 2000, 0), None, ctx.partial, ctx.progress, ctx.should_stop
        )
        _, wall = bare_loop(noop.forward, x, 2000)
        floor.append((1e6 * r.loop_seconds / 2000, 1e6 * wall / 2000))
    h_us = statistics.median(f[0] for f in floor)
    b_us = statistics.median(f[1] for f in floor)
    print(f"with a no-op forward pass: harness {h_us:.1f} us per iteration, bare loop {b_us:.1f} us "
          f"-> {h_us - b_us:.1f} us = {100 * (h_us - b_us) / 1000 / b50:.3f} % of this model's median")  # fmt: skip
    overhead = 100 * max(book_ms, diff_ms) / b50
    print(f"harness overhead: {overhead:.3f} % of the median at batch {args.batch_size} "
          f"({'under' if overhead < 2.0 else 'OVER'} the 2 % target)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
