"""Models tab: the list of known models, open/import, and the model card."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.jobs import ImportJob, LoadModelJob
from engine.model_card import ModelCard, human_bytes
from engine.models import registry
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel

LAYER_COLUMNS = [
    Column("layer", lambda r: r.name),
    Column("type", lambda r: r.type),
    Column("weight shape", lambda r: r.shape, lambda v: "×".join(map(str, v)) if v else ""),
    Column("format", lambda r: r.format),
    Column("params", lambda r: r.params, lambda v: f"{v:,}", True),
    Column("bytes", lambda r: r.bytes, human_bytes, True),
    Column("bits/weight", lambda r: r.bits_per_weight, lambda v: f"{v:.2f}", True),
]


class ImportDialog(QDialog):
    """Architecture, checkpoint, classes and output folder for an import."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Import checkpoint")
        form = QFormLayout(self)
        self.arch = QComboBox()
        self.arch.addItems(registry.names())
        self.weights = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.weights)
        row.addWidget(browse)
        self.num_classes = QSpinBox()
        self.num_classes.setRange(0, 100000)
        self.num_classes.setSpecialValueText("from checkpoint")
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("comma-separated class names (optional)")
        self.name = QLineEdit()
        self.name.setPlaceholderText("bundle name (default: file name)")
        form.addRow("Architecture", self.arch)
        form.addRow("Weights", row)
        form.addRow("Classes", self.num_classes)
        form.addRow("Labels", self.labels)
        form.addRow("Name", self.name)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        s = settings()
        start = str(s.value("folders/checkpoints", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(
            self, "Checkpoint", start, "Checkpoints (*.safetensors *.npz *.pth *.pt);;All files (*)"
        )
        if path:
            s.setValue("folders/checkpoints", str(Path(path).parent))
            self.weights.setText(path)

    def job(self, out_dir: Path) -> ImportJob:
        labels = tuple(x.strip() for x in self.labels.text().split(",") if x.strip()) or None
        name = self.name.text().strip() or Path(self.weights.text()).stem
        return ImportJob(
            arch=self.arch.currentText(),
            weights=self.weights.text().strip(),
            out=str(out_dir / name),
            num_classes=self.num_classes.value() or None,
            labels=labels,
            name=name,
        )


class ModelsTab(QWidget):
    """Pick a model; its card (layers, parameters, size, dtypes) loads on the engine thread."""

    model_selected = Signal(str)

    def __init__(self, state: AppState, router: JobRouter, parent=None):
        super().__init__(parent)
        self.state = state
        self.router = router
        self._job: int | None = None

        self.list = QListWidget()
        self.list.currentItemChanged.connect(self._on_current)
        open_btn = QPushButton("Open Bundle…")
        open_btn.clicked.connect(self.open_bundle)
        import_btn = QPushButton("Import Checkpoint…")
        import_btn.clicked.connect(self.import_checkpoint)
        self.remove_btn = QPushButton("Remove from List")
        self.remove_btn.clicked.connect(self._remove)
        left = QVBoxLayout()
        left.addWidget(QLabel("Models"))
        left.addWidget(self.list)
        for b in (open_btn, import_btn, self.remove_btn):
            left.addWidget(b)
        left_w = QWidget()
        left_w.setLayout(left)

        self.summary = QLabel("Select a model to see its card.")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setWordWrap(True)
        self.layers = RecordTableModel(LAYER_COLUMNS, self)
        proxy = RawSortProxy(self)
        proxy.setSourceModel(self.layers)
        self.table = QTableView()
        self.table.setModel(proxy)
        self.table.setSortingEnabled(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        right = QVBoxLayout()
        right.addWidget(self.summary)
        right.addWidget(self.table, 1)
        right_w = QWidget()
        right_w.setLayout(right)

        split = QSplitter()
        split.addWidget(left_w)
        split.addWidget(right_w)
        split.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addWidget(split)

        state.models_changed.connect(self._refresh_list)
        state.card_ready.connect(self._show_card)

    # -- list ------------------------------------------------------------------------
    @Slot()
    def _refresh_list(self) -> None:
        current = self.current_path()
        self.list.blockSignals(True)
        self.list.clear()
        for e in self.state.entries():
            item = QListWidgetItem(e.display)
            item.setData(Qt.ItemDataRole.UserRole, e.path)
            item.setToolTip(e.path)
            self.list.addItem(item)
            if e.path == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)

    def current_path(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def select(self, path: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == path:
                self.list.setCurrentRow(i)
                return

    @Slot()
    def _on_current(self, *_):
        path = self.current_path()
        if not path:
            return
        self.model_selected.emit(path)
        card = self.state.card(path)
        if card is not None:
            self._show_card(card)
            return
        self.summary.setText(f"Loading {path} …")
        self._job = self.router.submit(LoadModelJob(path), replace=self._job, on_result=self._on_card)

    def _on_card(self, card: ModelCard) -> None:
        self.state.set_card(card)

    @Slot(object)
    def _show_card(self, card: ModelCard) -> None:
        if card.path and str(Path(card.path).resolve()) != self.current_path():
            return
        size = human_bytes(card.size_on_disk)
        labels = ", ".join(card.labels[:12]) + (" …" if len(card.labels) > 12 else "")
        prep = card.preprocessing
        self.summary.setText(
            f"<b>{card.name}</b> — {card.arch}, <b>{card.recipe}</b><br>"
            f"{card.params:,} parameters · {human_bytes(card.bytes)} in memory · {size} on disk · "
            f"{card.bits_per_weight:.2f} bits/weight · dtypes {', '.join(card.dtypes)}<br>"
            f"input {card.input_shape[0]}×{card.input_shape[1]}×{card.input_shape[2]} "
            f"({prep.get('resize')}, scale {prep.get('scale')}) · {len(card.labels)} classes: {labels}<br>"
            f"<small>{card.path}<br>sha256 {card.content_hash[:16]}…</small>"
        )
        self.layers.set_rows(list(card.layers))
        self.table.resizeColumnsToContents()

    @Slot()
    def _remove(self) -> None:
        path = self.current_path()
        if path:
            self.state.remove(path)

    # -- actions ---------------------------------------------------------------------
    @Slot()
    def open_bundle(self) -> None:
        s = settings()
        start = str(s.value("folders/bundles", str(Path.home())))
        path = QFileDialog.getExistingDirectory(self, "Open model bundle", start)
        if path:
            s.setValue("folders/bundles", str(Path(path).parent))
            self.open_path(path)

    def open_path(self, path: str) -> bool:
        """Add a bundle directory to the list; False (and an error) if it is not one."""
        entry = self.state.add(path)
        if entry is None:
            self.window().show_error("Not a model bundle", f"{path}: no readable config.json")
            return False
        self.select(entry.path)
        return True

    @Slot()
    def import_checkpoint(self) -> None:
        self.import_file("")

    def import_file(self, weights: str) -> None:
        """The import dialog with ``weights`` filled in (a file opened from Finder or the command line)."""
        from engine import paths

        dialog = ImportDialog(self)
        if weights:
            dialog.weights.setText(weights)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        if not dialog.weights.text().strip():
            self.window().show_error("Import", "choose a checkpoint file to import")
            return
        self.router.submit(dialog.job(paths.variants_dir()), on_result=self._on_imported)

    def _on_imported(self, card: ModelCard) -> None:
        entry = self.state.add(card.path)
        self.state.set_card(card)
        if entry:
            self.select(entry.path)
