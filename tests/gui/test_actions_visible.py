"""Every tab's main action, its Cancel and its status stay on screen at 1024×640 and 1280×800,
before, during and after a job (issue 15): settings may scroll, the action bar never does.

Quantize, Benchmark and Evaluation have their own Cancel and status line; Models, Inference and
Results use the window's (the status bar's Cancel appears while a job runs)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect


def on_screen(widget) -> bool:
    """Shown, not clipped away by a scroll area or splitter, and inside the window."""
    if not widget.isVisible() or widget.visibleRegion().isEmpty():
        return False
    window = widget.window()
    top_left = widget.mapTo(window, widget.rect().topLeft())
    return QRect(0, 0, window.width(), window.height()).contains(QRect(top_left, widget.size()))


def actions(window):
    """(tab, main action, cancel, status) for the tabs that run jobs of their own."""
    return [
        (window.quantize_tab, window.quantize_tab.run_btn, window.quantize_tab.cancel_btn, window.status_label),
        (
            window.benchmark_tab,
            window.benchmark_tab.bench_btn,
            window.benchmark_tab.cancel_btn,
            window.benchmark_tab.status,
        ),
        (
            window.evaluation_tab,
            window.evaluation_tab.run_btn,
            window.evaluation_tab.cancel_btn,
            window.evaluation_tab.status,
        ),
    ]


def start(window, tab) -> None:
    if tab is window.quantize_tab:
        tab.start()
    elif tab is window.benchmark_tab:
        tab.iters.setValue(400)
        tab.start_benchmark()
    else:
        tab.start()


@pytest.mark.parametrize("size", [(1024, 640), (1280, 800)])
def test_main_actions_stay_visible(window, qtbot, size):
    window.resize(*size)
    qtbot.waitUntil(lambda: window.width() <= size[0] + 1 and window.height() <= size[1] + 1, timeout=5000)
    for tab, action, cancel, status in actions(window):
        window.tabs.setCurrentWidget(tab)
        status.setText(status.text() or "Ready")
        qtbot.waitUntil(lambda a=action: on_screen(a), timeout=5000)
        assert on_screen(cancel) and on_screen(status), f"{type(tab).__name__} before a job"
        start(window, tab)
        qtbot.waitUntil(lambda c=cancel: c.isEnabled(), timeout=5000)
        assert on_screen(action) and on_screen(cancel) and on_screen(status), f"{type(tab).__name__} during a job"
        assert on_screen(window.status_label)
        qtbot.waitUntil(lambda t=tab: not t.busy(), timeout=120000)
        assert on_screen(action) and on_screen(cancel) and on_screen(status), f"{type(tab).__name__} after a job"


@pytest.mark.parametrize("size", [(1024, 640), (1280, 800)])
def test_tabs_without_their_own_cancel(window, qtbot, size):
    from engine.core.paths import DEFAULT_MODEL_DIR, SAMPLES_DIR

    window.resize(*size)
    qtbot.waitUntil(lambda: window.width() <= size[0] + 1 and window.height() <= size[1] + 1, timeout=5000)
    runs = {
        window.models_tab: (
            window.models_tab.import_btn,
            lambda: window.models_tab.select(str(DEFAULT_MODEL_DIR.resolve())),
        ),
        window.inference_tab: (
            window.inference_tab.open_btn,
            lambda: window.inference_tab.predict_images([str(SAMPLES_DIR / "digit_4.png")]),
        ),
        window.results_tab: (window.results_tab.export_btn, None),
    }
    for tab, (action, start_job) in runs.items():
        window.tabs.setCurrentWidget(tab)
        qtbot.waitUntil(lambda a=action: on_screen(a), timeout=5000)
        assert on_screen(window.status_label), f"{type(tab).__name__} before a job"
        if start_job is None:
            continue
        window.state._cards.clear()  # the model card loads again: a job
        start_job()
        qtbot.waitUntil(lambda: window.cancel_button.isVisible() or not window.engine.busy(), timeout=5000)
        if window.engine.busy():
            assert on_screen(window.cancel_button), f"{type(tab).__name__} during a job"
        assert on_screen(action) and on_screen(window.status_label)
        qtbot.waitUntil(lambda: not window.engine.busy(), timeout=60000)
        assert on_screen(action) and on_screen(window.status_label), f"{type(tab).__name__} after a job"
