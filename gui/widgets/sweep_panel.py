"""Recipe sweep panel: one click quantizes, evaluates and benchmarks every recipe.

Rows arrive as the sweep goes (each is already committed to the results
database), fill a sortable table and two Pareto plots; a cancelled sweep
keeps the rows it finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QLabel,
    QLineEdit,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
)

from engine.core.units import human_bytes
from engine.image.benchmark import BenchmarkSettings
from engine.jobs.sweep import SweepJob, SweepOutcome, SweepRow, SweepStarted
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.widgets.job_panel import JobPanel
from gui.widgets.pareto_plot import ParetoPlot, accuracy_points
from gui.widgets.partials import dispatch
from gui.widgets.table_model import Column, fmt_float, fmt_percent

DEFAULT_RECIPES = "fp32,fp16,int8,int4"

SWEEP_TABLE_COLUMNS = [
    Column("#", lambda r: r.index + 1, str, True),
    Column("recipe", lambda r: r.recipe),
    Column("accuracy", lambda r: r.values.get("accuracy"), fmt_percent, True),
    Column("macro-F1", lambda r: r.values.get("macro_f1"), fmt_float(4), True),
    Column("p50 ms", lambda r: r.values.get("latency_p50_ms"), fmt_float(3), True),
    Column("p99 ms", lambda r: r.values.get("latency_p99_ms"), fmt_float(3), True),
    Column("images/s", lambda r: r.values.get("throughput_ips"), fmt_float(1), True),
    Column("peak MLX mem", lambda r: r.values.get("peak_memory_bytes"), human_bytes, True),
    Column("size", lambda r: r.values.get("size_on_disk_bytes"), human_bytes, True),
    Column("bits/w", lambda r: r.values.get("bits_per_weight"), fmt_float(2), True),
    Column("× smaller", lambda r: r.values.get("compression_ratio"), fmt_float(2), True),
    Column("load ms", lambda r: _ms(r.values.get("load_time_s")), fmt_float(1), True),
    Column("variant", lambda r: r.values.get("variant")),
]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000.0 * seconds


@dataclass(frozen=True)
class SweepInputs:
    """What the Benchmark tab's form says: the model, the evaluation data, benchmark settings."""

    model: str
    data: str
    bench: BenchmarkSettings


class SweepPanel(JobPanel):
    """Recipes field, Run/Cancel, comparison table and Pareto plots."""

    def __init__(self, state: AppState, router: JobRouter, inputs: Callable[[], SweepInputs | None], parent=None):
        super().__init__(state, router, "Run Sweep", "Cancel Sweep", parent)
        self.inputs = inputs
        self.rows: list[SweepRow] = []
        self.out_dir = ""
        self.sweep_id = ""
        s = settings()

        self.recipes = QLineEdit(str(s.value("sweep/recipes", DEFAULT_RECIPES)))
        self.recipes.setToolTip("Comma-separated recipes; fp32 is the float model itself, e.g. fp32,fp16,int8,int4")
        self.limit = QSpinBox()
        self.limit.setRange(0, 10_000_000)
        self.limit.setSpecialValueText("all")
        self.limit.setValue(int(s.value("sweep/limit", 0)))
        self.limit.setToolTip("Evaluate each variant on the first N images (all: the whole dataset)")
        self.run_btn.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.run_btn.setToolTip("Quantize with every recipe, evaluate and benchmark each variant (Ctrl+Shift+S)")

        self.latency_plot = ParetoPlot("Accuracy against latency", "p50 latency (ms)", x_format=lambda v: f"{v:.3f} ms")
        self.size_plot = ParetoPlot("Accuracy against size", "size on disk (KB)", x_format=lambda v: f"{v:.1f} KB")
        self.hover = QLabel("Hover a bubble to name the variant; bubble area = peak MLX memory; red = Pareto frontier")
        self.hover.setStyleSheet("color: #555")
        for plot in (self.latency_plot, self.size_plot):
            plot.hovered.connect(self._hovered)

        bar = self.control_bar(
            [("Recipes", self.recipes, 3), ("Evaluate on", self.limit, 0)],
            [("Sweep accuracy vs latency", self.latency_plot), ("Sweep accuracy vs size", self.size_plot)],
        )
        self.result_table(SWEEP_TABLE_COLUMNS)
        self.status = QLabel("")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.latency_plot)
        plots.addWidget(self.size_plot)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(plots)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([560, 840])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addWidget(self.hover)
        layout.addWidget(self.status)
        router.job_cancelled.connect(self._job_cancelled)

    # -- running -------------------------------------------------------------------------
    def job(self) -> SweepJob | None:
        inputs = self.inputs()
        if inputs is None:
            return None
        return SweepJob(
            model=inputs.model,
            recipes=tuple(self.recipes.text().split(",")),
            data=inputs.data,
            bench=inputs.bench,
            eval_limit=self.limit.value() or None,
        )

    @Slot()
    def start(self) -> None:
        job = self.job()
        if job is None:
            return
        s = settings()
        s.setValue("sweep/recipes", self.recipes.text())
        s.setValue("sweep/limit", self.limit.value())
        self.rows = []
        self.model.set_rows([])
        self._update_plots()
        self.status.setText(f"Sweep: {', '.join(r.strip() for r in job.recipes if r.strip())} …")
        self.submit(job, on_partial=self._on_partial, on_result=self._on_result, on_failed=self._on_failed)

    def _show_running(self, running: bool) -> None:
        super()._show_running(running)
        self.recipes.setEnabled(not running)

    # -- results -------------------------------------------------------------------------
    def _on_partial(self, payloads: tuple) -> None:
        self.forward_samples(payloads)
        before = len(self.rows)
        dispatch(payloads, {SweepRow: self._on_row, SweepStarted: self._on_started})
        if len(self.rows) > before:
            self._update_plots()
            self.table.resizeColumnsToContents()

    def _on_started(self, p: SweepStarted) -> None:
        self.sweep_id, self.out_dir = p.sweep_id, p.out_dir

    def _on_row(self, p: SweepRow) -> None:
        self.rows.append(p)
        self.model.append(p)
        self.state.add(p.values["model_path"])
        self.status.setText(f"Sweep {p.sweep_id}: {len(self.rows)} variants done · {self.out_dir}")

    def _update_plots(self) -> None:
        items = [(r.recipe, r.values, r.run_id) for r in self.rows]
        self.latency_plot.set_points(accuracy_points(items, "latency_p50_ms"))
        self.size_plot.set_points(accuracy_points(items, "size_on_disk_bytes", 1 / 1024.0))

    def _on_result(self, o: SweepOutcome) -> None:
        front = ", ".join(self.latency_plot.front_labels()) or "-"
        self.status.setText(
            f"Sweep {o.sweep_id} finished: {len(o.rows)} variants; frontier (accuracy vs latency): {front} · "
            f"summary.csv and plots in {o.out_dir}"
        )

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"Sweep failed: {message} ({len(self.rows)} finished rows kept)")

    @Slot(object)
    def _job_cancelled(self, jid) -> None:
        if jid == self._job:
            self.status.setText(
                f"Sweep cancelled: {len(self.rows)} finished rows kept (in Results and in {self.out_dir or 'its folder'})"
            )

    @Slot(str)
    def _hovered(self, text: str) -> None:
        if text:
            self.hover.setText(text.replace("\n", " · "))
