"""Results tab: every stored run, filterable and sortable, exported as raw-value CSV."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine import kinds
from engine.core.units import human_bytes
from engine.jobs.sweep import sweep_groups
from engine.measure.results import ResultsStore, RunRecord, export_long_csv, export_samples_csv, export_summary_csv
from gui.state import AppState
from gui.widgets.compare_view import CompareDialog
from gui.widgets.export import ask_save_path
from gui.widgets.results_pareto import ResultsPareto
from gui.widgets.run_details import RunDetailsDialog
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel, fmt_float, fmt_percent


def fmt_local_time(stamp) -> str:
    """An ISO-8601 UTC stamp as local 'YYYY-MM-DD HH:MM:SS' (sorting still uses the stamp)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(stamp)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "" if stamp is None else str(stamp)


RUN_COLUMNS = [
    Column("id", lambda r: r.id, str, True),
    Column("when", lambda r: r.created, fmt_local_time),
    Column("kind", lambda r: r.kind),
    Column("model", lambda r: r.model_name),
    Column("recipe", lambda r: r.recipe),
    Column("dataset", lambda r: r.dataset),
    Column("accuracy", lambda r: r.metrics.get("accuracy"), fmt_percent, True),
    Column("macro-F1", lambda r: r.metrics.get("macro_f1"), fmt_float(4), True),
    Column("p50 ms", lambda r: r.metrics.get("latency_p50_ms"), fmt_float(3), True),
    Column("p99 ms", lambda r: r.metrics.get("latency_p99_ms"), fmt_float(3), True),
    Column("images/s", lambda r: r.metrics.get("throughput_ips"), fmt_float(1), True),
    Column("perplexity", lambda r: r.metrics.get("perplexity"), fmt_float(3), True),
    Column("gen tok/s", lambda r: r.metrics.get("generation_tps"), fmt_float(1), True),
    Column("size", lambda r: r.metrics.get("size_on_disk_bytes"), human_bytes, True),
    Column("bits/w", lambda r: r.metrics.get("bits_per_weight"), fmt_float(2), True),
    Column("device", lambda r: r.environment.get("device")),
    Column("status", lambda r: r.status),
]


class ResultsTab(QWidget):
    open_evaluation = Signal(object)  # list[RunRecord] of evaluate runs, for the Evaluation tab

    def __init__(self, state: AppState, store: ResultsStore, parent=None):
        super().__init__(parent)
        self.state = state
        self.store = store
        self.model = RecordTableModel(RUN_COLUMNS, self)
        self.proxy = RawSortProxy(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(2)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)

        self.kind = QComboBox()
        self.kind.addItems(["all", "evaluate", "benchmark", "quantize", "sweep"])
        self.kind.currentTextChanged.connect(self._filter)
        # Sweeps: runs sharing settings["sweep_id"], shown together.
        self.sweep = QComboBox()
        self.sweep.setMinimumContentsLength(16)  # the bar fits a 1024 px window
        self.sweep.setToolTip("Show only the runs of one sweep")
        self.sweep.currentIndexChanged.connect(self.refresh)
        self._dialogs: list = []
        open_btn = QPushButton("Open…")
        open_btn.setToolTip("Details, per-class metrics and iteration plots of the selected run (double-click, Return)")
        open_btn.clicked.connect(self.open_selected)
        self.compare_btn = QPushButton("Compare…")
        self.compare_btn.setToolTip("Select two runs (Ctrl+click) to see them side by side with deltas")
        self.compare_btn.setShortcut(QKeySequence("Ctrl+K"))
        self.compare_btn.clicked.connect(self.compare_selected)
        self.table.activated.connect(self.open_selected)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        # One menu for the three CSVs keeps the bar narrow enough for a 1024 px window.
        self.export_btn = export = QPushButton("Export CSV")
        export.setToolTip("Export the shown (or selected) runs as CSV")
        export_menu = QMenu(export)
        export_menu.addAction("Summaries…", lambda: self.export_summary())
        export_menu.addAction("Per-class metrics…", lambda: self.export_long())
        export_menu.addAction("Per-iteration samples…", lambda: self.export_samples())
        export.setMenu(export_menu)
        show_eval = QPushButton("Open in Evaluation")
        show_eval.setToolTip("Show the selected evaluate runs (first = reference) in the Evaluation tab")
        show_eval.clicked.connect(self._open_evaluation)
        delete = QPushButton("Delete Selected")
        delete.clicked.connect(self.delete_selected)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show"))
        bar.addWidget(self.kind)
        bar.addWidget(self.sweep)
        bar.addStretch(1)
        for b in (open_btn, self.compare_btn, refresh, export, show_eval, delete):
            bar.addWidget(b)
        self.count = QLabel("")
        self.pareto = ResultsPareto()
        self.pareto.runs_clicked.connect(self.select_runs)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.pareto)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addWidget(self.count)
        state.results_changed.connect(self.refresh)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        records = self.store.list()
        chosen = self._update_sweeps(records)
        if chosen:
            records = [r for r in records if (r.settings or {}).get("sweep_id") == chosen]
        self.model.set_rows(list(reversed(records)))
        self.count.setText(f"{self.model.rowCount()} stored runs · {self.store.path}")
        self.table.resizeColumnsToContents()
        self.pareto.set_records(self.visible_records())

    def _update_sweeps(self, records) -> str | None:
        """Refill the sweep chooser, keeping the current choice; returns the chosen sweep id."""
        current = self.sweep.currentData()
        self.sweep.blockSignals(True)
        self.sweep.clear()
        self.sweep.addItem("all runs", None)
        for g in sweep_groups(records):
            self.sweep.addItem(g.label, g.sweep_id)
        i = self.sweep.findData(current) if current else 0
        self.sweep.setCurrentIndex(max(i, 0))
        self.sweep.blockSignals(False)
        return self.sweep.currentData()

    def show_sweep(self, sweep_id: str) -> None:
        self._update_sweeps(self.store.list())
        i = self.sweep.findData(sweep_id)
        if i >= 0:
            self.sweep.setCurrentIndex(i)
        self.refresh()

    @Slot(str)
    def _filter(self, kind: str) -> None:
        self.proxy.setFilterFixedString("" if kind == "all" else kind)
        self.pareto.set_records(self.visible_records())

    @Slot()
    def open_selected(self) -> RunDetailsDialog | None:
        records = self.selected_records()
        if not records:
            return None
        full = self.store.get(records[0].id)
        if full is None:
            self.refresh()
            return None
        return self._show(RunDetailsDialog(full, self))

    @Slot()
    def compare_selected(self) -> CompareDialog | None:
        records = self.selected_records()
        if len(records) != 2:
            self.window().statusBar().showMessage("Select exactly two runs to compare (Ctrl+click)", 6000)
            return None
        a, b = sorted(records, key=lambda r: r.id)
        full_a, full_b = self.store.get(a.id), self.store.get(b.id)
        if full_a is None or full_b is None:
            self.refresh()
            return None
        kind_a, kind_b = kinds.run_kind(full_a), kinds.run_kind(full_b)
        if kind_a and kind_b and kind_a != kind_b:
            message = f"Run #{a.id} measured a {kinds.get(kind_a).label}, run #{b.id} a {kinds.get(kind_b).label}: nothing to compare"
            self.window().statusBar().showMessage(message, 8000)
            return None
        return self._show(CompareDialog(full_a, full_b, self))

    def _show(self, dialog):
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._dialogs = [d for d in self._dialogs if d.isVisible()] + [dialog]
        dialog.show()
        return dialog

    @Slot(object)
    def select_runs(self, run_ids) -> None:
        """Select the table rows of these runs (a clicked Pareto bubble)."""
        wanted = set(run_ids or ())
        sel = self.table.selectionModel()
        sel.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if self.model.row_at(self.proxy.mapToSource(index).row()).id in wanted:
                sel.select(index, flags)
                self.table.scrollTo(index)

    def selected_records(self) -> list[RunRecord]:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return [self.model.row_at(r) for r in sorted(rows)]

    def visible_records(self) -> list[RunRecord]:
        return [
            self.model.row_at(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
            for r in range(self.proxy.rowCount())
        ]

    def _export_target(self, default_name: str) -> Path | None:
        return ask_save_path(self, "Export CSV", default_name, "CSV (*.csv)")

    def _records_for_export(self, full: bool) -> list[RunRecord]:
        chosen = self.selected_records() or self.visible_records()
        if full:
            chosen = [self.store.get(r.id) or r for r in chosen]
        return chosen

    @Slot()
    def export_summary(self, path: str | Path | None = None) -> Path | None:
        """Selected runs (or all shown) as one row each; raw values under a header."""
        target = Path(path) if path else self._export_target("results_summary.csv")
        if target is None:
            return None
        return self._write(export_summary_csv, self._records_for_export(False), target)

    @Slot()
    def export_long(self, path: str | Path | None = None) -> Path | None:
        target = Path(path) if path else self._export_target("results_metrics.csv")
        if target is None:
            return None
        return self._write(export_long_csv, self._records_for_export(True), target)

    @Slot()
    def export_samples(self, path: str | Path | None = None) -> Path | None:
        target = Path(path) if path else self._export_target("results_iterations.csv")
        if target is None:
            return None
        return self._write(export_samples_csv, self._records_for_export(True), target)

    def _write(self, writer, records, target: Path) -> Path | None:
        try:
            out = writer(records, target)
        except OSError as exc:
            self.window().show_error("Export failed", f"{target}: {exc.strerror or exc}")
            return None
        self.window().statusBar().showMessage(f"Exported {len(records)} run(s) to {out}", 8000)
        return out

    @Slot()
    def _open_evaluation(self) -> None:
        chosen = sorted((r for r in self.selected_records() if r.kind == "evaluate"), key=lambda r: r.id)
        if chosen:
            self.open_evaluation.emit([self.store.get(r.id) or r for r in chosen])

    @Slot()
    def delete_selected(self) -> None:
        records = self.selected_records()
        if not records:
            return
        answer = QMessageBox.question(self, "Delete runs", f"Delete {len(records)} stored run(s)?")
        if answer == QMessageBox.StandardButton.Yes:
            self.store.delete(r.id for r in records)
            self.refresh()
