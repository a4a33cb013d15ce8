"""PyTorch state dicts (torchvision and timm naming) import with logits equal to the reference's.

The references were computed by torchvision 0.29 / timm 1.0 on the same
deterministic weights (tests/fixtures/make_torchvision_reference.py); here the
weights are rebuilt with numpy, written as .safetensors or .pth, imported and run.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest

from engine.core.errors import UserError
from engine.image.importers.checkpoint import import_checkpoint, read_state_dict
from tests.importers.reference import (
    load_reference,
    reference_input_nhwc,
    reference_logits,
    reference_weights,
    save_pth,
    save_safetensors,
)

TOL = 1e-3


def _max_diff(bundle, ref) -> float:
    """Max abs logit difference; also checks it is small against how much the logits depend on the input."""
    got = bundle.predict_logits(reference_input_nhwc(ref))
    want = reference_logits(ref)
    assert got.shape == want.shape
    diff = float(np.abs(got - want).max())
    spread = float(np.abs(want - want.mean(0)).max())
    assert diff <= 0.01 * spread, (diff, spread)
    return diff


@pytest.mark.parametrize(
    "fixture, arch, overrides",
    [
        ("torchvision_mobilenet_v2", "mobilenet_v2", None),
        ("torchvision_mobilenet_v2_w050", "mobilenet_v2", None),  # width_mult read off the checkpoint
        ("torchvision_resnet18", "resnet18", None),
        ("torchvision_resnet50", "resnet50", None),
        ("torchvision_efficientnet_b0", "efficientnet_b0", None),
        ("torchvision_densenet121", "densenet121", None),
    ],
)
def test_torchvision_safetensors_matches_torchvision(tmp_path, fixture, arch, overrides):
    ref = load_reference(fixture)
    path = save_safetensors(reference_weights(ref), tmp_path / "model.safetensors")
    bundle = import_checkpoint(arch, path, arch_overrides=overrides)
    assert bundle.arch_config["num_classes"] == ref["num_classes"] == len(bundle.labels)
    if fixture.endswith("w050"):
        assert bundle.arch_config["width_mult"] == 0.5
    assert _max_diff(bundle, ref) <= TOL


@pytest.mark.parametrize(
    "fixture, arch",
    [
        ("timm_mobilenetv2_100", "mobilenetv2_100"),
        ("timm_resnet18", "resnet18"),
        ("timm_resnet50", "resnet50"),
        ("timm_efficientnet_b0", "efficientnet_b0"),
        ("timm_densenet121", "densenet121"),
    ],
)
def test_timm_names_match_timm(tmp_path, fixture, arch):
    ref = load_reference(fixture)
    path = save_safetensors(reference_weights(ref), tmp_path / "timm.safetensors")
    bundle = import_checkpoint(arch, path)
    assert _max_diff(bundle, ref) <= TOL


@pytest.mark.parametrize(
    "fixture, arch", [("torchvision_mobilenet_v2", "mobilenet_v2"), ("torchvision_resnet18", "resnet18")]
)
def test_pth_read_with_torch_weights_only(tmp_path, fixture, arch):
    pytest.importorskip("torch")
    ref = load_reference(fixture)
    path = save_pth(reference_weights(ref), tmp_path / "model.pth")
    bundle = import_checkpoint(arch, path)
    assert _max_diff(bundle, ref) <= TOL


def test_training_checkpoint_wrapper_and_prefix_are_unwrapped(tmp_path):
    torch = pytest.importorskip("torch")
    ref = load_reference("torchvision_resnet18")
    sd = {f"module.{k}": torch.from_numpy(v) for k, v in reference_weights(ref).items()}
    torch.save({"epoch": 3, "state_dict": sd, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pth")
    bundle = import_checkpoint("resnet18", tmp_path / "ckpt.pth")
    assert _max_diff(bundle, ref) <= TOL


class _Exploit:
    """Unpickling this would run ``os.system``; weights_only loading must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pth_whose_pickle_runs_code_is_refused_and_nothing_runs(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": _Exploit(marker)}, zipped)
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps({"payload": _Exploit(marker)}))
    assert zipfile.is_zipfile(zipped)
    for path in (zipped, legacy):
        with pytest.raises(UserError, match="refused to unpickle") as err:
            read_state_dict(path)
        assert str(path) in str(err.value)
    assert not marker.exists()


def test_pth_without_torch_says_how_to_convert(tmp_path, monkeypatch):
    import sys

    path = tmp_path / "model.pth"
    path.write_bytes(b"PK\x03\x04 not really")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(UserError, match="safetensors"):
        read_state_dict(path)


def test_mismatches_are_named(tmp_path):
    ref = load_reference("torchvision_resnet18")
    w = reference_weights(ref)
    w.pop("layer1.0.conv1.weight")
    w["layer9.extra.weight"] = np.zeros((2, 2), np.float32)
    w["fc.bias"] = np.zeros((5,), np.float32)  # head says 7 classes
    path = save_safetensors(w, tmp_path / "bad.safetensors")
    with pytest.raises(UserError) as err:
        import_checkpoint("resnet18", path)
    msg = str(err.value)
    assert "missing layer1.0.conv1.weight" in msg
    assert "unexpected layer9.extra.weight" in msg
    assert "fc.bias (5,) vs (7,)" in msg
    assert "\n" not in msg


def test_wrong_architecture_names_the_one_that_fits(tmp_path):
    ref = load_reference("torchvision_resnet50")
    path = save_safetensors(reference_weights(ref), tmp_path / "r50.safetensors")
    with pytest.raises(UserError, match="match resnet50"):
        import_checkpoint("resnet18", path)


def test_head_of_any_class_count(tmp_path):
    ref = load_reference("torchvision_resnet18")
    w = reference_weights(ref)
    rng = np.random.default_rng(0)
    w["fc.weight"] = rng.normal(size=(3, 512)).astype(np.float32)
    w["fc.bias"] = np.zeros(3, np.float32)
    path = save_safetensors(w, tmp_path / "three.safetensors")
    bundle = import_checkpoint("resnet18", path, labels=["cat", "dog", "cow"])
    assert bundle.labels == ["cat", "dog", "cow"] and bundle.arch_config["num_classes"] == 3
    with pytest.raises(UserError, match="3"):
        import_checkpoint("resnet18", path, num_classes=3, labels=["a", "b"])
