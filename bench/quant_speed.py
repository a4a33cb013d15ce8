"""int8 / int4 / fp16 against fp32, side by side in one run: image latency and language-model tokens/s.

Run it on the machine the numbers are for: on Linux MLX runs on its CPU backend (quantized
variants are smaller, not faster there); on Apple silicon Metal reads 4-8x fewer bytes for
int4 weights. The macOS workflow runs it and uploads its output.

    python bench/quant_speed.py [--iters 200] [--runs 5] [--device cpu|gpu]

Prints, per model, p50 latency (image models, batch 1 and 16) or generation tokens/s (the
default language model) for each recipe and its ratio to fp32, with the device named.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def image_rows(model: str, recipes: list[str], batch: int, iters: int, out: Path) -> list[tuple[str, float]]:
    from engine.image.benchmark import BenchmarkSettings
    from engine.jobs.image import BenchmarkJob, QuantizeJob
    from engine.runtime import JobContext, Workspace

    ws = Workspace()
    rows = []
    for recipe in recipes:
        path = model
        if recipe != "fp32":
            path = (
                QuantizeJob(model, recipe, str(out / f"{Path(model).name}-{recipe}"), store=False)
                .run(JobContext(), ws)
                .path
            )
        o = BenchmarkJob(
            path, BenchmarkSettings(batch_size=batch, iters=iters, warmup=10), cold_load=False, store=False
        )
        rows.append((recipe, o.run(JobContext(), ws).result.summary()["latency_p50_ms"]))
    return rows


def lm_rows(recipes: list[str], runs: int, out: Path) -> list[tuple[str, float]]:
    from engine.jobs.language import LMBenchmarkJob, QuantizeLanguageModelJob
    from engine.llm.bench import LMBenchSettings
    from engine.runtime import JobContext, Workspace

    ws = Workspace()
    rows = []
    for recipe in recipes:
        path = "default-lm"
        if recipe != "fp32":
            path = (
                QuantizeLanguageModelJob("default-lm", recipe, str(out / f"lm-{recipe}"), store=False)
                .run(JobContext(), ws)
                .path
            )
        job = LMBenchmarkJob(path, LMBenchSettings(prompt_tokens=128, gen_tokens=128, runs=runs, warmup=1), store=False)
        rows.append((recipe, job.run(JobContext(), ws).result.summary()["generation_tps"]))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=200, help="timed forward passes per image variant")
    ap.add_argument("--runs", type=int, default=5, help="measured generation runs per language-model variant")
    ap.add_argument("--device", choices=("cpu", "gpu"), help="MLX's default device (default: MLX's own choice)")
    args = ap.parse_args()
    import mlx.core as mx

    if args.device:
        mx.set_default_device(mx.cpu if args.device == "cpu" else mx.gpu)
    from engine.measure.environment import environment

    env = environment()
    print(
        f"device {env.get('device')} ({env.get('gpu', env.get('cpu'))}), MLX {env.get('mlx_version')}, {env.get('platform')}"
    )
    print(f"settings: --iters {args.iters} --runs {args.runs}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for batch in (1, 16):
            rows = image_rows("default", ["fp32", "fp16", "int8", "int4"], batch, args.iters, out / f"b{batch}")
            base = rows[0][1]
            print(f"\ndefault CNN, batch {batch}: p50 latency (ms) and speed-up over fp32")
            for recipe, ms in rows:
                print(f"  {recipe:<6}{ms:9.3f} ms   {base / ms:5.2f}x")
        rows = lm_rows(["fp32", "int8", "int4"], args.runs, out)
        base = rows[0][1]
        print("\ndefault language model: generation tokens/s (128 prompt, 128 generated) and ratio to fp32")
        for recipe, tps in rows:
            print(f"  {recipe:<6}{tps:9.1f} tok/s {tps / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
