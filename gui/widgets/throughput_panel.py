"""Throughput across batch sizes: one job, a per-batch table and plots."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QLabel,
    QLineEdit,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
)

from engine.core.errors import UserError
from engine.core.units import human_bytes
from engine.jobs.sweep import BatchPoint, ThroughputJob, ThroughputOutcome, parse_batch_sizes
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.widgets.job_panel import JobPanel
from gui.widgets.table_model import Column, fmt_float

BATCH_COLUMNS = [
    Column("batch", lambda p: p.batch_size, str, True),
    Column("mean ms", lambda p: p.values.get("latency_mean_ms"), fmt_float(3), True),
    Column("p50 ms", lambda p: p.values.get("latency_p50_ms"), fmt_float(3), True),
    Column("p99 ms", lambda p: p.values.get("latency_p99_ms"), fmt_float(3), True),
    Column("ms / image", lambda p: _per_image(p), fmt_float(3), True),
    Column("images/s", lambda p: p.values.get("throughput_ips"), fmt_float(1), True),
    Column("peak MLX mem", lambda p: p.values.get("peak_memory_bytes"), human_bytes, True),
    Column("peak RSS", lambda p: p.values.get("peak_rss_bytes"), human_bytes, True),
]


def _per_image(p: BatchPoint) -> float | None:
    mean = p.values.get("latency_mean_ms")
    return None if mean is None else mean / p.batch_size


def _xy_plot(title: str, ylabel: str) -> pg.PlotWidget:
    plot = pg.PlotWidget()
    plot.setBackground("w")
    plot.setTitle(title, color="#333")
    plot.setLabel("left", ylabel)
    plot.setLabel("bottom", "batch size")
    plot.setLogMode(x=True, y=False)
    plot.showGrid(x=True, y=True, alpha=0.3)
    return plot


class ThroughputPanel(JobPanel):
    """Batch sizes field, Run/Cancel, a row per batch size, images/s and latency against batch size."""

    def __init__(self, state: AppState, router: JobRouter, model: Callable[[], str | None], parent=None):
        super().__init__(state, router, "Run Batch Sweep", parent=parent)
        self.current_model = model
        self.points: list[BatchPoint] = []
        s = settings()
        self.batches = QLineEdit(str(s.value("throughput/batches", "1,2,4,8,16,32,64")))
        self.batches.setToolTip("Comma-separated batch sizes")
        self.iters = QSpinBox()
        self.iters.setRange(1, 100000)
        self.iters.setValue(int(s.value("throughput/iters", 20)))
        self.run_btn.setToolTip("Benchmark the selected model at every batch size after one cold load")

        self.throughput_plot = _xy_plot("Throughput against batch size", "images/s")
        self.latency_plot = _xy_plot("Latency against batch size", "ms")
        self.throughput_curve = self.throughput_plot.plot([], [], pen=pg.mkPen("#1f77b4", width=2), symbol="o")
        self.latency_plot.addLegend(offset=(10, 10))
        self.p50_curve = self.latency_plot.plot(
            [], [], pen=pg.mkPen("#ff7f0e", width=2), symbol="o", name="p50 per batch"
        )
        self.per_image_curve = self.latency_plot.plot(
            [], [], pen=pg.mkPen("#2ca02c", width=2), symbol="t", name="mean per image"
        )

        bar = self.control_bar(
            [("Batch sizes", self.batches, 2), ("Iterations each", self.iters, 0)],
            [("Throughput vs batch", self.throughput_plot), ("Latency vs batch", self.latency_plot)],
        )
        self.result_table(BATCH_COLUMNS)
        self.status = QLabel("")
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.throughput_plot)
        split.addWidget(self.latency_plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)

    @Slot()
    def start(self) -> None:
        model = self.current_model()
        if not model:
            return
        try:
            sizes = parse_batch_sizes(self.batches.text())
        except UserError as exc:
            self.status.setText(str(exc))
            return
        s = settings()
        s.setValue("throughput/batches", self.batches.text())
        s.setValue("throughput/iters", self.iters.value())
        self.points = []
        self.model.set_rows([])
        self._update_plots()
        self.status.setText(f"Benchmarking batch sizes {', '.join(map(str, sizes))} …")
        job = ThroughputJob(model, sizes, self.iters.value(), warmup=3)
        self.submit(job, on_partial=self._on_partial, on_result=self._on_result)

    def _on_partial(self, payloads: tuple) -> None:
        self.forward_samples(payloads)
        new = [p for p in payloads if isinstance(p, BatchPoint)]
        for p in new:
            self.points.append(p)
            self.model.append(p)
        if new:
            self._update_plots()
            self.table.resizeColumnsToContents()

    def _update_plots(self) -> None:
        b = np.array([p.batch_size for p in self.points], dtype=float)
        self.throughput_curve.setData(b, [p.values.get("throughput_ips") or np.nan for p in self.points])
        self.p50_curve.setData(b, [p.values.get("latency_p50_ms") or np.nan for p in self.points])
        self.per_image_curve.setData(b, [_per_image(p) or np.nan for p in self.points])

    def _on_result(self, o: ThroughputOutcome) -> None:
        best = max(o.points, key=lambda p: p.values.get("throughput_ips") or 0.0)
        self.status.setText(
            f"{o.model_name} [{o.recipe}]: best {best.values['throughput_ips']:.1f} images/s at batch {best.batch_size}; "
            f"cold load {1000 * o.load_time_s:.1f} ms"
        )
