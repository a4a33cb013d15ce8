"""Quantized ViT-S/16 and ConvNeXt-T bundles: size on disk at int8/int4 and int8 agreement with float.

Each model is a torchvision reference (ViT-S/16 as timm's widths in torchvision's
VisionTransformer; ConvNeXt-T from its builder) with random weights and
non-trivial normalisation statistics (tests/importers/modern_reference.py),
imported through its .safetensors state dict like a user's checkpoint, saved as a
float32 bundle and quantized with the built-in recipes. Agreement runs the
default data pipeline: synthetic RGB photos-like images (smooth noise) decoded
through the bundle's own preprocessing (shorter side to 256, centre crop 224,
ImageNet mean/std), float vs int8 top-1 and mean KL. Also prints the architectures
table (trainable parameters and MACs at 224x224, attention matmuls included).

    python bench/vision_quant_sizes.py [--images 6] [--table-only | --recipes-only]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TABLE = [
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_v2_s",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "convnext_tiny",
    "convnext_small",
    "deit_tiny",
    "vit_s_16",
    "vit_b_16",
    "swin_t",
]


def architecture_table() -> None:
    from mlx.utils import tree_flatten

    from engine.image.macs import count_macs
    from engine.image.models import registry

    print("| architecture | parameters | GMACs at 224x224 | of which attention matmuls |")
    print("| --- | ---: | ---: | ---: |")
    for name in TABLE:
        arch = registry.get(name)
        model = arch.build(arch.default_config())
        params = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
        macs = count_macs(model, (224, 224, 3))
        attn = sum(v for k, v in macs.items() if k.endswith(("self_attention", ".attn")))
        print(f"| {name} | {params / 1e6:.2f} M | {sum(macs.values()) / 1e9:.3f} | {attn / 1e9:.3f} |")


RECIPE_ARCHS = ["mobilenet_v3_large", "efficientnet_v2_s", "regnet_y_400mf", "convnext_tiny", "vit_s_16", "swin_t"]


def recipe_table() -> None:
    """Which layers each recipe quantizes, per family: layer counts by kind and stored format."""
    from collections import Counter

    from engine.image.bundle import ModelBundle
    from engine.image.models import registry
    from engine.image.quant.inventory import estimate, inventory
    from engine.image.quant.recipes import make_recipe

    print(
        "| architecture | recipe | planned layers by kind and format (norms, biases, class token, position tables stay float32) |"
    )
    print("| --- | --- | --- |")
    for name in RECIPE_ARCHS:
        arch = registry.get(name)
        cfg = arch.default_config()
        model = arch.build(cfg)
        model.eval()
        bundle = ModelBundle(name, name, cfg, arch.default_preprocessing, [str(i) for i in range(1000)], model)
        inv = inventory(bundle, fold_bn=False)
        for recipe in ("int8", "int4", "mixed-4-8"):
            plan = estimate(inv, make_recipe(recipe))
            counts = Counter((r.kind, r.format) for r in plan.layers)
            cells = ", ".join(f"{n} {kind} {fmt}" for (kind, fmt), n in sorted(counts.items()))
            print(f"| {name} | {recipe} | {cells} |")


def synthetic_images(n: int, seed: int = 0):
    """Photo-like RGB images (smooth noise plus edges), 320x256, as PIL images."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((256, 320), Image.BILINEAR).filter(ImageFilter.GaussianBlur(2))
        arr = np.asarray(img).astype(np.int16)
        arr[rng.integers(0, 300) :, :, rng.integers(0, 3)] += 60  # a hard edge
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def reference_bundle(name: str, tmp: Path):
    import torch

    from engine.image.importers.checkpoint import import_checkpoint
    from tests.importers.modern_reference import randomize, save_state_dict
    from tests.torchvision_ref import torchvision

    torch.manual_seed(0)
    if name == "vit_s_16":
        from torchvision.models import VisionTransformer

        model = VisionTransformer(224, 16, 12, 6, 384, 1536)
    else:
        model = torchvision.models.convnext_tiny()
    path = save_state_dict(randomize(model), tmp / f"{name}.safetensors")
    return import_checkpoint(name, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--recipes-only", action="store_true", help="only the recipe table")
    args = ap.parse_args(argv)
    import mlx.core as mx
    import numpy as np

    from engine.image.bundle import ModelBundle, load_bundle
    from engine.image.quant.apply import quantize_model
    from engine.image.quant.recipes import make_recipe

    if args.recipes_only:
        recipe_table()
        return 0
    architecture_table()
    if args.table_only:
        return 0
    print()
    print(f"settings: 1000 classes, recipes int8 / int4 (built-in, scales float16 on disk), {args.images} images")
    print("| model | float32 bundle | int8 | int4 | int8 top-1 agreement | int8 mean KL | quantize s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    images = synthetic_images(args.images)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name in ("vit_s_16", "convnext_tiny"):
            fp32 = reference_bundle(name, tmp)
            fp32.save(tmp / f"{name}-fp32")
            size0 = fp32.size_on_disk()
            x = np.stack([fp32.preprocessing(img) for img in images])
            ref = np.concatenate([fp32.predict_logits(x[i : i + 1]) for i in range(len(x))])
            cells, agree, kl, secs = {}, None, None, 0.0
            for recipe in ("int8", "int4"):
                work = load_bundle(tmp / f"{name}-fp32")
                t0 = time.perf_counter()
                qconfig = quantize_model(work.model, make_recipe(recipe), input_shape=(224, 224, 3))
                mx.eval(work.model.parameters())
                if recipe == "int8":
                    secs = time.perf_counter() - t0
                q = ModelBundle(
                    f"{name}-{recipe}", name, fp32.arch_config, work.preprocessing, work.labels, work.model, qconfig
                )
                q.save(tmp / f"{name}-{recipe}")
                cells[recipe] = q.size_on_disk() / size0
                if recipe == "int8":
                    got = np.concatenate([q.predict_logits(x[i : i + 1]) for i in range(len(x))])
                    agree = float((got.argmax(1) == ref.argmax(1)).mean())
                    p = np.exp(ref - ref.max(1, keepdims=True))
                    p /= p.sum(1, keepdims=True)
                    lq = got - got.max(1, keepdims=True)
                    lq -= np.log(np.exp(lq).sum(1, keepdims=True))
                    kl = float((p * (np.log(p + 1e-30) - lq)).sum(1).mean())
            print(
                f"| {name} | {size0 / 2**20:.1f} MiB | {cells['int8']:.1%} | {cells['int4']:.1%} | "
                f"{agree:.1%} | {kl:.2e} | {secs:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
