"""Paint time of the Benchmark tab's three live plots, as shipped and with the old styling, side by side.

    QT_QPA_PLATFORM=offscreen python bench/live_plot_paint.py

Three LivePlots (450x300) receive 20 samples per round for 100 rounds (2,000 points), each
round redrawn and repainted synchronously; alternating rounds restyle them as before
(translucent grid, 1.5-px pen) so neighbours' load hits both alike. Printed: the median
and worst milliseconds of one repaint of all three, per styling.
"""

from __future__ import annotations

import statistics
import time

from common import ROOT  # noqa: F401  (puts the repository on sys.path)


def main() -> int:
    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from gui.widgets.live_plot import LivePlot

    def build(old: bool) -> list[LivePlot]:
        plots = [LivePlot(t, "ms") for t in ("latency", "memory", "rss")]
        for p in plots:
            p.resize(450, 300)
            p.show()
            if old:
                p.showGrid(x=True, y=True, alpha=0.3)
        return plots

    styles = {"shipped": build(False), "old styling": build(True)}
    app.processEvents()
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in styles}
    for i in range(100):
        for name in list(styles) if i % 2 == 0 else reversed(list(styles)):
            plots = styles[name]
            for p in plots:
                p.append("model", 3 + rng.random(20))
                p._redraw()
                if name == "old styling":
                    for c in p._curves.values():
                        c.setPen(pg.mkPen(c.opts["pen"].color(), width=1.5))
            t0 = time.perf_counter()
            for p in plots:
                p.viewport().repaint()
            times[name].append(1000 * (time.perf_counter() - t0))
    print("one repaint of three live plots, 2,000 points each (ms)")
    for name, t in times.items():
        print(f"  {name:<12} median {statistics.median(t):6.1f}   worst {max(t):6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
