"""Quantize tab panels: per-layer sensitivity, budget search (autoquant), activation simulation, recovery.

Each panel submits one engine job (engine/quant/jobs.py) through the router and shows its
partial results live; the source model comes from the Quantize tab's selector.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.image.quant.actsim import ActSimSettings
from engine.image.quant.autoquant import DEFAULT_METHODS, Budget, method_counts
from engine.image.quant.methods import METHODS
from engine.image.quant.recover import FinetuneSettings
from engine.image.quant.sensitivity import SensitivityReport, write_sensitivity_csv
from engine.jobs.quant import ActSimJob, AutoquantJob, FinetuneJob, SensitivityJob
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.widgets.job_owner import JobOwner
from gui.widgets.live_plot import PALETTE, LivePlot

BIT_CHOICES = ("int8", "int6", "int5", "int4", "int3", "int2")


class _JobPanel(JobOwner, QWidget):
    """Run and Cancel buttons, a status line, and one job at a time."""

    variant_created = Signal(str)  # bundle path

    def __init__(self, state: AppState, router: JobRouter, source: Callable[[], str | None], run_text: str):
        super().__init__()
        self.state, self.source = state, source
        self.run_btn = QPushButton(run_text)
        self.run_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        self.own_jobs(router, run=(self.run_btn,), cancel=(self.cancel_btn,))
        self.status = QLabel("")
        self.status.setWordWrap(True)

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.status, 1)
        return row

    def _submit(self, job, **handlers) -> None:
        self.status.setText("starting…")
        self.submit_job(
            job,
            on_progress=lambda f, m: self.status.setText(f"{100 * f:.0f}%  {m}"),
            on_failed=self._failed,
            on_done=self._done,
            **handlers,
        )

    def _model(self) -> str | None:
        path = self.source()
        if not path:
            self.window().show_error(self.run_btn.text(), "no float model selected: open or import one first")
        return path

    @Slot()
    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @Slot()
    def cancel(self) -> None:
        if self.busy():
            self.cancel_job()
            self.status.setText("cancelling…")

    def _failed(self, message: str) -> None:
        self.status.setText("failed")  # the window reports the message itself (JobRouter.job_failed)

    def _done(self) -> None:
        if self.status.text().startswith(("cancelling", "starting")):
            self.status.setText("cancelled")

    def _new_variant(self, path: str, card) -> None:
        entry = self.state.add(path)
        self.state.set_card(card)
        if entry:
            self.variant_created.emit(entry.path)


def _format_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


class SensitivityPanel(_JobPanel):
    """Quantize one layer at a time; a bar per layer (KL or top-1 flips), CSV export."""

    def __init__(self, state, router, source):
        super().__init__(state, router, source, "Analyze sensitivity")
        s = settings()
        self.formats = QLineEdit(str(s.value("quantize/sens_formats", "int4,int2")))
        self.formats.setToolTip("formats to measure, comma-separated (int8..int2, intN-gG, mxfp4, ...)")
        self.calib = QSpinBox()
        self.calib.setRange(1, 100_000)
        self.calib.setValue(int(s.value("quantize/sens_calib", 128)))
        self.metric = QComboBox()
        self.metric.addItems(["KL divergence", "top-1 flip rate"])
        self.metric.currentIndexChanged.connect(self._redraw)
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.setEnabled(False)
        self.export_btn.clicked.connect(self.export_csv)
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.showGrid(y=True, alpha=0.3)
        self.plot.addLegend(offset=(-10, 10))
        self.plot.setLabel("left", "KL divergence vs float")
        self.rows: list = []
        self.report: SensitivityReport | None = None

        form = QFormLayout()
        form.addRow("Formats", self.formats)
        form.addRow("Calibration images", self.calib)
        form.addRow("Bar height", self.metric)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = self._buttons()
        row.insertWidget(2, self.export_btn)
        layout.addLayout(row)
        layout.addWidget(self.plot, 1)

    @Slot()
    def start(self) -> None:
        path = self._model()
        if not path:
            return
        formats = _format_list(self.formats.text())
        s = settings()
        s.setValue("quantize/sens_formats", ",".join(formats))
        s.setValue("quantize/sens_calib", self.calib.value())
        self.rows, self.report = [], None
        self.export_btn.setEnabled(False)
        self._redraw()
        self._submit(
            SensitivityJob(path, formats, calib=self.calib.value()),
            on_partial=self._on_rows,
            on_result=self._on_result,
        )

    def _on_rows(self, rows: tuple) -> None:
        self.rows.extend(rows)
        self._redraw()

    def _on_result(self, outcome) -> None:
        self.report = outcome.report
        self.rows = list(outcome.report.rows)
        self.export_btn.setEnabled(True)
        self.status.setText(
            f"{len(self.report.layers)} layers on {self.report.n_images} images in {self.report.seconds:.1f} s "
            "(weight-only quantization, one layer at a time)"
        )
        self._redraw()

    def bars(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """{format: (layer names, heights)} of the current metric."""
        flips = self.metric.currentIndex() == 1
        out: dict[str, tuple[list[str], list[float]]] = {}
        for r in self.rows:
            names, values = out.setdefault(r.format, ([], []))
            names.append(r.path)
            values.append(100 * r.flip_rate if flips else r.kl)
        return {f: (n, np.asarray(v)) for f, (n, v) in out.items()}

    @Slot()
    def _redraw(self) -> None:
        self.plot.clear()
        self.plot.setLabel("left", "top-1 flips (%)" if self.metric.currentIndex() == 1 else "KL divergence vs float")
        bars = self.bars()
        if not bars:
            return
        layers = list(dict.fromkeys(n for names, _ in bars.values() for n in names))
        width = 0.8 / len(bars)
        for i, (fmt, (names, values)) in enumerate(bars.items()):
            x = np.array([layers.index(n) for n in names], dtype=float) - 0.4 + (i + 0.5) * width
            item = pg.BarGraphItem(x=x, height=values, width=width, brush=PALETTE[i % len(PALETTE)], name=fmt)
            self.plot.addItem(item)
        self.plot.getAxis("bottom").setTicks([list(enumerate(layers))])

    @Slot()
    def export_csv(self, path: str | None = None) -> None:
        if self.report is None:
            return
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export sensitivity CSV", "sensitivity.csv", "CSV (*.csv)")
            if not path:
                return
        try:
            written = write_sensitivity_csv(path, self.report)
        except OSError as exc:
            self.window().show_error("Export failed", f"{path}: {exc.strerror or exc}")
            return
        self.status.setText(f"wrote {written}")


class AutoquantPanel(_JobPanel):
    """Search per-layer bit widths for the smallest model within a size or accuracy budget."""

    KINDS = (("bits per weight", "bpw"), ("size (MB)", "mb"), ("max accuracy drop (points)", "drop"))

    def __init__(self, state, router, source):
        super().__init__(state, router, source, "Search")
        s = settings()
        self.kind = QComboBox()
        for label, key in self.KINDS:
            self.kind.addItem(label, key)
        self.kind.setCurrentIndex(max(0, self.kind.findData(str(s.value("quantize/budget_kind", "bpw")))))
        self.value = QDoubleSpinBox()
        self.value.setDecimals(3)
        self.value.setRange(0.0, 1e6)
        self.value.setValue(float(s.value("quantize/budget_value", 4.0)))
        self.candidates = QLineEdit(str(s.value("quantize/candidates", ",".join(BIT_CHOICES))))
        self.calib = QSpinBox()
        self.calib.setRange(1, 100_000)
        self.calib.setValue(int(s.value("quantize/aq_calib", 128)))
        # Each layer's options become (format, method) pairs; beyond RTN the search measures every
        # layer alone by every method (exact sensitivity), which multiplies its time.
        chosen = set(_format_list(str(s.value("quantize/aq_methods", ",".join(DEFAULT_METHODS)))))
        self.methods: dict[str, QCheckBox] = {}
        methods_row = QHBoxLayout()
        for name, text in METHODS.items():
            box = QCheckBox(name)
            box.setToolTip(text)
            box.setChecked(name in chosen)
            self.methods[name] = box
            methods_row.addWidget(box)
        methods_row.addStretch(1)
        if not any(b.isChecked() for b in self.methods.values()):
            self.methods["rtn"].setChecked(True)
        self.trace = QPlainTextEdit()
        self.trace.setReadOnly(True)
        form = QFormLayout()
        form.addRow("Budget", self.kind)
        form.addRow("Target", self.value)
        form.addRow("Candidate formats", self.candidates)
        form.addRow("Methods", methods_row)
        form.addRow("Calibration images", self.calib)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(self._buttons())
        layout.addWidget(QLabel("Search trace"))
        layout.addWidget(self.trace, 1)

    @Slot()
    def start(self) -> None:
        path = self._model()
        if not path:
            return
        kind, value = self.kind.currentData(), self.value.value()
        s = settings()
        s.setValue("quantize/budget_kind", kind)
        s.setValue("quantize/budget_value", value)
        s.setValue("quantize/candidates", self.candidates.text())
        s.setValue("quantize/aq_calib", self.calib.value())
        methods = self.chosen_methods()
        if not methods:
            self.window().show_error(self.run_btn.text(), "choose at least one method")
            return
        s.setValue("quantize/aq_methods", ",".join(methods))
        self.trace.clear()
        job = AutoquantJob(
            path,
            Budget(kind, value),
            calib=self.calib.value(),
            candidates=_format_list(self.candidates.text()),
            methods=methods,
        )
        self._submit(job, on_partial=self._on_steps, on_result=self._on_result)

    def chosen_methods(self) -> tuple[str, ...]:
        return tuple(name for name, box in self.methods.items() if box.isChecked())

    def _on_steps(self, steps: tuple) -> None:
        for s in steps:
            acc = "" if s.accuracy is None else f"  val {100 * s.accuracy:.2f}%"
            kl = "" if s.measured_kl is None else f"  measured KL {s.measured_kl:.5f}"
            counts = method_counts(s.methods)
            how = "" if set(counts) <= {"rtn"} else "  " + " ".join(f"{m}×{n}" for m, n in counts.items())
            self.trace.appendPlainText(
                f"{s.step:>3} {s.action:<9}{s.bits_per_weight:7.3f} bpw  predicted KL {s.predicted_kl:.5f}{kl}{acc}{how}"
            )

    def _on_result(self, outcome) -> None:
        res = outcome.result
        self.trace.appendPlainText("")
        for (layer, fmt), (_, method) in zip(res.assignment, res.methods, strict=True):
            self.trace.appendPlainText(f"  {layer:<28}{fmt:<10}{method}")
        met = "met" if res.met else "NOT met: the largest candidate model is returned"
        self.status.setText(
            f"budget {res.budget.describe()} {met}: {outcome.card.bits_per_weight:.2f} bits/weight -> {outcome.path}"
        )
        self._new_variant(outcome.path, outcome.card)


class ActSimPanel(_JobPanel):
    """Evaluate with static int8 activations next to the weight-only numbers."""

    def __init__(self, state, router, source):
        super().__init__(state, router, source, "Simulate int8 activations")
        self.observer = QComboBox()
        self.observer.addItems(["minmax", "percentile", "mse"])
        self.calib = QSpinBox()
        self.calib.setRange(1, 100_000)
        self.calib.setValue(128)
        self.data = QLineEdit("default")
        self.data.setToolTip("evaluation images: a folder of class subfolders, an .npz file, or default")
        self.calib_data = QLineEdit("default-val")
        self.use_variant = QCheckBox("use the last variant made here instead of the source model")
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.variant: str | None = None
        form = QFormLayout()
        form.addRow("Observer", self.observer)
        form.addRow("Calibration images", self.calib)
        form.addRow("Evaluation data", self.data)
        form.addRow("Calibration data", self.calib_data)
        form.addRow("", self.use_variant)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(self._buttons())
        layout.addWidget(self.result)
        layout.addStretch(1)

    @Slot()
    def start(self) -> None:
        path = self.variant if (self.use_variant.isChecked() and self.variant) else self._model()
        if not path:
            return
        st = ActSimSettings(observer=self.observer.currentText(), calib=self.calib.value())
        job = ActSimJob(
            path, self.data.text().strip() or "default", self.calib_data.text().strip() or "default-val", st
        )
        self._submit(job, on_result=self._on_result)

    def _on_result(self, o) -> None:
        w, s = o.weight_only.report.accuracy, o.simulated.report.accuracy
        self.result.setText(
            f"{o.weight_only.model_name} on {o.weight_only.dataset}: weight-only {100 * w:.2f}%, "
            f"{o.calibration.settings.label()} {100 * s:.2f}% ({100 * (w - s):+.2f} points)"
        )
        self.status.setText("done")


def _pair_row(first: QWidget, label: str, second: QWidget) -> QHBoxLayout:
    """Two form fields on one row: ``first``, then ``label`` and ``second``."""
    row = QHBoxLayout()
    row.addWidget(first, 1)
    row.addWidget(QLabel(label))
    row.addWidget(second, 1)
    return row


class RecoveryPanel(_JobPanel):
    """Quantization-aware fine-tuning with optional distillation; live loss and accuracy curves."""

    def __init__(self, state, router, source):
        super().__init__(state, router, source, "Fine-tune")
        s = settings()
        self.recipe = QComboBox()
        self.recipe.addItems(list(BIT_CHOICES) + ["mixed-3-8", "mixed-2-8"])
        self.recipe.setCurrentText(str(s.value("quantize/ft_recipe", "int3")))
        # Start from the float source (quantized to the recipe) or from a quantized image model,
        # which keeps its own formats and grid; the engine's kinds decide what is an image model.
        self.start_from = QComboBox()
        self.start_from.setToolTip("a quantized model (any method) is fine-tuned on its own formats and grid")
        self.start_from.currentIndexChanged.connect(self._start_changed)
        state.models_changed.connect(self._refresh_starts)
        self._refresh_starts()
        self.distil = QCheckBox("distil from the float source model")
        self.distil.setChecked(s.value("quantize/ft_distil", "true") in (True, "true"))
        self.data = QLineEdit(str(s.value("quantize/ft_data", "default-val")))
        self.data.setToolTip("a folder of class subfolders, an .npz file, or default-val")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(int(s.value("quantize/ft_epochs", 3)))
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(float(s.value("quantize/ft_lr", FinetuneSettings().lr)))
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.1, 100.0)
        self.temperature.setValue(4.0)
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.0, 1.0)
        self.alpha.setSingleStep(0.1)
        self.alpha.setValue(0.7)
        self.loss_plot = LivePlot("Training loss", "loss", "step")
        self.acc_plot = LivePlot("Accuracy", "accuracy (%)", "step")
        form = QFormLayout()
        form.addRow("Start from", self.start_from)
        target = QHBoxLayout()  # pairs share a row, so the live plots keep their height at 1024x640
        target.addWidget(self.recipe, 1)
        target.addWidget(self.distil)
        form.addRow("Quantize to", target)
        form.addRow("Training images", self.data)
        form.addRow("Epochs", _pair_row(self.epochs, "Learning rate", self.lr))
        form.addRow("Temperature", _pair_row(self.temperature, "Distillation weight α", self.alpha))
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.acc_plot)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(self._buttons())
        layout.addLayout(plots, 1)

    @Slot()
    def _refresh_starts(self) -> None:
        current = self.start_from.currentData()
        self.start_from.blockSignals(True)
        self.start_from.clear()
        self.start_from.addItem("the source model, quantized to the recipe", None)
        for e in self.state.entries("image"):
            if e.quantized:
                self.start_from.addItem(f"{e.display} (keeps its grid)", e.path)
        i = self.start_from.findData(current) if current else 0
        self.start_from.setCurrentIndex(max(0, i))
        self.start_from.blockSignals(False)
        self._start_changed(self.start_from.currentIndex())

    @Slot(int)
    def _start_changed(self, _index: int) -> None:
        self.recipe.setEnabled(self.start_from.currentData() is None)  # a quantized model keeps its own

    @Slot()
    def start(self) -> None:
        quantized = self.start_from.currentData()
        path = quantized or self._model()
        if not path:
            return
        s = settings()
        for key, value in (
            ("ft_recipe", self.recipe.currentText()),
            ("ft_distil", "true" if self.distil.isChecked() else "false"),
            ("ft_data", self.data.text()),
            ("ft_epochs", self.epochs.value()),
            ("ft_lr", self.lr.value()),
        ):
            s.setValue(f"quantize/{key}", value)
        st = FinetuneSettings(
            recipe=None if quantized else self.recipe.currentText(),
            epochs=self.epochs.value(),
            lr=self.lr.value(),
            temperature=self.temperature.value(),
            alpha=self.alpha.value(),
        )
        for plot in (self.loss_plot, self.acc_plot):
            plot.clear_series()
        # A quantized start distils from the float model it was made from (recorded in its config).
        teacher = path if self.distil.isChecked() and not quantized else None
        job = FinetuneJob(
            path, st, teacher, self.data.text().strip() or "default-val", teacher_from_parent=self.distil.isChecked()
        )
        self._submit(
            job,
            on_partial=self._on_points,
            on_result=self._on_result,
        )

    def _on_points(self, points: tuple) -> None:
        self.loss_plot.append("loss", [p.loss for p in points])
        self.acc_plot.append("batch", [100 * p.batch_accuracy for p in points])
        val = [100 * p.val_accuracy for p in points if p.val_accuracy is not None]
        if val:
            self.acc_plot.append("validation (x = epoch)", val)

    def _on_result(self, outcome) -> None:
        res = outcome.result
        teacher = "" if res.teacher_accuracy is None else f", teacher {100 * res.teacher_accuracy:.2f}%"
        start = f" (from {res.from_method}, its grid kept)" if res.from_method else ""
        note = f"; {outcome.note}" if outcome.note else ""
        self.status.setText(
            f"{res.recipe}{start}: validation {100 * res.before_accuracy:.2f}% before -> {100 * res.after_accuracy:.2f}% "
            f"after {res.steps} steps{teacher} -> {outcome.path}{note}"
        )
        self._new_variant(outcome.path, outcome.card)
