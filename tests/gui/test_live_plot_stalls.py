"""Live plots never stall the GUI: a 2,000-iteration benchmark with plots, probed by a precise timer.

A PreciseTimer firing every 2 ms on the GUI thread records the longest gap between its
timeouts while the benchmark runs (the event loop's longest stall); the plots' viewports
count their paint events. The same job is run with the plots hidden, alternating, and its
mean latency compared: painting must not slow what the benchmark measures.
"""

from __future__ import annotations

import statistics
import time

import pytest
from PySide6.QtCore import QEvent, QObject, Qt, QTimer

from engine.measure.results import ResultsStore
from gui.engine_thread import Engine
from gui.router import JobRouter
from gui.state import AppState
from gui.tabs.benchmark import BenchmarkTab
from gui.widgets.live_plot import grown_range, nice_ceiling

ITERS = 2000


class GapProbe(QObject):
    """The longest gap between consecutive timeouts of a 2 ms precise timer."""

    def __init__(self):
        super().__init__()
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(2)
        self.timer.timeout.connect(self._tick)
        self.last = None
        self.longest = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.longest = max(self.longest, now - self.last)
        self.last = now

    def start(self) -> None:
        self.last, self.longest = None, 0.0
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


class PaintCounter(QObject):
    def __init__(self):
        super().__init__()
        self.count = 0

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


@pytest.fixture
def tab(qtbot):
    store = ResultsStore()
    engine = Engine(store)
    router = JobRouter(engine)
    state = AppState()
    tab = BenchmarkTab(state, router)
    qtbot.addWidget(tab)
    state.scan()
    tab.resize(1300, 900)
    tab.show()
    tab.iters.setValue(ITERS)
    tab.warmup.setValue(20)
    yield tab
    assert engine.shutdown(), "the engine thread did not stop"
    for _, plot in tab.live_plots():
        plot.stop()


def run_once(tab, qtbot, monkeypatch, probe: GapProbe) -> tuple[float, float, float]:
    """(mean latency ms, longest event-loop gap s, wall s) of one benchmark through the button."""
    got = {}
    real = tab._on_benchmark

    def capture(o):
        got["mean"] = o.result.summary()["latency_mean_ms"]
        real(o)

    monkeypatch.setattr(tab, "_on_benchmark", capture)
    probe.start()
    t0 = time.perf_counter()
    tab.bench_btn.click()
    qtbot.waitUntil(lambda: not tab.busy(), timeout=120_000)
    wall = time.perf_counter() - t0
    probe.stop()
    assert "mean" in got
    return got["mean"], probe.longest, wall


def test_live_plots_never_stall_and_do_not_slow_the_benchmark(tab, qtbot, monkeypatch):
    probe = GapProbe()
    plots = [p for _, p in tab.live_plots()]
    counters = []
    for p in plots:
        c = PaintCounter()
        p.viewport().installEventFilter(c)
        counters.append(c)
    shown, hidden, gaps, quiet_gaps, rates = [], [], [], [], []
    for visible in (False, True, False, True):
        for p in plots:
            p.setVisible(visible)
        before = [c.count for c in counters]
        mean, gap, wall = run_once(tab, qtbot, monkeypatch, probe)
        (shown if visible else hidden).append(mean)
        (gaps if visible else quiet_gaps).append(gap)
        if visible:
            rates += [(c.count - b) / wall for c, b in zip(counters, before, strict=True)]
            assert all(len(p.values(p.names()[0])) == ITERS for p in plots)  # every sample plotted
    assert max(rates) <= 10.5, f"a plot repainted {max(rates):.1f} times a second"
    runs = f"plots shown: means {shown} ms, gaps {gaps} s; hidden: means {hidden} ms, gaps {quiet_gaps} s"
    # Two cores shared by several users stall any event loop: with the plots hidden the same job then
    # already shows gaps over 50 ms or means as far apart as the 5 % judged, and nothing can be said.
    if max(quiet_gaps) >= 0.050 or abs(hidden[0] - hidden[1]) / min(hidden) > 0.05:
        pytest.skip(f"the machine itself is too loaded to judge ({runs})")
    assert max(gaps) < 0.050, f"the event loop stalled {1000 * max(gaps):.0f} ms ({runs})"
    mean_shown, mean_hidden = statistics.mean(shown), statistics.mean(hidden)
    assert abs(mean_shown - mean_hidden) / mean_hidden < 0.05, runs


def test_axis_ranges_grow_in_steps():
    assert [nice_ceiling(v) for v in (0.7, 1, 3, 7, 12, 2000)] == [1, 1, 5, 10, 20, 2000]
    lo, hi = grown_range(2.13, 2.71)
    assert lo <= 2.13 and hi >= 2.71
    assert grown_range(2.2, 2.6) == (lo, hi) or grown_range(2.2, 2.6)[0] >= lo


def test_benchmark_tab_says_quantized_variants_trade_speed_for_size_on_linux(tab):
    from gui.widgets.backend_note import backend_note_text

    assert backend_note_text("darwin") is None
    if backend_note_text() is not None:
        assert tab.backend_note.isVisible()
        assert "trade speed for size" in tab.backend_note.text()
