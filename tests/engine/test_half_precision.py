"""fp16/bf16 recipes compute right on real-scale activations.

A trained ResNet-50's last feature maps hold values in the thousands; MLX's float16
``mean`` accumulates in float16, so an fp16 global average pool of 7x7 such values
overflows (the issue's NaN logits). Here random-weight ImageNet models get
BatchNorm statistics measured on their own input (so every BN normalises as a
trained one does) and gains that take the pre-pool activations into the thousands;
the fp16 variant, quantized and reloaded through the bundle, must give finite logits
within 1 % of the float32 model's.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine.image.bundle import ModelBundle, load_bundle
from engine.image.models import registry
from engine.image.models.base import IMAGENET_PREPROCESSING
from engine.image.quant.apply import quantize_model
from engine.image.quant.fold import FoldedBatchNorm
from engine.image.quant.hooks import hooked
from engine.image.quant.recipes import make_recipe

SIZE = 64  # 2x2 cells before the pool: small enough for two shared cores, same code path as 224 px


def calibrate_batchnorm(model: nn.Module, x: mx.array) -> None:
    """Set every BatchNorm's running statistics to its input's batch statistics, in one float32 pass."""

    def set_stats(path, forward, inp, *args, **kwargs):
        bn = modules[path]
        bn.running_mean = mx.mean(inp, axis=(0, 1, 2))
        # One variance per layer: per-channel statistics of a random net amplify its near-dead channels
        # (a random net normalised channel by channel is chaotic; a trained one is not).
        bn.running_var = mx.broadcast_to(mx.mean(mx.var(inp, axis=(0, 1, 2))), bn.running_mean.shape)
        mx.eval(bn.running_mean, bn.running_var)
        return forward(inp, *args, **kwargs)

    modules = dict(model.named_modules())
    bns = [p for p, m in modules.items() if isinstance(m, nn.BatchNorm)]
    with hooked(model, {p: set_stats for p in bns}):
        mx.eval(model(x))


def real_scale(arch: str, gains: dict[str, float], seed: int = 0):
    """A random model whose BatchNorms are calibrated and whose named BNs scale their output by a gain."""
    mx.random.seed(seed)
    spec = registry.get(arch)
    cfg = spec.default_config(num_classes=10)
    model = spec.build(cfg)
    model.eval()
    modules = dict(model.named_modules())
    # A large stem makes the first BatchNorm's variance exceed float16's range (65504).
    stem = "conv1" if arch.startswith("resnet") else "features.conv0"
    modules[stem].weight = modules[stem].weight * 100.0
    x = mx.random.normal((16, SIZE, SIZE, 3), key=mx.random.key(1))
    if arch.startswith("resnet"):
        # trained ResNets keep their residual branches small (last BN's gamma well below 1)
        for path, m in modules.items():
            if path.endswith("bn3"):
                m.weight = mx.full(m.weight.shape, 0.2)
    calibrate_batchnorm(model, x)
    for path, gain in gains.items():
        bn = modules[path]
        bn.weight = mx.random.uniform(0.5, 1.5, bn.weight.shape) * gain
        bn.bias = mx.random.uniform(0.0, 1.0, bn.bias.shape) * gain
    mx.eval(model.parameters())
    preprocessing = IMAGENET_PREPROCESSING.__class__(**{**IMAGENET_PREPROCESSING.to_dict(), "input_size": (SIZE, SIZE)})
    bundle = ModelBundle(arch, arch, cfg, preprocessing, [f"c{i}" for i in range(10)], model)
    return bundle, x[:4]


def pre_pool_max(bundle: ModelBundle, x: mx.array) -> float:
    feats = bundle.model.forward_features(x)
    return float(mx.max(mx.abs(feats)))


CASES = {
    # the last bottleneck's bn3 and the residual sum reach the thousands
    "resnet50": {"layer4.2.bn3": 1500.0},
    # DenseNet's final norm feeds the pool directly
    "densenet121": {"features.norm5": 1500.0},
}


@pytest.mark.parametrize("arch", sorted(CASES))
@pytest.mark.parametrize("recipe_name", ["fp16", "bf16"])
def test_half_precision_logits_match_float32(arch, recipe_name, tmp_path):
    bundle, x = real_scale(arch, CASES[arch])
    assert pre_pool_max(bundle, x) > 1000.0, "the fixture must reach real-scale activations"
    ref = np.array(bundle.forward(x))
    assert np.isfinite(ref).all()

    work = bundle.clone()
    qconfig = quantize_model(work.model, make_recipe(recipe_name), input_shape=bundle.input_shape())
    variant = ModelBundle(
        f"{arch}-{recipe_name}", arch, bundle.arch_config, bundle.preprocessing, bundle.labels, work.model, qconfig
    )
    variant.save(tmp_path / recipe_name)
    loaded = load_bundle(tmp_path / recipe_name)
    # Relative error of the logits (L2 over the batch): fp16 within 1 %; bfloat16 keeps 3 fewer
    # significant bits than float16 (8 against 11), so it is allowed 8 times as much.
    tol = 0.01 if recipe_name == "fp16" else 0.08
    for model in (variant, loaded):
        out = np.array(model.forward(x))
        assert np.isfinite(out).all(), f"{recipe_name} {arch} logits are not finite"
        err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        assert err < tol, f"{recipe_name} {arch}: logits {err:.2%} away from float32"
        assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.75
    assert qconfig["folded"], "half-precision recipes fold BatchNorm like the others"
    assert FoldedBatchNorm in {type(m) for _, m in loaded.model.named_modules()}


def test_unfolded_batchnorm_in_half_precision_stays_finite():
    """A BatchNorm whose variance exceeds float16's range normalises in float32."""
    from engine.image.quant.half import WideBatchNorm

    bn = nn.BatchNorm(8)
    bn.eval()
    bn.running_mean = mx.full((8,), 300.0)
    bn.running_var = mx.full((8,), 1.0e6)  # float16 max is 65504
    x = mx.random.normal((2, 3, 3, 8), key=mx.random.key(0)) * 1000.0 + 300.0
    ref = np.array(bn(x))
    wide = WideBatchNorm.from_batchnorm(bn)
    out = wide(x.astype(mx.float16))
    assert out.dtype == mx.float16
    np.testing.assert_allclose(np.array(out.astype(mx.float32)), ref, rtol=2e-3, atol=2e-3)
