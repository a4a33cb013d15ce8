"""Evaluation tab: a float model against its variants, per class, calibrated, corrupted, thresholded.

Runs ``EvaluationSuiteJob`` on the engine thread (progress and cancel in the status bar
and here) and shows its long rows in five views; stored runs from the Results tab open
here too, since every view reads the same rows.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.core.errors import UserError
from engine.image.data.corruptions import CORRUPTION_NAMES, parse_severities
from engine.jobs.evaluation_suite import EvaluationSettings, EvaluationSuiteJob, SuiteOutcome, VariantRows
from engine.measure.evaluate.operating_point import OperatingPointSpec
from engine.measure.evaluate.rows import Row, RowTable, variants_in
from engine.measure.results import RunRecord
from gui.dialogs import open_file, open_folder
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.widgets.confusion_view import ConfusionView
from gui.widgets.export import ExportBar
from gui.widgets.job_owner import JobOwner
from gui.widgets.partials import dispatch
from gui.widgets.per_class_view import PerClassView, _delta, _fmt
from gui.widgets.reliability_view import ReliabilityView
from gui.widgets.robustness_view import RobustnessView
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel, fmt_percent

SPLITS = ("auto", "all", "train", "val", "test")


def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt_percent(v)


class _WithInterval(float):
    """A metric value that sorts as a float and carries its bootstrap interval."""

    low: float | None = None
    high: float | None = None


def _ci_column(header: str, key: str, percent: bool = False) -> Column:
    def value(r: dict):
        v = r.get(key)
        if v is None:
            return None
        out = _WithInterval(v)
        out.low, out.high = r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
        return out

    def show(v) -> str:
        if v is None or math.isnan(v):
            return ""
        text = f"{100 * v:.2f}%" if percent else f"{v:.4f}"
        lo, hi = getattr(v, "low", None), getattr(v, "high", None)
        if lo is not None and hi is not None and not math.isnan(lo):
            text += f" [{100 * lo:.1f}, {100 * hi:.1f}]" if percent else f" [{lo:.4f}, {hi:.4f}]"
        return text

    return Column(header, value, show, True)


def _points(v) -> str:
    return "" if v is None or math.isnan(v) else f"{100 * v:+.2f} pt"


SUMMARY_COLUMNS = [
    Column("variant", lambda r: r.get("variant")),
    Column("bits/w", lambda r: r.get("bits_per_weight"), _fmt(2), True),
    Column("images", lambda r: r.get("n"), _fmt(0), True),
    _ci_column("accuracy", "accuracy", percent=True),
    # What quantization costs, beside what it is measured against: points of accuracy, coloured.
    Column("Δ accuracy", lambda r: r.get("delta_accuracy"), _points, True, better=1),
    _ci_column("macro-F1", "macro_f1"),
    Column("Δ macro-F1", lambda r: r.get("delta_macro_f1"), _delta, True, better=1),
    Column("flip rate", lambda r: r.get("flip_rate"), _pct, True, better=-1),
    _ci_column("balanced acc.", "balanced_accuracy", percent=True),
    Column("weighted-F1", lambda r: r.get("weighted_f1"), _fmt(4), True),
    _ci_column("ROC-AUC", "roc_auc_macro"),
    Column("top-3", lambda r: r.get("top_3_accuracy"), _pct, True),
    _ci_column("ECE", "ece_uniform"),
    Column("Δ ECE", lambda r: r.get("delta_ece_uniform"), _delta, True, better=-1),
    Column("ECE adaptive", lambda r: r.get("ece_adaptive"), _fmt(4), True),
    Column("NLL", lambda r: r.get("nll"), _fmt(4), True),
    Column("Brier", lambda r: r.get("brier"), _fmt(4), True),
    Column("mean KL", lambda r: r.get("mean_kl"), _fmt(5), True),
    Column("macro-F1 @ op. point", lambda r: r.get("macro_f1@operating_point"), _fmt(4), True),
    Column("skipped", lambda r: r.get("skipped"), _fmt(0), True),
]


class SummaryView(QWidget):
    """One row per variant: the headline metrics with intervals, agreement and deltas."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[Row] = []
        self.model = RecordTableModel(SUMMARY_COLUMNS, self)
        proxy = RawSortProxy(self)
        proxy.setSourceModel(self.model)
        self.view = QTableView()
        self.view.setModel(proxy)
        self.view.verticalHeader().setVisible(False)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.export = ExportBar("evaluation_metrics", self.table, self.view)
        self.export.csv_button.setText("Export All Metrics CSV…")
        lay = QVBoxLayout(self)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.note)
        lay.addWidget(self.export)

    def set_tables(self, tables: list[RowTable], rows: list[Row]) -> None:
        self.rows = list(rows)
        records = [{"variant": t.variant, **t.overall()} for t in tables]
        self.model.set_rows(records)
        self.view.resizeColumnsToContents()
        notes = []
        for t in tables:
            thresholds = t.per_class("threshold")
            if thresholds:
                target = t.per_class("target_sensitivity")
                if target:
                    ((cls, goal),) = target.items()
                    notes.append(
                        f"{t.variant}: threshold {thresholds[cls]:.4f} on p({cls}) for sensitivity ≥ {goal:.2f} "
                        f"→ test recall {t.get('recall@operating_point', cls):.4f} (argmax {t.get('recall', cls):.4f})"
                    )
                elif t.get("operating_point_adopted") == 1.0:
                    notes.append(
                        f"{t.variant}: per-class thresholds (cross-validated macro-F1 "
                        f"{t.get('operating_point_cv_value'):.4f} > argmax {t.get('operating_point_val_baseline'):.4f}) "
                        f"→ test macro-F1 {t.get('macro_f1@operating_point'):.4f} (argmax {t.get('macro_f1'):.4f})"
                    )
                else:
                    notes.append(
                        f"{t.variant}: per-class thresholds did not beat the argmax in cross-validation on the "
                        f"validation data ({t.get('operating_point_cv_value'):.4f} vs "
                        f"{t.get('operating_point_val_baseline'):.4f}); the argmax is kept"
                    )
        self.note.setText("\n".join(notes))

    def table(self):
        return ["variant", "metric", "class", "value"], [list(r) for r in self.rows]


class EvaluationTab(JobOwner, QWidget):
    def __init__(self, state: AppState, router: JobRouter, parent=None):
        super().__init__(parent)
        self.state = state
        self.router = router
        self.outcome: SuiteOutcome | None = None
        self.rows: list[Row] = []
        s = settings()

        # -- models
        self.reference = QComboBox()
        self.reference.currentIndexChanged.connect(self._reference_changed)
        self.variants = QListWidget()
        self.variants.setMaximumHeight(110)
        models = QFormLayout()
        models.addRow("Reference", self.reference)
        models.addRow("Variants", self.variants)
        models_box = QGroupBox("Models")
        models_box.setLayout(models)

        # -- data
        self.data = QLineEdit(str(s.value("evaluation/data", "default")))
        self.data.setToolTip(
            "'default' (shipped MNIST held-out split), a folder of class subfolders, a HAM10000 folder or "
            "metadata CSV, a MedMNIST .npz, a CIFAR batch folder or .tar.gz, or a flat folder with a label pattern"
        )
        folder_btn = QPushButton("Folder…")
        folder_btn.setToolTip("a folder dataset")
        folder_btn.clicked.connect(self._browse_folder)
        file_btn = QPushButton("File…")
        file_btn.clicked.connect(self._browse_file)
        browse_row = QHBoxLayout()
        browse_row.addWidget(folder_btn)
        browse_row.addWidget(file_btn)
        browse_row.addStretch(1)
        self.split = QComboBox()
        self.split.addItems(SPLITS)
        self.split.setCurrentText(str(s.value("evaluation/split", "auto")))
        self.split.setToolTip("auto: the file's own test split (MedMNIST, CIFAR), else everything")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(int(s.value("evaluation/seed", 0)))
        self.pattern = QLineEdit(str(s.value("evaluation/pattern", "")))
        self.pattern.setPlaceholderText("flat folders: e.g. _(?P<label>[a-z]+)\\.png$")
        self.limit = QSpinBox()
        self.limit.setRange(0, 10_000_000)
        self.limit.setSpecialValueText("all")
        self.limit.setValue(int(s.value("evaluation/limit", 0)))
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(int(s.value("evaluation/batch", 64)))
        data_form = QFormLayout()
        data_form.addRow("Data", self.data)
        data_form.addRow("", browse_row)
        data_form.addRow("Split", self.split)
        data_form.addRow("Seed", self.seed)
        data_form.addRow("Label pattern", self.pattern)
        data_form.addRow("Images", self.limit)
        data_form.addRow("Batch size", self.batch)
        data_box = QGroupBox("Data")
        data_box.setLayout(data_form)

        # -- analyses
        self.bootstrap = QSpinBox()
        self.bootstrap.setRange(0, 10000)
        self.bootstrap.setSingleStep(100)
        self.bootstrap.setSpecialValueText("off")
        self.bootstrap.setValue(int(s.value("evaluation/bootstrap", 0)))
        self.corruptions: dict[str, QCheckBox] = {}
        chosen = str(s.value("evaluation/corruptions", "")).split(",")
        corr_box = QGridLayout()
        for i, name in enumerate(CORRUPTION_NAMES):
            cb = QCheckBox(name.replace("_", " ").replace(" compression", ""))
            cb.setChecked(name in chosen)
            self.corruptions[name] = cb
            corr_box.addWidget(cb, i // 2, i % 2)
        self.severities = QLineEdit(str(s.value("evaluation/severities", "1,2,3,4,5")))
        self.use_op = QCheckBox("Choose an operating point on")
        self.use_op.setChecked(str(s.value("evaluation/use_op", "false")) == "true")
        self.val_data = QLineEdit(str(s.value("evaluation/val", "default-val")))
        self.val_data.setToolTip("validation data; 'val' is the val split of the evaluation data")
        self.objective = QComboBox()
        self.objective.addItems(["macro_f1", "sensitivity"])
        self.objective.setCurrentText(str(s.value("evaluation/objective", "macro_f1")))
        self.target_class = QComboBox()
        self.target_class.setEditable(True)
        self.target = QDoubleSpinBox()
        self.target.setRange(0.01, 1.0)
        self.target.setSingleStep(0.01)
        self.target.setValue(float(s.value("evaluation/target", 0.95)))
        target_row = QHBoxLayout()
        target_row.addWidget(self.target_class, 1)
        target_row.addWidget(QLabel("≥"))
        target_row.addWidget(self.target)
        self.objective.currentTextChanged.connect(self._objective_changed)
        an_form = QFormLayout()
        an_form.addRow("Bootstrap", self.bootstrap)
        an_form.addRow("Corruptions", corr_box)
        an_form.addRow("Severities", self.severities)
        an_form.addRow(self.use_op)
        an_form.addRow("Validation data", self.val_data)
        an_form.addRow("Objective", self.objective)
        an_form.addRow("Sensitivity of", target_row)
        an_box = QGroupBox("Analyses")
        an_box.setLayout(an_form)

        self.run_btn = QPushButton("Evaluate")
        self.run_btn.setToolTip("Evaluate the reference and the checked variants (Ctrl+Alt+E)")
        self.run_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        controls = QWidget()
        cl = QVBoxLayout(controls)
        for box in (models_box, data_box, an_box):
            cl.addWidget(box)
        cl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(controls.sizeHint().width() + 24)
        # Settings scroll; Evaluate, Cancel and the status line stay in view at any window height.
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(scroll, 1)
        ll.addLayout(buttons)
        ll.addWidget(self.status)

        self.summary = SummaryView()
        self.per_class = PerClassView()
        self.confusion = ConfusionView()
        self.reliability = ReliabilityView()
        self.robustness = RobustnessView()
        self.views = QTabWidget()
        for w, name in (
            (self.summary, "Summary"),
            (self.per_class, "Per class"),
            (self.confusion, "Confusion"),
            (self.reliability, "Reliability"),
            (self.robustness, "Robustness"),
        ):
            self.views.addTab(w, name)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.views)
        split.setStretchFactor(1, 1)
        split.setSizes([controls.sizeHint().width() + 24, 1000])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        self._objective_changed(self.objective.currentText())
        state.models_changed.connect(self._refresh_models)

    # -- models ----------------------------------------------------------------------
    @Slot()
    def _refresh_models(self) -> None:
        current = self.reference.currentData()
        self.reference.blockSignals(True)
        self.reference.clear()
        entries = self.state.entries("image")
        for e in sorted(entries, key=lambda e: e.quantized):
            self.reference.addItem(e.display, e.path)
        i = self.reference.findData(current) if current else -1
        self.reference.setCurrentIndex(max(0, i))
        self.reference.blockSignals(False)
        self._reference_changed()

    @Slot()
    def _reference_changed(self) -> None:
        ref = self.reference.currentData()
        checked = {
            self.variants.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.variants.count())
            if self.variants.item(i).checkState() == Qt.CheckState.Checked
        }
        fresh = self.variants.count() == 0
        self.variants.clear()
        for e in self.state.entries("image"):
            if e.path == ref:
                continue
            item = QListWidgetItem(e.display)
            item.setData(Qt.ItemDataRole.UserRole, e.path)
            on = e.path in checked or (fresh and e.quantized)
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.variants.addItem(item)
        entry = self.state.entry(ref) if ref else None
        if entry is not None:
            self._set_classes(ref)

    @Slot(str)
    def _objective_changed(self, objective: str) -> None:
        self.target_class.setEnabled(objective == "sensitivity")
        self.target.setEnabled(objective == "sensitivity")

    def _set_classes(self, path: str) -> None:
        import json

        try:
            labels = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("labels", [])
        except (OSError, ValueError):
            labels = []
        current = self.target_class.currentText() or str(settings().value("evaluation/target_class", ""))
        self.target_class.clear()
        self.target_class.addItems([str(x) for x in labels])
        if current:
            self.target_class.setCurrentText(current)

    def select_variant(self, path: str) -> None:
        """Check a (new) variant in the list."""
        for i in range(self.variants.count()):
            item = self.variants.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == path:
                item.setCheckState(Qt.CheckState.Checked)

    def models(self) -> tuple[str, ...]:
        ref = self.reference.currentData()
        extra = [
            self.variants.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.variants.count())
            if self.variants.item(i).checkState() == Qt.CheckState.Checked
        ]
        return tuple(m for m in (ref, *extra) if m)

    # -- data --------------------------------------------------------------------------
    @Slot()
    def _browse_folder(self) -> None:
        path = open_folder(self, "Dataset folder", "datasets")
        if path:
            self.data.setText(path)

    @Slot()
    def _browse_file(self) -> None:
        path = open_file(self, "Dataset file", "datasets", "Datasets (*.npz *.csv *.tar.gz *.tgz);;All files (*)")
        if path:
            self.data.setText(path)

    # -- running -------------------------------------------------------------------------
    def evaluation_settings(self) -> EvaluationSettings:
        """The settings dataclass built from the controls (raises UserError on bad input)."""
        split = self.split.currentText()
        corruptions = tuple(n for n, cb in self.corruptions.items() if cb.isChecked())
        op = None
        if self.use_op.isChecked():
            if self.objective.currentText() == "sensitivity":
                op = OperatingPointSpec("sensitivity", self.target_class.currentText().strip(), self.target.value())
            else:
                op = OperatingPointSpec("macro_f1")
        return EvaluationSettings(
            data=self.data.text().strip() or "default",
            split=None if split == "auto" else split,
            seed=self.seed.value(),
            label_pattern=self.pattern.text().strip() or None,
            batch_size=self.batch.value(),
            limit=self.limit.value() or None,
            bootstrap=self.bootstrap.value(),
            bootstrap_seed=self.seed.value(),
            corruptions=corruptions,
            severities=parse_severities(self.severities.text()) if corruptions else (1, 2, 3, 4, 5),
            corruption_seed=self.seed.value(),
            operating_point=op,
            thresholds_from=self.val_data.text().strip() or None if op else None,
        ).validate()

    def _remember(self) -> None:
        s = settings()
        s.setValue("evaluation/data", self.data.text())
        s.setValue("evaluation/split", self.split.currentText())
        s.setValue("evaluation/seed", self.seed.value())
        s.setValue("evaluation/pattern", self.pattern.text())
        s.setValue("evaluation/limit", self.limit.value())
        s.setValue("evaluation/batch", self.batch.value())
        s.setValue("evaluation/bootstrap", self.bootstrap.value())
        s.setValue("evaluation/corruptions", ",".join(n for n, cb in self.corruptions.items() if cb.isChecked()))
        s.setValue("evaluation/severities", self.severities.text())
        s.setValue("evaluation/use_op", "true" if self.use_op.isChecked() else "false")
        s.setValue("evaluation/val", self.val_data.text())
        s.setValue("evaluation/objective", self.objective.currentText())
        s.setValue("evaluation/target_class", self.target_class.currentText())
        s.setValue("evaluation/target", self.target.value())

    @Slot()
    def start(self) -> None:
        models = self.models()
        if not models:
            self.window().show_error("Evaluation", "no model selected")
            return
        try:
            job_settings = self.evaluation_settings()
        except UserError as exc:
            self.window().show_error("Evaluation settings", str(exc))
            return
        self._remember()
        self.rows = []
        self.status.setText(f"Evaluating {len(models)} model(s) on {job_settings.data} …")
        self.submit_job(
            EvaluationSuiteJob(models, job_settings),
            on_result=self._on_result,
            on_partial=self._on_partial,
            on_progress=self._on_progress,
            on_failed=self._on_failed,
        )

    @Slot()
    def cancel(self) -> None:
        self.cancel_job()

    def job_buttons(self) -> tuple[tuple, tuple]:
        return (self.run_btn,), (self.cancel_btn,)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.status.setText(f"{100 * fraction:.0f}% · {message}")

    def _on_partial(self, payloads: tuple) -> None:
        dispatch(payloads, {VariantRows: lambda p: self.rows.extend(p.rows)})
        if self.rows:
            self.show_rows(self.rows)

    def _on_result(self, outcome: SuiteOutcome) -> None:
        self.outcome = outcome
        self.show_rows(outcome.rows)
        skipped = f"; {len(outcome.skipped)} unreadable file(s) skipped" if outcome.skipped else ""
        ref = outcome.variants[0].metrics.report
        self.status.setText(
            f"{len(outcome.variants)} variant(s) on {outcome.dataset}: {ref.n} images, reference accuracy "
            f"{100 * ref.accuracy:.2f}%{skipped}. Stored in Results."
        )

    def _on_failed(self, message: str) -> None:
        self.status.setText(f"<span style='color:#c0392b'>{message}</span>")

    # -- showing ---------------------------------------------------------------------------
    def show_rows(self, rows: list[Row]) -> None:
        """Fill every view from long rows; the first variant is the reference."""
        self.rows = list(rows)
        tables = [RowTable(v, self.rows) for v in variants_in(self.rows)]
        self.summary.set_tables(tables, self.rows)
        self.per_class.set_tables(tables)
        self.confusion.set_tables(tables)
        self.reliability.set_tables(tables)
        self.robustness.set_tables(tables)

    def show_records(self, records: list[RunRecord]) -> None:
        """Stored evaluate runs (from the Results tab): the first record is the reference."""
        rows: list[Row] = []
        names: list[str] = []
        for r in records:
            if r.kind != "evaluate":
                continue
            name = r.settings.get("variant") or r.variant
            while name in names:
                name = f"{name} #{r.id}"
            names.append(name)
            rows += [(name, m, "", v) for m, v in r.metrics.items()]
            rows += [(name, m, c, v) for m, c, v in r.per_class]
        if rows:
            self.show_rows(rows)
            self.status.setText(f"Showing {len(names)} stored run(s): {', '.join(names)}")
