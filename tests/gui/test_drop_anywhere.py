"""Images dropped anywhere on the window are predicted in Inference, and a new drop adds to the
images already shown (issue 15)."""

from __future__ import annotations

from engine.core.paths import SAMPLES_DIR
from tests.gui.test_app import drop_files, idle


def test_drops_on_the_window_add_images(qtbot, window):
    window.tabs.setCurrentWidget(window.models_tab)
    first = [SAMPLES_DIR / "digit_1.png", SAMPLES_DIR / "digit_2.png"]
    drop_files(window, first)
    tab = window.inference_tab
    qtbot.waitUntil(lambda: tab.outcome is not None and idle(window), timeout=20000)
    assert window.tabs.currentWidget() is tab
    assert [p.rsplit("/", 1)[-1] for p in tab.outcome.inputs] == ["digit_1.png", "digit_2.png"]
    drop_files(window, [SAMPLES_DIR / "digit_2.png", SAMPLES_DIR / "digit_3.png"])
    qtbot.waitUntil(lambda: len(tab.outcome.inputs) == 3 and idle(window), timeout=20000)
    assert tab.images.count() == 3 and tab.images.currentRow() == 2, "the new image is shown"
    assert len(tab.outcome.thumbnails) == 3 and tab.outcome.logits[0].shape[0] == 3
    assert [preds[0][0].label for preds in tab.outcome.predictions] == ["1", "2", "3"]
