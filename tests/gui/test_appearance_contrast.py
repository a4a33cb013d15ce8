"""Switching View ▸ Appearance at run time recolours every plot's title, axes, legend and point
labels; each reads against the plot's background with a contrast ratio of at least 4.5 (issue 15)."""

from __future__ import annotations

import re

import pyqtgraph as pg
import pytest
from PySide6.QtGui import QColor

from gui.theme import DARK, LIGHT
from gui.widgets.pareto_plot import ParetoPlot, ParetoPoint


def luminance(color: QColor) -> float:
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())


def contrast(a: QColor, b: QColor) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def html_colors(html: str) -> list[QColor]:
    return [QColor(c) for c in re.findall(r"color:\s*(#[0-9a-fA-F]{6})", html)]


def text_colors(plot: pg.PlotWidget) -> list[tuple[str, QColor]]:
    item = plot.getPlotItem()
    found = [("title", c) for c in html_colors(item.titleLabel.item.toHtml())]
    for name in ("left", "bottom"):
        found.append((f"{name} axis", item.getAxis(name).textPen().color()))
    if item.legend is not None:
        for _sample, label in item.legend.items:
            found += [(f"legend {label.text}", c) for c in html_colors(label.item.toHtml())]
    for text in item.items:
        if isinstance(text, pg.TextItem):
            found.append((f"label {text.toPlainText()}", text.color))
    return found


@pytest.mark.parametrize("first, second", [(LIGHT, DARK), (DARK, LIGHT)])
def test_plots_follow_the_appearance_switch(qtbot, window, first, second):
    window.theme.set_preference(first)
    # Data in the plots before the switch: legend entries and Pareto point labels exist already.
    bench = window.benchmark_tab
    bench.latency_plot.append("fp32", [1.0, 1.2, 1.1])
    bench.latency_plot.append("int4", [1.4, 1.5, 1.3])
    pareto = window.results_tab.findChildren(ParetoPlot)[0]
    pareto.set_points([ParetoPoint("fp32", 2.0, 97.0), ParetoPoint("int4", 1.0, 95.0), ParetoPoint("int2", 1.5, 60.0)])
    qtbot.wait(300)  # the live plot redraws on its timer
    window.theme.set_preference(second)
    plots = window.findChildren(pg.PlotWidget)
    assert len(plots) >= 6
    checked = 0
    for plot in plots:
        background = plot.backgroundBrush().color()
        for what, color in text_colors(plot):
            assert contrast(color, background) >= 4.5, f"{what} in {plot.windowTitle() or type(plot).__name__}"
            checked += 1
    assert checked > 3 * len(plots), "titles, axes, legends and labels were all checked"
    legend_labels = [w for p in (bench.latency_plot,) for w, _ in text_colors(p) if w.startswith("legend")]
    assert any("int4" in w for w in legend_labels)
