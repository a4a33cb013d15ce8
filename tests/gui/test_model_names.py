"""Every model list tells apart models that would look the same (issue 14): the shipped model,
a copy among the user's models and one in a demo folder all carry the same name and recipe."""

from __future__ import annotations

import shutil

from engine.core import paths
from gui.state import AppState


def test_same_name_and_recipe_show_where_they_lie(qtbot, tmp_path):
    state = AppState()
    state.scan()
    mine = paths.variants_dir() / "copy"
    demo = tmp_path / "demo" / "models" / "copy"
    for target in (mine, demo):
        shutil.copytree(paths.DEFAULT_MODEL_DIR, target)
    with qtbot.waitSignal(state.models_changed):
        state.add(mine)
    state.add(demo)
    labels = [e.display for e in state.entries("image")]
    assert len(labels) == len(set(labels)) == 3, labels
    assert any(label.endswith("(shipped)") for label in labels)
    assert any(label.endswith("(my models)") for label in labels)
    assert any(label.endswith("(demo/models)") for label in labels)
    # A name of its own needs no suffix, and removing the clash removes the suffixes again.
    state.remove(str(demo.resolve()))
    state.remove(str(mine.resolve()))
    assert [e.display for e in state.entries("image")] == ["default-small-cnn  [fp32]"]
