"""`quantize` against a one-image `predict` of the same imported model, both as whole processes.

    python bench/quantize_cost.py                    # ResNet-50 at 224 px, int4, 3 rounds
    python bench/quantize_cost.py --arch resnet18 --recipe int8 --rounds 5

A ResNet-50 with random weights (BatchNorm statistics made non-trivial) is written as a
torchvision-layout ``.pth`` state dict with torch and imported with ``main.py import``;
then ``main.py predict`` (one preprocessed 224-px image) and ``main.py quantize`` run as
separate processes, alternating (the order flips each round) so neighbours' load hits both
alike. Printed: each round's wall times and the medians side by side.

Target: quantize within 1.2x a one-image predict (quantizing is per-layer math on the
weights; the float forwards it needs are one lazy trace and a small-input fold check).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

TARGET = 1.2


def write_checkpoint(arch: str, path: Path, seed: int = 0) -> None:
    """A random ``arch`` as a torchvision-layout state dict written by torch.save."""
    import mlx.core as mx
    import numpy as np
    import torch
    from mlx.utils import tree_flatten

    from engine.image.models import registry

    mx.random.seed(seed)
    spec = registry.get(arch)
    model = spec.build(spec.default_config())
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in tree_flatten(model.parameters()):
        a = np.array(value, dtype=np.float32)
        if a.ndim == 4:  # MLX (O, kh, kw, I) -> torch (O, I, kh, kw)
            a = a.transpose(0, 3, 1, 2)
        if key.endswith("running_var"):
            a = rng.uniform(0.5, 2.0, a.shape).astype(np.float32)
        elif key.endswith("running_mean"):
            a = rng.normal(0.0, 0.1, a.shape).astype(np.float32)
        state[key] = torch.from_numpy(np.ascontiguousarray(a))
    torch.save(state, path)


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--recipe", default="int4")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="quantize-cost-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MQS_DATA_DIR": str(tmp / "data")}
        py = [sys.executable, str(ROOT / "main.py")]
        write_checkpoint(args.arch, tmp / "model.pth")
        bundle = tmp / "bundle"
        timed([*py, "import", "--arch", args.arch, "--weights", str(tmp / "model.pth"), "--out", str(bundle)], env)
        x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
        np.save(tmp / "x.npy", x)
        predict = [*py, "predict", "--model", str(bundle), "--tensor", str(tmp / "x.npy")]
        quantize = [*py, "quantize", "--model", str(bundle), "--recipe", args.recipe]
        quantize += ["--out", str(tmp / "variant"), "--overwrite"]
        times = {"predict": [], "quantize": []}
        print(f"{args.arch} imported from a torch .pth; recipe {args.recipe}; {args.rounds} rounds, order flips")
        print(f"{'round':>5}  {'predict 1 image (s)':>20}  {'quantize (s)':>13}  {'ratio':>6}")
        for r in range(args.rounds):
            order = [("predict", predict), ("quantize", quantize)]
            for name, cmd in order if r % 2 == 0 else reversed(order):
                times[name].append(timed(cmd, env))
            p, q = times["predict"][-1], times["quantize"][-1]
            print(f"{r + 1:>5}  {p:>20.2f}  {q:>13.2f}  {q / p:>6.2f}")
        p, q = statistics.median(times["predict"]), statistics.median(times["quantize"])
        verdict = "meets" if q / p <= TARGET else "misses"
        print(f"{'median':>5}  {p:>20.2f}  {q:>13.2f}  {q / p:>6.2f}   ({verdict} the {TARGET}x target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
