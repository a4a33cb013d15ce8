"""The app's full-integer simulation against ONNX Runtime's own int8 model, on an imported MobileNetV2.

    python bench/actsim_vs_ort.py                      # train ~2 min, then calibrate/quantize/compare
    python bench/actsim_vs_ort.py --steps 200 --calib 32 --observers minmax

1. The PyTorch MobileNetV2 of ``bench/autoquant_vs_uniform.py`` (torchvision names) is trained on
   its MNIST split and imported with ``main.py import`` (width, 32 px, ``unit`` preprocessing).
2. Calibration: ``--calib`` images of ``default-val`` through the app's ``load_calibration`` (labels
   ignored); the very same preprocessed images feed ORT.
3. ORT: the float model exported with ``torch.onnx.export`` (TorchScript exporter, BatchNorm
   folded), ``quantize_static(QuantFormat.QDQ, per_channel=True, QUInt8 activations, QInt8
   weights)`` with the same observer, run by ``onnxruntime.InferenceSession`` on CPU.
4. App: ``intsim`` (engine.image.quant.intsim) on the imported bundle; and, for reference, the older
   ``actsim`` simulation (activations quantized at weight-layer inputs only, weights float).

Scores on the shipped held-out split (1,000 images): accuracy, top-1 agreement with float and
with ORT-int8, mean and max |logit - float logit|, mean |logit - ORT-int8 logit|.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from autoquant_vs_uniform import PREPROCESS, cli, mnist_splits, torch_mobilenet_v2, train

METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


def ort_int8(src: Path, dst: Path, calib_nchw: np.ndarray, observer: str, batch: int = 16) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib_nchw[i : i + batch]} for i in range(0, len(calib_nchw), batch)])

        def get_next(self):
            return next(self.it, None)

    with contextlib.redirect_stdout(io.StringIO()):  # ORT prints its histogram progress
        quantize_static(
            str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, METHODS[observer]),
        )  # fmt: skip


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width-mult", type=float, default=0.35)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--calib", type=int, default=64, help="calibration images of default-val")
    ap.add_argument("--observers", default="minmax,percentile,entropy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--work", help="folder for the checkpoint, ONNX files and bundle (default: a temporary one)")
    args = ap.parse_args()

    import logging
    import warnings

    import torch
    from safetensors.torch import save_file

    logging.getLogger().setLevel(logging.ERROR)  # ORT's "consider pre-processing" advice
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="actsim-vs-ort-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MQS_DATA_DIR": str(work / "data-dir")}
    observers = [o for o in args.observers.split(",") if o]
    print(
        f"settings: MobileNetV2 width {args.width_mult}, {args.input_size} px, {args.steps} training steps of "
        f"batch {args.batch}, seed {args.seed}; calibration {args.calib} images of default-val; observers "
        f"{', '.join(observers)}; ORT QDQ per-channel, uint8 activations / int8 weights; "
        f"{platform.machine()} {os.cpu_count()} CPUs"
    )
    (xtr, ytr, xte, yte), _ = mnist_splits(args.input_size)
    torch.manual_seed(args.seed)  # the initialisation too, so a rerun prints the same table
    net = torch_mobilenet_v2(args.width_mult, 10)
    secs = train(net, xtr, ytr, args.steps, args.batch, args.seed)
    print(f"trained in {secs:.0f} s")
    ckpt = work / "mobilenet_v2_mnist.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ckpt))
    fp32 = work / "fp32"
    labels = ",".join(str(i) for i in range(10))
    cli("import", "--arch", "mobilenet_v2", "--weights", str(ckpt), "--labels", labels, "--overwrite",
        "--input-size", str(args.input_size), "--preprocess", PREPROCESS, "--out", str(fp32), env=env)  # fmt: skip
    onnx_path = work / "float.onnx"
    torch.onnx.export(
        net, torch.zeros(1, 3, args.input_size, args.input_size), str(onnx_path), dynamo=False, opset_version=17,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )  # fmt: skip

    from engine.image.bundle import load_bundle
    from engine.image.quant.actsim import ActSimSettings, calibrate, simulated_activations
    from engine.image.quant.calibration import load_calibration, logits_of
    from engine.image.quant.intsim import FullIntModel, IntSimSettings, calibrate_fullint, logits
    from engine.image.quant.observers import ObserverSettings

    bundle = load_bundle(fp32)
    calib = load_calibration(bundle, "default-val", args.calib, 0)
    calib_nchw = np.ascontiguousarray(calib.x.transpose(0, 3, 1, 2))
    x_nhwc = np.ascontiguousarray(xte.transpose(0, 2, 3, 1))
    ref = ort_logits(onnx_path, xte)
    rows = [("float (ORT fp32)", "", ref)]
    for obs in observers:
        t0 = time.perf_counter()
        ort_int8(onnx_path, work / f"int8_{obs}.onnx", calib_nchw, obs)
        ort_q = ort_logits(work / f"int8_{obs}.onnx", xte)
        t1 = time.perf_counter()
        cal = calibrate_fullint(bundle.model, calib.x, IntSimSettings(ObserverSettings(obs), "uint8", len(calib)))
        app = logits(FullIntModel(cal), x_nhwc, 100)
        t2 = time.perf_counter()
        rows += [("ORT int8 (quantize_static)", obs, ort_q), ("app intsim", obs, app)]
        print(f"  {obs}: ORT quantize+run {t1 - t0:.1f} s, app calibrate+run {t2 - t1:.1f} s")
        if obs in ("minmax", "percentile"):
            old = calibrate(bundle.model, calib, ActSimSettings(observer=obs, calib=len(calib)))
            with simulated_activations(bundle.model, old):
                rows.append(("app actsim (inputs only)", obs, logits_of(bundle.model, x_nhwc, 100)))

    ort_by_obs = {obs: z for name, obs, z in rows if name.startswith("ORT int8")}
    print(f"\nheld-out: {len(yte)} MNIST images; logit errors against float (ORT fp32); work dir {work}")
    head = f"{'model':<28}{'observer':<12}{'accuracy':>9}{'agree float':>13}{'agree ORT-int8':>16}"
    print(head + f"{'mean|Δ|':>9}{'max|Δ|':>8}{'mean|Δ ORT-int8|':>18}{'err / ORT err':>15}")
    for name, obs, z in rows:
        acc = float(np.mean(z.argmax(1) == yte))
        agree_f = float(np.mean(z.argmax(1) == ref.argmax(1)))
        d = np.abs(z - ref)
        q = ort_by_obs.get(obs)
        agree_q = f"{float(np.mean(z.argmax(1) == q.argmax(1))):>16.2%}" if q is not None else f"{'':>16}"
        gap = f"{float(np.mean(np.abs(z - q))):>18.4f}" if q is not None else f"{'':>18}"
        ratio = f"{d.mean() / np.abs(q - ref).mean():>15.3f}" if q is not None else f"{'':>15}"
        print(f"{name:<28}{obs:<12}{acc:>9.2%}{agree_f:>13.2%}{agree_q}{d.mean():>9.4f}{d.max():>8.3f}{gap}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
