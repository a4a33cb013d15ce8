"""Sensitivity + autoquant wall time as a multiple of one calibration forward, Fisher against exact.

    python bench/sensitivity_cost.py                       # default CNN, MobileNetV2, ResNet-50
    python bench/sensitivity_cost.py --models default --calib 64
    python bench/sensitivity_cost.py --big-size 224 --big-calib 17

For each model: one forward over the calibration images is timed (after a warm-up), then
``autoquant --target-bpw`` with the Fisher sensitivity (``engine/image/quant/fisher.py``)
and, on the small models, with the exact one (every layer alone in every format). Printed
side by side: the wall time of each as a multiple of that forward, the chosen mix's bits
per weight, its measured KL against the float model and (where labels exist) its accuracy.

* default: the shipped CNN on its own validation images (labelled);
* mobilenet_v2: random weights written by torch as a torchvision ``.pth`` and imported;
* resnet50: a ~25 M-parameter CNN with random weights (Fisher only: the exact mode runs
  ~300 whole-network passes over the calibration set).

Random-weight models get seeded Gaussian images. Targets: Fisher <= 30x one calibration
forward; its chosen mix's KL/accuracy equal to the exact mode's within noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from common import ROOT  # noqa: F401  (puts the repository on sys.path)

TARGET = 30.0


def random_images(bundle, n: int, seed: int = 0):
    import numpy as np

    from engine.image.quant.calibration import LabelledImages

    h, w, c = bundle.input_shape()
    return LabelledImages(
        "gaussian", np.random.default_rng(seed).standard_normal((n, h, w, c)).astype(np.float32), None
    )


def imported(arch: str, size: int, tmp: Path):
    from quantize_cost import write_checkpoint

    from engine.image.importers.checkpoint import import_checkpoint
    from engine.image.models import registry

    path = tmp / f"{arch}.pth"
    write_checkpoint(arch, path)
    prep = dataclasses.replace(registry.get(arch).default_preprocessing, input_size=(size, size))
    return import_checkpoint(arch, path, preprocessing=prep)


def calib_forward_seconds(bundle, images, repeats: int = 2) -> float:
    from engine.image.quant.calibration import logits_of

    logits_of(bundle.model, images.x[:2])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        logits_of(bundle.model, images.x)
        best = min(best, time.perf_counter() - t0)
    return best


def run_autoquant(bundle, images, bpw: float, mode: str):
    from engine.image.quant.autoquant import Budget, autoquant

    t0 = time.perf_counter()
    res = autoquant(bundle, Budget("bpw", bpw), images, sensitivity=mode)
    return time.perf_counter() - t0, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,mobilenet_v2,resnet50")
    ap.add_argument("--bpw", type=float, default=4.8)
    ap.add_argument("--calib", type=int, default=128, help="calibration images of the default CNN")
    ap.add_argument("--mobile-size", type=int, default=64)
    ap.add_argument("--mobile-calib", type=int, default=16)
    ap.add_argument("--big-size", type=int, default=128)
    ap.add_argument("--big-calib", type=int, default=17)
    args = ap.parse_args()

    from engine.image.bundle import load_bundle
    from engine.image.quant.calibration import load_calibration

    print(f"autoquant --target-bpw {args.bpw}, candidates int2..int8; multiples of one calibration forward")
    head = f"{'model':<14} {'params':>7} {'images':>9} {'fwd (s)':>8} {'mode':<7} {'wall (s)':>9} {'x fwd':>6}"
    print(head + f" {'bpw':>5} {'KL':>9} {'accuracy':>8}")
    with tempfile.TemporaryDirectory(prefix="sens-cost-") as tmp:
        for name in args.models.split(","):
            if name == "default":
                bundle = load_bundle("default")
                images = load_calibration(bundle, "default-val", args.calib)
                modes = ("fisher", "exact")
            elif name == "mobilenet_v2":
                bundle = imported(name, args.mobile_size, Path(tmp))
                images = random_images(bundle, args.mobile_calib)
                modes = ("fisher", "exact")
            else:
                bundle = imported(name, args.big_size, Path(tmp))
                images = random_images(bundle, args.big_calib)
                modes = ("fisher",)
            params = sum(v.size for _, v in __import__("mlx.utils").utils.tree_flatten(bundle.model.parameters()))
            fwd = calib_forward_seconds(bundle, images)
            h, w, _ = bundle.input_shape()
            for mode in modes:
                wall, res = run_autoquant(bundle, images, args.bpw, mode)
                acc = f"{100 * res.accuracy:.2f}%" if res.accuracy is not None else "-"
                print(
                    f"{name:<14} {params / 1e6:>6.1f}M {len(images):>3}x{h:>3}px {fwd:>8.2f} {mode:<7} {wall:>9.1f}"
                    f" {wall / fwd:>6.1f} {res.bits_per_weight:>5.2f} {res.measured_kl:>9.2e} {acc:>8}",
                    flush=True,
                )
    print(f"target: fisher <= {TARGET:g}x one calibration forward")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
