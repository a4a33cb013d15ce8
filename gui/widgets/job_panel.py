"""Base of the Benchmark tab's sweep panels: one job at a time, Run/Cancel buttons, live samples out."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTableView, QWidget

from engine.jobs.sweep import VariantSample
from gui.router import JobRouter
from gui.state import AppState
from gui.widgets.job_owner import JobOwner
from gui.widgets.plot_export import save_plots_button
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel


class JobPanel(JobOwner, QWidget):
    """Subclasses build their widgets, then call ``submit(job, on_partial=..., ...)``."""

    started = Signal()  # a job began; the live plots should clear
    samples = Signal(object)  # tuple of VariantSample for the live plots

    def __init__(self, state: AppState, router: JobRouter, run_text: str, cancel_text: str = "Cancel", parent=None):
        super().__init__(parent)
        self.state = state
        self.run_btn = QPushButton(run_text)
        self.run_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton(cancel_text)
        self.cancel_btn.clicked.connect(self.cancel)
        self.own_jobs(router, run=(self.run_btn,), cancel=(self.cancel_btn,))

    def control_bar(self, fields, plots) -> QHBoxLayout:
        """Label/field pairs, Run, Cancel and a Save Plot… menu for ``plots`` ((name, plot) pairs)."""
        bar = QHBoxLayout()
        for label, widget, stretch in fields:
            bar.addWidget(QLabel(label))
            bar.addWidget(widget, stretch)
        bar.addWidget(self.run_btn)
        bar.addWidget(self.cancel_btn)
        bar.addWidget(save_plots_button(self, plots))
        return bar

    def result_table(self, columns: list[Column]) -> QTableView:
        """A sortable table over ``self.model`` (rows are appended as results arrive)."""
        self.model = RecordTableModel(columns, self)
        self.proxy = RawSortProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        return self.table

    @Slot()
    def start(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def submit(self, job, **handlers) -> None:
        self.started.emit()
        self.submit_job(job, **handlers)

    @Slot()
    def cancel(self) -> None:
        self.cancel_job()

    def forward_samples(self, payloads: tuple) -> None:
        live = tuple(p for p in payloads if isinstance(p, VariantSample))
        if live:
            self.samples.emit(live)
