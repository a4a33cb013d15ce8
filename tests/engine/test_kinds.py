"""engine.kinds decides a model's kind in one place; every front end asks it."""

from __future__ import annotations

import json

import pytest

from engine import kinds
from engine.core.errors import UserError
from engine.core.paths import DEFAULT_LM_DIR, DEFAULT_MODEL_DIR
from engine.kinds.files import BUNDLE, CHECKPOINT, classify


def test_the_shipped_models_and_names():
    assert kinds.kind_of("default") == kinds.kind_of(DEFAULT_MODEL_DIR) == kinds.IMAGE
    assert kinds.kind_of("default-lm") == kinds.kind_of(DEFAULT_LM_DIR) == kinds.LANGUAGE
    assert kinds.kind_of("someone/tiny-llama") == kinds.LANGUAGE  # a Hugging Face id, not fetched
    assert kinds.get(kinds.IMAGE).label == "image classifier"
    assert "mixed-4-8" in kinds.get(kinds.IMAGE).recipes() and "mixed_2_6" in kinds.get(kinds.LANGUAGE).recipes()


def test_each_kind_offers_the_methods_its_quantize_path_accepts():
    from engine.image.quant.methods import check_method
    from engine.llm.methods import LM_METHODS

    image, language = kinds.get(kinds.IMAGE).methods(), kinds.get(kinds.LANGUAGE).methods()
    assert [m for m, _ in image.methods] == [check_method(m) for m, _ in image.methods]  # each one is accepted
    assert [m for m, _ in language.methods] == ["rtn", *LM_METHODS]
    assert not image.calib_required and image.calib_placeholder == "default-val"
    assert language.calib_required and language.calib_unit == "chunks" and language.calib_size == 0  # auto


def test_a_hugging_face_image_classifier_folder_is_imported_not_opened(tmp_path):
    folder = tmp_path / "vit-skin"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "vit", "architectures": ["ViTForImageClassification"]})
    )
    with pytest.raises(UserError, match="import it first"):
        kinds.kind_of(folder)
    assert classify(folder) == CHECKPOINT
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    assert kinds.kind_of(lm) == kinds.LANGUAGE and classify(lm) == BUNDLE


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda p: None, "model not found"),
        (lambda p: p.mkdir() or (p / "config.json").write_text("{"), "not valid JSON"),
        (lambda p: p.mkdir() or (p / "config.json").write_text("{}"), "neither a model bundle nor"),
        (lambda p: p.write_text("weights"), "not a model"),
    ],
)
def test_neither_kind_is_one_line_naming_the_path(tmp_path, make, phrase):
    target = tmp_path / "thing"
    make(target)
    with pytest.raises(UserError, match=phrase) as info:
        kinds.kind_of(target)
    assert str(target) in str(info.value)
    assert kinds.try_kind_of(target) is None
