"""Quantization methods side by side at equal bits per weight, on an imported MobileNetV2 and ResNet-18.

    python bench/methods_vs_rtn.py                      # per model: train, then 1 + 24 quantizations (hours)
    python bench/methods_vs_rtn.py --archs resnet18 --formats int4-g32 --methods rtn,gptq+bc --work /tmp/m

The models are trained like ``bench/autoquant_vs_uniform.py``'s: a PyTorch MobileNetV2 and a
PyTorch ResNet-18 (both with torchvision's module names) trained from scratch on the 3,500
MNIST training images, saved as .safetensors and imported with ``main.py import`` (logits
checked against PyTorch). They train for 1,600 steps, not that script's 400: at 400 steps
the MobileNetV2 is still learning (88.6 %, loss ~0.7) and so close to its decision
boundaries that even int8 RTN flips 1.1 % of its answers, which says more about the model
than about the quantizer. The int8 RTN row is printed as that floor.
Each variant is made by ``main.py quantize --recipe FORMAT --method METHOD`` in its own
process (so its wall time and peak RSS are the quantization's alone, Python start-up and
model load included), calibrated on ``--calib-size`` images of the validation split
(``default-val``: neither trained on nor scored), and scored on the shipped held-out
split (1,000 images): accuracy, agreement of the top-1 answer with the float model, mean
KL(float || variant) in nats. All methods of one format store the same layout, so their
bits per weight are equal (bias correction adds no bytes: every conv has a folded bias).
Weight-only quantization; activations stay float32.

Measured (2 shared CPU cores; the tables are in README "Quantization methods"): MobileNetV2
(``--archs mobilenet_v2 --methods rtn,gptq,gptq+bc,adaround,adaround+bc``, 11 min) fp32
97.3 %; int4/g32 RTN 94.9 % (96.4 % agreement), GPTQ+BC 96.7 % (98.9 %), AdaRound+BC
97.3 % (99.0 %); int3/g64 RTN 77.2 %, GPTQ+BC 96.4 %.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from autoquant_vs_uniform import PREPROCESS, mnist_splits, torch_mobilenet_v2, train
from common import ROOT

ARCHS = ("mobilenet_v2", "resnet18")


def torch_resnet18(num_classes: int):
    """A torch.nn ResNet-18 whose state-dict names and shapes are torchvision's."""
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, i, o, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(o)
            self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(o)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or i != o:
                self.downsample = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            widths, inp = (64, 128, 256, 512), 64
            for n, w in enumerate(widths, 1):
                stride = 1 if n == 1 else 2
                setattr(self, f"layer{n}", nn.Sequential(Basic(inp, w, stride), Basic(w, w, 1)))
                inp = w
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(x.mean((2, 3)))

    return Net()


def quantize(fp32: Path, out: Path, fmt: str, method: str, calib_size: int, env: dict) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one ``main.py quantize`` process."""
    name, _, gs = fmt.partition("-g")
    cmd = [sys.executable, str(ROOT / "main.py"), "quantize", "--model", str(fp32), "--recipe", name,
           "--out", str(out), "--method", method, "--overwrite"]  # fmt: skip
    if gs:
        cmd += ["--group-size", gs]
    if method != "rtn":
        cmd += ["--calib", "default-val", "--calib-size", str(calib_size)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"quantize {fmt} {method} failed: {err.strip()}")
    return seconds, int(usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024))


def imported_model(arch: str, args, work: Path, env: dict, data) -> tuple[Path, np.ndarray | None]:
    """Train ``arch`` in PyTorch and import it (or reuse ``work/<arch>/fp32``); PyTorch's held-out logits when trained."""
    import torch
    from safetensors.torch import save_file

    xtr, ytr, xte, _ = data
    fp32 = work / arch / "fp32"
    if (fp32 / "config.json").exists():
        print(f"reusing the imported model in {fp32}")
        return fp32, None
    net = torch_mobilenet_v2(args.width_mult, 10) if arch == "mobilenet_v2" else torch_resnet18(10)
    print(f"training a torch {arch} on {len(xtr)} images, {args.steps} steps", flush=True)
    secs = train(net, xtr, ytr, args.steps, args.batch, args.seed)
    print(f"trained in {secs:.0f} s")
    ckpt = work / arch / f"{arch}_mnist.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ckpt))
    labels = ",".join(str(i) for i in range(10))
    cmd = [sys.executable, str(ROOT / "main.py"), "import", "--arch", arch, "--weights", str(ckpt),
           "--labels", labels, "--input-size", str(args.input_size), "--preprocess", PREPROCESS, "--out", str(fp32)]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
    with torch.no_grad():
        return fp32, net.eval()(torch.from_numpy(xte[:64])).numpy()


def run_arch(arch: str, args, work: Path, env: dict, data) -> None:
    from engine.image.bundle import load_bundle
    from engine.image.model_card import model_card
    from engine.image.quant.calibration import OutputChange, logits_of

    t_start = time.perf_counter()
    fp32, torch_logits = imported_model(arch, args, work, env, data)
    _, _, xte, yte = data
    x = np.ascontiguousarray(xte.transpose(0, 2, 3, 1))
    ref = logits_of(load_bundle(fp32).model, x)
    if torch_logits is not None:
        diff = float(np.abs(ref[:64] - torch_logits).max())
        assert diff < 1e-3, f"the imported model does not compute what PyTorch computes ({diff:.2e})"
    float_acc = float(np.mean(ref.argmax(1) == yte))
    float_bpw = model_card(load_bundle(fp32)).bits_per_weight

    rows = [("fp32", "-", float_bpw, float_acc, 1.0, 0.0, None, None)]
    variants = [("int8", "rtn")] if args.int8_floor else []
    variants += [(f, m) for f in args.formats.split(",") for m in args.methods.split(",")]
    for fmt, method in variants:
        out = work / arch / f"{fmt}-{method}"
        seconds, rss = quantize(fp32, out, fmt, method, args.calib_size, env)
        bundle = load_bundle(out)
        logits = logits_of(bundle.model, x)
        change = OutputChange.between(ref, logits, yte)
        bpw = model_card(bundle).bits_per_weight
        rows.append((fmt, method, bpw, change.accuracy, 1.0 - change.flip_rate, change.kl, seconds, rss))
        r = rows[-1]
        print(f"  {arch} {fmt:<9} {method:<11} acc {r[3]:.2%}  agree {r[4]:.2%}  KL {r[5]:.4f}  {seconds:.1f} s",
              flush=True)  # fmt: skip

    what = f"MobileNetV2 width {args.width_mult}" if arch == "mobilenet_v2" else "ResNet-18"
    print(
        f"\n{what}, {args.input_size} px, trained {args.steps} steps (seed {args.seed}); "
        f"calibration: {args.calib_size} images of default-val; held-out: {len(x)} images; work dir {work / arch}"
    )
    head = f"{'format':<10}{'method':<12}{'bits/w':>8}{'accuracy':>10}{'vs fp32':>9}{'agree':>9}{'KL':>9}"
    print(head + f"{'quant s':>9}{'peak RSS':>10}")
    for fmt, method, bpw, acc, agree, kl, secs, rss in rows:
        tail = "" if secs is None else f"{secs:>9.1f}{rss / 2**20:>7.0f} MB"
        print(
            f"{fmt:<10}{method:<12}{bpw:>8.3f}{acc:>10.2%}{100 * (acc - float_acc):>+8.2f}p"
            f"{agree:>9.2%}{kl:>9.4f}{tail}"
        )
    print(f"{arch}: {time.perf_counter() - t_start:.0f} s\n", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default=",".join(ARCHS), help=f"models to run, of {', '.join(ARCHS)}")
    ap.add_argument("--width-mult", type=float, default=0.35, help="MobileNetV2's width")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--formats", default="int4-g64,int4-g32,int3-g64,int3-g32,int2-g64,int2-g32")
    ap.add_argument("--methods", default="rtn,gptq,gptq+bc,adaround")
    ap.add_argument("--no-int8-floor", dest="int8_floor", action="store_false", help="skip the int8 RTN row")
    ap.add_argument("--calib-size", type=int, default=128, help="calibration images (validation split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--work", help="folder for the checkpoints and bundles (default: a temporary one)")
    args = ap.parse_args()
    archs = args.archs.split(",")
    if unknown := [a for a in archs if a not in ARCHS]:
        ap.error(f"unknown architecture {', '.join(unknown)} (use {', '.join(ARCHS)})")

    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="methods-vs-rtn-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MQS_DATA_DIR": str(work / "data-dir")}
    t_start = time.perf_counter()
    (xtr, ytr, xte, yte), _ = mnist_splits(args.input_size)
    for arch in archs:
        run_arch(arch, args, work, env, (xtr, ytr, xte, yte))
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
