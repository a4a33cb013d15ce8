"""Quantization reaches the new families' layers: attention and MLP Linears, ConvNeXt's depthwise, RegNet's group convs.

Models are small imports of torchvision references (random weights, non-trivial norms);
int8 must stay within a few percent of the float logits and survive save -> load.
"""

from __future__ import annotations

import numpy as np
import pytest
from mlx import nn

from engine.image.bundle import ModelBundle, load_bundle
from engine.image.importers.checkpoint import import_checkpoint
from engine.image.quant.apply import quantizable_layers, quantize_model
from engine.image.quant.recipes import make_recipe
from tests.importers.modern_reference import randomize, reference_input, save_state_dict
from tests.torchvision_ref import torchvision


def _small(arch: str):
    from torchvision.models import SwinTransformer, VisionTransformer

    if arch == "vit_s_16":
        return VisionTransformer(224, 16, 2, 6, 384, 1536, num_classes=10), 224
    if arch == "swin_t":
        return SwinTransformer([4, 4], 32, [2, 2], [1, 2], [7, 7], num_classes=10), 224
    if arch == "convnext_tiny":
        return torchvision.models.convnext_tiny(num_classes=10), 64
    return torchvision.models.regnet_y_400mf(num_classes=10), 64


def _bundle(tmp_path, arch):
    model, size = _small(arch)
    path = save_state_dict(randomize(model), tmp_path / f"{arch}.safetensors")
    return import_checkpoint(arch, path), size


@pytest.mark.parametrize(
    "arch, must_quantize",
    [
        ("vit_s_16", ("self_attention.in_proj", "self_attention.out_proj", "mlp.0", "mlp.3", "heads.head")),
        ("swin_t", ("attn.qkv", "attn.proj", "mlp.0", "reduction")),
        ("convnext_tiny", ("block.0", "block.3", "block.5")),
        ("regnet_y_400mf", ("f.b.0", "f.se.fc1")),
    ],
)
def test_int8_quantizes_the_new_layers_and_round_trips(tmp_path, arch, must_quantize):
    bundle, size = _bundle(tmp_path, arch)
    x = np.ascontiguousarray(reference_input((2, 3, size, size)).transpose(0, 2, 3, 1))
    want = bundle.predict_logits(x)
    layers = quantizable_layers(bundle.model, (size, size, 3))
    for suffix in must_quantize:
        assert any(info.path.endswith(suffix) for info in layers), (suffix, [i.path for i in layers][:8])
    qconfig = quantize_model(bundle.model, make_recipe("int8"), input_shape=(size, size, 3))
    # A layer whose input width no group size divides (RegNet's 440-wide head) stays float by design.
    remaining = [
        p
        for p, m in bundle.model.named_modules()
        if p and type(m) in (nn.Linear, nn.Conv2d) and m.weight.shape[-1] % 32 == 0
    ]
    assert not remaining, remaining[:5]
    got = bundle.predict_logits(x)
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    variant = ModelBundle(
        f"{arch}-int8", arch, bundle.arch_config, bundle.preprocessing, bundle.labels, bundle.model, qconfig
    )
    variant.save(tmp_path / "int8")
    again = load_bundle(tmp_path / "int8").predict_logits(x)
    np.testing.assert_allclose(again, got, rtol=1e-5, atol=1e-5 * np.abs(got).max())


def test_sensitivity_ranks_a_vit_attention_layer_alone(tmp_path):
    """The sensitivity analysis sees the ViT's attention and MLP Linears, one at a time."""
    from scipy.special import softmax
    from scipy.stats import entropy
    from torchvision.models import VisionTransformer

    from engine.image.quant.calibration import LabelledImages
    from engine.image.quant.formats import parse_spec
    from engine.image.quant.sensitivity import analyze_sensitivity

    model = randomize(VisionTransformer(32, 8, 2, 2, 64, 128, num_classes=4))
    path = save_state_dict(model, tmp_path / "vit.safetensors")
    bundle = import_checkpoint("vit_b_16", path, arch_overrides={"num_heads": 2})
    x = np.ascontiguousarray(reference_input((12, 3, 32, 32)).transpose(0, 2, 3, 1))
    images = LabelledImages("random", x, np.arange(12) % 4)
    report = analyze_sensitivity(bundle, [parse_spec("int2")], images)
    paths = [i.path for i in report.layers]
    target = "encoder.layers.encoder_layer_1.self_attention.in_proj"
    assert target in paths and "encoder.layers.encoder_layer_0.mlp.3" in paths
    # Reference: that layer alone quantized by the whole-model quantizer.
    alone = import_checkpoint("vit_b_16", path, arch_overrides={"num_heads": 2})
    quantize_model(alone.model, make_recipe("fp32", overrides=[(target, "int2")]), input_shape=(32, 32, 3))
    ref = softmax(bundle.predict_logits(x).astype(np.float64), axis=1)
    q = softmax(alone.predict_logits(x).astype(np.float64), axis=1)
    want = np.mean([entropy(p, r) for p, r in zip(ref, q, strict=True)])
    assert want > 0
    assert report.row(target, "int2").kl == pytest.approx(want, rel=1e-3, abs=1e-6)
