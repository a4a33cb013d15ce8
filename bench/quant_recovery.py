"""Accuracy recovery by quantization-aware fine-tuning (`finetune`), with and without distillation.

    python bench/quant_recovery.py                       # int3 6 steps, int2 10 steps + distillation
    python bench/quant_recovery.py --runs int4:20:0,int2:40:1 --batch-size 32

Drives the command line exactly as a user would, on the shipped default model (MNIST CNN):

1. ``main.py finetune --model default --recipe intN --data default-val --max-steps S
   [--teacher default]``: straight-through fake-quantized training of the recipe's formats
   (optionally distilled from the float model), validated on the 20 % of ``default-val`` that
   ``finetune`` holds out; it prints the validation accuracy before and after.
2. ``main.py quantize --recipe intN`` (plain round-to-nearest) and ``main.py evaluate --data
   default --compare`` score float, RTN and the fine-tuned variant on the shipped held-out split
   (never used for training or validation).

Prints the settings, then one row per run: validation before -> after (finetune's own figure)
and held-out accuracy of float, RTN intN and fine-tuned intN.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT


def cli(*args: str, env: dict) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--runs", default="int3:6:0,int2:10:1", help="RECIPE:STEPS:DISTIL,... (DISTIL 1 = --teacher)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", default="1e-4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="folder for the bundles (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="quant-recovery-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MQS_DATA_DIR": str(work / "data-dir")}
    runs = [(r, int(s), d == "1") for r, s, d in (x.split(":") for x in args.runs.split(","))]
    print(
        f"settings: model {args.model}, training data default-val (finetune holds 20 % out for validation), "
        f"batch {args.batch_size}, lr {args.lr}, seed {args.seed}, finetune defaults otherwise "
        f"(temperature 4, alpha 0.7, shift augmentation); held-out: default; "
        f"{platform.machine()} {os.cpu_count()} CPUs"
    )
    rows = []
    for recipe, steps, distil in runs:
        tag = f"{recipe}-{steps}{'-kd' if distil else ''}"
        t0 = time.perf_counter()
        teacher = ["--teacher", args.model] if distil else []
        ft = json.loads(
            cli(
                "finetune",
                "--model",
                args.model,
                "--recipe",
                recipe,
                "--data",
                "default-val",
                "--max-steps",
                str(steps),
                "--batch-size",
                str(args.batch_size),
                "--lr",
                args.lr,
                "--seed",
                str(args.seed),
                *teacher,
                "--out",
                str(work / tag),
                "--json",
                env=env,
            )  # fmt: skip
        )
        rtn = work / f"{recipe}-rtn"
        if not rtn.exists():
            cli("quantize", "--model", args.model, "--recipe", recipe, "--out", str(rtn), env=env)
        ev = json.loads(
            cli(
                "evaluate",
                "--model",
                args.model,
                "--compare",
                str(rtn),
                "--compare",
                str(work / tag),
                "--data",
                "default",
                "--json",
                env=env,
            )  # fmt: skip
        )
        held = [ev["accuracy"]] + [c["accuracy"] for c in ev["compare"]]
        rows.append((recipe, steps, distil, ft["before"], ft["after"], *held, time.perf_counter() - t0))
    print(f"\n{'recipe':<7}{'steps':>6}{'distil':>8}{'val before':>12}{'val after':>11}"
          f"{'held-out fp32':>15}{'RTN':>8}{'fine-tuned':>12}{'seconds':>9}")  # fmt: skip
    for recipe, steps, distil, before, after, fp, rtn_acc, tuned, secs in rows:
        print(
            f"{recipe:<7}{steps:>6}{'yes' if distil else 'no':>8}{before:>12.1%}{after:>11.1%}"
            f"{fp:>15.1%}{rtn_acc:>8.1%}{tuned:>12.1%}{secs:>9.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
