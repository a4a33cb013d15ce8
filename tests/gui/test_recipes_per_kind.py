"""The Quantize tab offers the recipes of the source model's kind only (issue 15)."""

from __future__ import annotations

from engine.core.paths import DEFAULT_LM_DIR, DEFAULT_MODEL_DIR


def offered(tab) -> list[str]:
    return [tab.recipe.itemText(i) for i in range(tab.recipe.count())]


def test_recipes_follow_the_source_kind(window):
    tab = window.quantize_tab
    tab.set_source(str(DEFAULT_MODEL_DIR.resolve()))
    image = offered(tab)
    assert "mixed-4-8" in image and "int4" in image and "mixed_2_6" not in image and "fp32" not in image
    tab.set_source(str(DEFAULT_LM_DIR.resolve()))
    lm = offered(tab)
    assert "mixed_2_6" in lm and "int4" in lm and "mixed-4-8" not in lm
    tab.recipe.setCurrentText("int4")
    tab.set_source(str(DEFAULT_MODEL_DIR.resolve()))
    assert tab.recipe.currentText() == "int4", "a recipe both kinds have stays chosen"
