"""fp16/bf16 logits against float32 on real-scale activations, side by side.

    python bench/half_precision.py            # ResNet-50 and DenseNet-121 at 64 px, 4 images

The models are the test fixture's (``tests/engine/test_half_precision.py``): random weights,
BatchNorm statistics measured on the input, gains that take the pre-pool activations into
the thousands as a trained network's are. Printed per model: the largest pre-pool
activation, what MLX's own float16 ``mean`` makes of a global pool of such values over an
8x8 map (the old fp16 path; a 224-px input pools 7x7),
and the fp16/bf16 variants' relative logit error against float32.
"""

from __future__ import annotations

import argparse

from common import ROOT  # noqa: F401  (puts the repository on sys.path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="resnet50,densenet121")
    args = ap.parse_args()

    import mlx.core as mx
    import numpy as np

    from engine.image.quant.apply import quantize_model
    from engine.image.quant.recipes import make_recipe
    from tests.engine.test_half_precision import CASES, SIZE, real_scale

    print(f"{SIZE}-px inputs, 4 images; error = ||logits - fp32|| / ||fp32||")
    print(f"{'model':<12} {'pre-pool max':>12} {'fp16 mx.mean 8x8':>18} {'fp16 error':>11} {'bf16 error':>11}")
    for arch in args.archs.split(","):
        bundle, x = real_scale(arch, CASES[arch])
        feats = bundle.model.forward_features(x)
        # The same activations over an 8x8 map (a 224-px input's pool sees 7x7): MLX sums them in float16.
        naive = mx.mean(mx.tile(feats, (1, 4, 4, 1)).astype(mx.float16), axis=(1, 2))
        naive_txt = "finite" if bool(mx.all(mx.isfinite(naive))) else "inf/NaN"
        ref = np.array(bundle.forward(x))
        errs = []
        for name in ("fp16", "bf16"):
            work = bundle.clone()
            work.quantization = quantize_model(work.model, make_recipe(name), input_shape=bundle.input_shape())
            out = np.array(work.forward(x))
            errs.append(np.linalg.norm(out - ref) / np.linalg.norm(ref) if np.isfinite(out).all() else float("nan"))
        pre = float(mx.max(mx.abs(feats)))
        print(f"{arch:<12} {pre:>12.0f} {naive_txt:>18} {100 * errs[0]:>10.2f}% {100 * errs[1]:>10.2f}%")
    print("target: fp16 finite and within 1 % of float32")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
