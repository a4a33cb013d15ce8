"""Pareto view of stored runs: accuracy against latency and against size, across sessions."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from engine.measure.compare import variant_points
from gui.widgets.pareto_plot import ParetoPlot, accuracy_points
from gui.widgets.plot_export import save_plots_button


def labelled(points) -> list[tuple[str, dict, tuple]]:
    """(label, metrics, run ids) of merged variants; named by recipe when that is unambiguous."""
    recipes = [p.recipe or p.label for p in points]
    short = len(set(recipes)) == len(recipes)
    return [(r if short else p.label, p.metrics, p.run_ids) for p, r in zip(points, recipes, strict=True)]


class ResultsPareto(QWidget):
    """Two Pareto plots over the runs shown in the Results table (batch-1 latencies only)."""

    runs_clicked = Signal(object)  # tuple of run ids behind the clicked bubble

    def __init__(self, parent=None):
        super().__init__(parent)
        self.latency_plot = ParetoPlot(
            "Accuracy against latency (batch 1)", "p50 latency (ms)", x_format=lambda v: f"{v:.3f} ms"
        )
        self.size_plot = ParetoPlot("Accuracy against size", "size on disk (KB)", x_format=lambda v: f"{v:.1f} KB")
        self.hover = QLabel("")
        self.hover.setStyleSheet("color: #555")
        self.note = QLabel("")
        self.note.setWordWrap(True)  # a long note must not set the window's minimum width
        for plot in (self.latency_plot, self.size_plot):
            plot.hovered.connect(self._hovered)
            plot.scatter.sigClicked.connect(self._clicked)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.latency_plot)
        split.addWidget(self.size_plot)
        bar = QHBoxLayout()
        bar.addWidget(self.note, 1)
        bar.addWidget(
            save_plots_button(
                self, [("Results accuracy vs latency", self.latency_plot), ("Results accuracy vs size", self.size_plot)]
            )
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addWidget(self.hover)

    def set_records(self, records) -> None:
        points = variant_points(records)
        items = labelled(points)
        self.latency_plot.set_points(accuracy_points(items, "latency_p50_ms"))
        self.size_plot.set_points(accuracy_points(items, "size_on_disk_bytes", 1 / 1024.0))
        n = len(self.latency_plot.points)
        self.note.setText(
            f"{len(points)} models in the shown runs, {n} with both accuracy and a batch-1 latency "
            "(evaluations and benchmarks of one model are joined by its content hash). "
            "Bubble area = peak MLX memory; red = Pareto frontier; click a bubble to select its runs."
        )

    @Slot(str)
    def _hovered(self, text: str) -> None:
        if text:
            self.hover.setText(text.replace("\n", " · "))

    def _clicked(self, item, points, _ev=None) -> None:
        if len(points):
            plot = self.latency_plot if item is self.latency_plot.scatter else self.size_plot
            self.runs_clicked.emit(plot.points[int(points[0].data())].key)
