"""Hugging Face image-classification folders import with transformers' own logits, labels and preprocessing.

Each folder is written by transformers' ``save_pretrained`` (model and image
processor) from a tiny random model with non-trivial LayerNorm parameters and
embeddings; the bundle's logits are compared with the transformers forward.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.core.errors import UserError
from engine.image.importers.dispatch import file_kind, import_file
from tests.importers.modern_reference import check_parity, randomize, reference_input

transformers = pytest.importorskip("transformers")

LABELS = {0: "nevus", 1: "melanoma", 2: "keratosis", 3: "dermatofibroma", 4: "vascular"}


def _vit_like(kind: str):
    cfg_cls = transformers.ViTConfig if kind == "vit" else transformers.DeiTConfig
    model_cls = transformers.ViTForImageClassification if kind == "vit" else transformers.DeiTForImageClassification
    cfg = cfg_cls(
        image_size=32,
        patch_size=8,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=96,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    proc = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return model_cls(cfg), proc, (2, 3, 32, 32)


def _convnext():
    cfg = transformers.ConvNextConfig(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 2, 1], id2label=LABELS)
    proc = transformers.ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875, resample=3)
    return transformers.ConvNextForImageClassification(cfg), proc, (2, 3, 64, 48)


def _swin():
    cfg = transformers.SwinConfig(
        image_size=224, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=7, id2label=LABELS
    )
    proc = transformers.ViTImageProcessor(size={"height": 224, "width": 224})
    return transformers.SwinForImageClassification(cfg), proc, (2, 3, 224, 224)


def _resnet(layer_type: str):
    widths = [256, 512, 1024, 2048] if layer_type == "bottleneck" else [64, 128, 256, 512]
    cfg = transformers.ResNetConfig(
        embedding_size=64, hidden_sizes=widths, depths=[1, 1, 1, 1], layer_type=layer_type, id2label=LABELS
    )
    proc = transformers.ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875)
    return transformers.ResNetForImageClassification(cfg), proc, (2, 3, 64, 48)


BUILDERS = {
    "vit": lambda: _vit_like("vit"),
    "deit": lambda: _vit_like("deit"),
    "convnext": _convnext,
    "swin": _swin,
    "resnet": lambda: _resnet("bottleneck"),
    "resnet_basic": lambda: _resnet("basic"),
}


def _folder(tmp_path, kind):
    import torch

    torch.manual_seed(0)
    model, proc, shape = BUILDERS[kind]()
    randomize(model)
    folder = tmp_path / f"hf-{kind}"
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    x = reference_input(shape)
    with torch.no_grad():
        want = model(pixel_values=torch.from_numpy(x)).logits.numpy()
    return folder, x, want


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_hf_folder_matches_transformers(tmp_path, kind):
    folder, x, want = _folder(tmp_path, kind)
    assert (folder / "model.safetensors").is_file() and (folder / "preprocessor_config.json").is_file()
    assert file_kind(folder) == "huggingface"
    bundle = import_file(folder)
    assert bundle.labels == [LABELS[i] for i in range(5)]
    assert bundle.arch == {"resnet": "resnet50", "resnet_basic": "resnet18"}.get(kind, bundle.arch)
    check_parity(bundle.predict_logits(np.ascontiguousarray(x.transpose(0, 2, 3, 1))), want)


def test_preprocessing_comes_from_the_processor(tmp_path):
    folder, _, _ = _folder(tmp_path, "convnext")
    p = import_file(folder).preprocessing
    assert (p.input_size, p.resize, p.crop_fraction, p.interpolation) == (
        (224, 224),
        "shorter_side_crop",
        0.875,
        "bicubic",
    )
    saved = json.loads((folder / "preprocessor_config.json").read_text())
    assert p.mean == pytest.approx(tuple(saved["image_mean"])) and p.std == pytest.approx(tuple(saved["image_std"]))
    assert p.scale == "unit"
    folder, _, _ = _folder(tmp_path, "vit")
    p = import_file(folder).preprocessing
    assert (p.input_size, p.resize, p.mean, p.std) == ((32, 32), "stretch", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_bundle_saves_and_reloads(tmp_path):
    from engine.image.bundle import load_bundle

    folder, x, want = _folder(tmp_path, "deit")
    import_file(folder).save(tmp_path / "bundle")
    again = load_bundle(tmp_path / "bundle")
    check_parity(again.predict_logits(np.ascontiguousarray(x.transpose(0, 2, 3, 1))), want)


def test_unsupported_models_are_named(tmp_path):
    folder, _, _ = _folder(tmp_path, "vit")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "beit"}))
    with pytest.raises(UserError, match="unsupported Hugging Face model type 'beit'"):
        import_file(folder)
    (folder / "config.json").write_text(
        json.dumps({**cfg, "model_type": "deit", "architectures": ["DeiTForImageClassificationWithTeacher"]})
    )
    with pytest.raises(UserError, match="distilled DeiT head"):
        import_file(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="no weights"):
        import_file(folder)


def test_cli_imports_a_folder(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    folder, x, want = _folder(tmp_path, "vit")
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "bundle"
    run = subprocess.run(
        [sys.executable, str(root / "main.py"), "import", "--weights", str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert run.returncode == 0, run.stderr
    assert "vit_b_16 (5 classes" in run.stdout
    from engine.image.bundle import load_bundle

    bundle = load_bundle(out)
    assert bundle.labels[1] == "melanoma"
    check_parity(bundle.predict_logits(np.ascontiguousarray(x.transpose(0, 2, 3, 1))), want)
