"""Evaluation throughput against the model's own batch throughput, measured side by side.

Writes a folder of PNG files (so decoding costs something), then, in alternating rounds:

- model only: the same images already decoded and normalised in memory, batch after batch
  through the model (the ceiling);
- evaluation: ``evaluate_bundle`` reading the PNG folder with the decode-ahead thread;
- synchronous: the same with decoding on the model's thread (prefetch 0), for contrast.

Prints images/s of each (median over rounds) and the ratios evaluation / model only and
synchronous / model only. The target is evaluation >= 90 % of model only.

    python bench/eval_throughput.py [--images 512] [--size 256] [--batch 64] [--rounds 3] [--model default]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.image.bundle import load_bundle
from engine.image.data.datasets import open_dataset
from engine.image.data.loader import decode_batch
from engine.image.evaluation import evaluate_bundle


def write_pngs(root: Path, n: int, size: int, classes: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        c = i % classes
        folder = root / str(c)
        folder.mkdir(parents=True, exist_ok=True)
        # Smooth structure plus noise: decodes like a photo or a scan, not like flat colour.
        base = 128 + 90 * np.sin(2 * np.pi * (xx * (1 + c) + yy * rng.uniform(0.5, 2)))
        rgb = np.stack([base + rng.normal(0, 12, base.shape) for _ in range(3)], axis=-1)
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png")


def model_only(bundle, batches: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    n = 0
    for x in batches:
        bundle.predict_logits(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=256, help="side of the PNG files (the model resizes them)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    bundle = load_bundle(args.model)
    with tempfile.TemporaryDirectory(prefix="mqs-bench-") as tmp:
        root = Path(tmp)
        write_pngs(root, args.images, args.size, len(bundle.labels))
        dataset = open_dataset(root)
        prep = bundle.preprocessing
        t0 = time.perf_counter()
        batches = [
            decode_batch(dataset, prep, range(s, min(s + args.batch, len(dataset)))).x
            for s in range(0, len(dataset), args.batch)
        ]
        decode_ips = len(dataset) / (time.perf_counter() - t0)
        model_only(bundle, batches[:1])  # warm-up
        results: dict[str, list[float]] = {"model only": [], "evaluation": [], "synchronous": []}
        for _ in range(args.rounds):
            results["model only"].append(model_only(bundle, batches))
            r = evaluate_bundle(bundle, dataset, args.batch, workers=args.workers)
            results["evaluation"].append(r.images_per_s)
            r = evaluate_bundle(bundle, dataset, args.batch, prefetch=0)
            results["synchronous"].append(r.images_per_s)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"{bundle.name} [{bundle.recipe_name}], {args.images} PNG files {args.size}x{args.size} -> "
        f"{prep.input_size[0]}x{prep.input_size[1]}x{prep.channels}, batch {args.batch}, {args.rounds} rounds"
    )
    print(f"  decoding alone          {decode_ips:9.1f} images/s")
    for k, v in med.items():
        print(f"  {k:<22}{v:9.1f} images/s   (rounds: {', '.join(f'{x:.1f}' for x in results[k])})")
    ratio = med["evaluation"] / med["model only"]
    print(f"  evaluation / model only   {ratio:6.3f}  (target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'})")
    print(f"  synchronous / model only  {med['synchronous'] / med['model only']:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
