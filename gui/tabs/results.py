"""Results tab: every stored run, filterable and sortable, exported as raw-value CSV."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.model_card import human_bytes
from engine.results import (
    ResultsStore,
    RunRecord,
    export_long_csv,
    export_samples_csv,
    export_summary_csv,
)
from gui.state import AppState, settings
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel, fmt_float, fmt_percent

RUN_COLUMNS = [
    Column("id", lambda r: r.id, str, True),
    Column("when", lambda r: r.created),
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
        self.kind.addItems(["all", "evaluate", "benchmark", "quantize"])
        self.kind.currentTextChanged.connect(self._filter)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        export = QPushButton("Export Summary CSV…")
        export.clicked.connect(self.export_summary)
        export_long = QPushButton("Export Per-class CSV…")
        export_long.clicked.connect(self.export_long)
        export_samples = QPushButton("Export Iterations CSV…")
        export_samples.clicked.connect(self.export_samples)
        show_eval = QPushButton("Open in Evaluation")
        show_eval.setToolTip("Show the selected evaluate runs (first = reference) in the Evaluation tab")
        show_eval.clicked.connect(self._open_evaluation)
        delete = QPushButton("Delete Selected")
        delete.clicked.connect(self.delete_selected)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show"))
        bar.addWidget(self.kind)
        bar.addStretch(1)
        for b in (refresh, export, export_long, export_samples, show_eval, delete):
            bar.addWidget(b)
        self.count = QLabel("")
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.count)
        state.results_changed.connect(self.refresh)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        self.model.set_rows(list(reversed(self.store.list())))
        self.count.setText(f"{self.model.rowCount()} stored runs · {self.store.path}")
        self.table.resizeColumnsToContents()

    @Slot(str)
    def _filter(self, kind: str) -> None:
        self.proxy.setFilterFixedString("" if kind == "all" else kind)

    def selected_records(self) -> list[RunRecord]:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return [self.model.row_at(r) for r in sorted(rows)]

    def visible_records(self) -> list[RunRecord]:
        return [
            self.model.row_at(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
            for r in range(self.proxy.rowCount())
        ]

    def _export_target(self, default_name: str) -> Path | None:
        s = settings()
        start = Path(str(s.value("folders/exports", str(Path.home())))) / default_name
        path, _ = QFileDialog.getSaveFileName(self, "Export CSV", str(start), "CSV (*.csv)")
        if not path:
            return None
        s.setValue("folders/exports", str(Path(path).parent))
        return Path(path)

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
