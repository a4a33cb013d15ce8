"""Quantize tab: pick a float model and a recipe, quantize on the engine thread."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine import kinds
from engine.core.errors import UserError
from engine.core.units import human_bytes
from engine.image.quant.recipes import describe
from engine.jobs.image import QuantizeJob, QuantizeOutcome
from gui import lm_support
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.tabs.method_picker import MethodPicker
from gui.tabs.models import LAYER_COLUMNS
from gui.tabs.quantize_tools import ActSimPanel, AutoquantPanel, RecoveryPanel, SensitivityPanel
from gui.widgets.job_owner import JobOwner
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel, fmt_float

RECIPE_HELP = {
    "fp16": "float16 weights and activations",
    "bf16": "bfloat16 weights and activations",
    "int8": "8-bit group-wise affine weights (convolutions included), float32 activations",
    "int4": "4-bit group-wise affine weights (convolutions included), float32 activations",
    "mxfp4": "OCP MX FP4 (E2M1, shared 8-bit exponent per 32)",
    "mxfp8": "OCP MX FP8 (E4M3, shared 8-bit exponent per 32)",
    "nvfp4": "NVIDIA FP4 (E2M1, FP8 scale per 16)",
}

VARIANT_COLUMNS = [
    Column("variant", lambda o: o.card.name),
    Column("recipe", lambda o: o.recipe),
    Column("size", lambda o: o.card.size_on_disk, human_bytes, True),
    Column("bits/weight", lambda o: o.card.bits_per_weight, fmt_float(2), True),
    Column(
        "vs float", lambda o: (o.source.size_on_disk or 0) / (o.card.size_on_disk or 1), lambda v: f"{v:.2f}×", True
    ),
    Column("seconds", lambda o: o.seconds, fmt_float(2), True),
    Column("path", lambda o: o.path),
]


class QuantizeTab(JobOwner, QWidget):
    variant_created = Signal(str)  # bundle path

    def __init__(self, state: AppState, router: JobRouter, parent=None):
        super().__init__(parent)
        self.state = state
        self.router = router
        s = settings()

        self.source = QComboBox()
        self.recipe = QComboBox()
        self._recipes_kind = ""
        self._offer_recipes(kinds.IMAGE)
        self.recipe.setCurrentText(str(s.value("quantize/recipe", "int8")))
        self.group_size = QComboBox()
        self.group_size.addItems(["32", "64", "128"])
        self.group_size.setCurrentText(str(s.value("quantize/group_size", "64")))
        self.help = QLabel()
        self.help.setWordWrap(True)
        self.recipe.currentTextChanged.connect(self._recipe_changed)
        self.run_btn = QPushButton("Quantize")
        self.run_btn.setToolTip("Quantize the source model with this recipe (Ctrl+Return)")
        self.run_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)

        form = QFormLayout()
        form.addRow("Source model", self.source)
        self.recipe_file_btn = QPushButton("Recipe file…")
        self.recipe_file_btn.setToolTip("a JSON recipe of per-layer settings, or a quantized bundle's config.json")
        self.recipe_file_btn.clicked.connect(self.choose_recipe_file)
        recipe_row = QHBoxLayout()
        recipe_row.addWidget(self.recipe, 1)
        recipe_row.addWidget(self.recipe_file_btn)
        form.addRow("Recipe", recipe_row)
        form.addRow("Group size", self.group_size)
        self.method = MethodPicker()
        form.addRow("Method", self.method)
        form.addRow("", self.help)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        buttons.addStretch(1)
        form.addRow(buttons)
        settings_box = QGroupBox("Settings")
        settings_box.setLayout(form)

        self.variants = RecordTableModel(VARIANT_COLUMNS, self)
        vproxy = RawSortProxy(self)
        vproxy.setSourceModel(self.variants)
        self.variant_table = QTableView()
        self.variant_table.setModel(vproxy)
        self.variant_table.setSortingEnabled(True)
        self.variant_table.verticalHeader().setVisible(False)
        self.variant_table.horizontalHeader().setStretchLastSection(True)
        self.layers = RecordTableModel(LAYER_COLUMNS, self)
        self.layer_table = QTableView()
        self.layer_table.setModel(self.layers)
        self.layer_table.verticalHeader().setVisible(False)
        self.layer_table.horizontalHeader().setStretchLastSection(True)

        variants_page = QWidget()
        vl = QVBoxLayout(variants_page)
        vl.addWidget(QLabel("Variants made in this session"))
        vl.addWidget(self.variant_table, 2)
        self.layer_title = QLabel("Per-layer storage of the last variant")
        vl.addWidget(self.layer_title)
        vl.addWidget(self.layer_table, 3)

        # Analysis and search panels share the source model selected above.
        source = self.source.currentData
        self.sensitivity = SensitivityPanel(state, router, source)
        self.autoquant = AutoquantPanel(state, router, source)
        self.actsim = ActSimPanel(state, router, source)
        self.recovery = RecoveryPanel(state, router, source)
        self.tools = QTabWidget()
        self.tools.addTab(variants_page, "Variants")
        self.tools.addTab(self.sensitivity, "Sensitivity")
        self.tools.addTab(self.autoquant, "Autoquant (budget)")
        self.tools.addTab(self.actsim, "int8 activations")
        self.tools.addTab(self.recovery, "Recovery (QAT / distillation)")
        for panel in (self.autoquant, self.recovery):
            panel.variant_created.connect(self.variant_created)

        # The settings keep a readable width; the panels below take the window's width.
        settings_box.setMaximumWidth(760)
        top = QHBoxLayout()
        top.addWidget(settings_box, 1)
        top.addStretch(0)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tools, 1)

        state.models_changed.connect(self._refresh_sources)
        self.source.currentIndexChanged.connect(self._source_changed)
        self._recipe_changed(self.recipe.currentText())

    def _offer_recipes(self, kind: str) -> None:
        """The recipes of the source's kind only (an LM recipe on a CNN, or the reverse, is never offered)."""
        if kind == self._recipes_kind:
            return
        current = self.recipe.currentText()
        files = [
            self.recipe.itemText(i) for i in range(self.recipe.count()) if self.recipe.itemText(i).endswith(".json")
        ]
        self.recipe.blockSignals(True)
        self.recipe.clear()
        self.recipe.addItems([r for r in kinds.get(kind).recipes() if r != "fp32"])  # fp32 is the source itself
        self.recipe.addItems(files)
        self.recipe.blockSignals(False)
        self._recipes_kind = kind
        if hasattr(self, "method"):  # built after the first call, in __init__
            self.method.offer_methods(kinds.get(kind).methods())
        i = self.recipe.findText(current)
        self.recipe.setCurrentIndex(i if i >= 0 else max(0, self.recipe.findText("int8")))
        if hasattr(self, "help"):  # built after the first call, in __init__
            self._recipe_changed(self.recipe.currentText())

    @Slot(int)
    def _source_changed(self, _index: int) -> None:
        entry = self.state.entry(self.source.currentData()) if self.source.currentData() else None
        if entry is not None:
            self._offer_recipes(entry.kind)

    @Slot()
    def _refresh_sources(self) -> None:
        current = self.source.currentData()
        self.source.clear()
        for e in self.state.float_entries():
            self.source.addItem(e.display, e.path)
        if current:
            i = self.source.findData(current)
            if i >= 0:
                self.source.setCurrentIndex(i)

    @Slot(str)
    def _recipe_changed(self, name: str) -> None:
        self.group_size.setEnabled(name.startswith(("int", "mixed")))
        if name.lower().endswith(".json"):
            self.help.setText(f"per-layer settings from {name}")
        elif name in lm_support.LM_RECIPE_HELP:
            self.help.setText(lm_support.LM_RECIPE_HELP[name])
        else:
            self.help.setText(RECIPE_HELP.get(name, describe(name)))

    @Slot()
    def choose_recipe_file(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Recipe file", "", "JSON (*.json)")
            if not path:
                return
        if self.recipe.findText(path) < 0:
            self.recipe.addItem(path)
        self.recipe.setCurrentText(path)

    def set_source(self, path: str) -> None:
        i = self.source.findData(path)
        if i >= 0:
            self.source.setCurrentIndex(i)

    @Slot()
    def start(self) -> None:
        path = self.source.currentData()
        if not path:
            self.window().show_error("Quantize", "no float model to quantize: open or import one first")
            return
        recipe = self.recipe.currentText()
        gs = int(self.group_size.currentText()) if recipe.startswith(("int", "mixed")) else None
        s = settings()
        if not recipe.lower().endswith(".json"):
            s.setValue("quantize/recipe", recipe)
        s.setValue("quantize/group_size", self.group_size.currentText())
        self.method.remember()
        if lm_support.is_language(self.state, path):
            m = self.method.job_kwargs()
            if m["method"] == "rtn":
                job = lm_support.quantize_job(path, recipe, gs if recipe.startswith("int") else None)
            else:
                try:
                    job = lm_support.method_job(path, recipe, gs, m["method"], m["calib"], m["calib_size"])
                except UserError as exc:
                    self.window().show_error("Quantize", str(exc))
                    return
        else:
            job = QuantizeJob(path, recipe, None, gs, **self.method.job_kwargs())
        self.submit_job(job, on_result=self._on_result)

    @Slot()
    def cancel(self) -> None:
        self.cancel_job()

    def _on_result(self, outcome: QuantizeOutcome) -> None:
        self.variants.append(outcome)
        self.actsim.variant = outcome.path
        self.layers.set_rows(list(outcome.card.layers))
        self.layer_title.setText(f"Per-layer storage of {outcome.card.name}")
        self.layer_table.resizeColumnsToContents()
        entry = self.state.add(outcome.path)
        self.state.set_card(outcome.card)
        if entry:
            self.variant_created.emit(entry.path)

    def job_buttons(self) -> tuple[tuple, tuple]:
        return (self.run_btn,), (self.cancel_btn,)

    def busy(self) -> bool:
        panels = (self.sensitivity, self.autoquant, self.actsim, self.recovery)
        return JobOwner.busy(self) or any(p.busy() for p in panels)
