"""Models tab: the list of known models, open/import, and the model card."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.core.paths import DEFAULT_MODEL_DIR
from engine.core.units import human_bytes, human_count
from engine.image.data.preprocess import Preprocessing
from engine.image.data.presets import describe
from engine.image.model_card import ModelCard
from engine.jobs.edit_inputs import EditInputsJob
from engine.jobs.image import LoadModelJob
from gui import lm_support
from gui.dialogs import open_folder
from gui.router import JobRouter
from gui.state import AppState
from gui.widgets.import_dialog import ImportDialog
from gui.widgets.job_owner import JobOwner
from gui.widgets.preprocessing_editor import PreprocessingEditor
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel

LAYER_COLUMNS = [
    Column("layer", lambda r: r.name),
    Column("type", lambda r: r.type),
    Column("weight shape", lambda r: r.shape, lambda v: "×".join(map(str, v)) if v else ""),
    Column("format", lambda r: r.format),
    Column("params", lambda r: r.params, lambda v: f"{v:,}", True),
    Column("bytes", lambda r: r.bytes, human_bytes, True),
    Column("bits/weight", lambda r: r.bits_per_weight, lambda v: f"{v:.2f}", True),
    Column("MACs", lambda r: r.macs, lambda v: human_count(v) if v else "", True),
]


class ModelsTab(JobOwner, QWidget):
    """Pick a model; its card (layers, parameters, size, dtypes) loads on the engine thread."""

    model_selected = Signal(str)

    def __init__(self, state: AppState, router: JobRouter, parent=None):
        super().__init__(parent)
        self.state = state
        self.router = router

        self.list = QListWidget()
        self.list.currentItemChanged.connect(self._on_current)
        open_btn = QPushButton("Open Bundle…")
        open_btn.clicked.connect(self.open_bundle)
        self.import_btn = import_btn = QPushButton("Import Checkpoint…")
        import_btn.clicked.connect(self.import_checkpoint)
        self.edit_btn = QPushButton("Edit Preprocessing…")
        self.edit_btn.setToolTip("Input size, resize, scaling, mean/std and class labels stored in the bundle")
        self.edit_btn.clicked.connect(self.edit_preprocessing)
        self.remove_btn = QPushButton("Remove from List")
        self.remove_btn.clicked.connect(self._remove)
        left = QVBoxLayout()
        left.addWidget(QLabel("Models"))
        left.addWidget(self.list)
        lm_btn = QPushButton("Open Language Model…")
        lm_btn.setToolTip("A GGUF file (llama.cpp, LM Studio) or a Hugging Face id; mlx-lm folders open as bundles")
        lm_btn.setMenu(lm_support.open_menu(self))
        for b in (open_btn, lm_btn, import_btn, self.edit_btn, self.remove_btn):
            left.addWidget(b)
        left_w = QWidget()
        left_w.setLayout(left)

        self.summary = QLabel("Select a model to see its card.")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setWordWrap(True)
        # A word-wrapped rich-text label can be laid out one line high; reserve room for the card's lines.
        self.summary.setMinimumHeight(self.summary.fontMetrics().lineSpacing() * 6)
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
        job = lm_support.load_job(path) if lm_support.is_language(self.state, path) else LoadModelJob(path)
        self.submit_job(job, on_result=self._on_card)

    def _on_card(self, card: ModelCard) -> None:
        self.state.set_card(card)

    @Slot(object)
    def _show_card(self, card: ModelCard) -> None:
        if card.path and str(Path(card.path).resolve()) != self.current_path():
            return
        if getattr(card, "kind", "") == "language":
            self.summary.setText(lm_support.card_html(card))
            self.layers.set_rows(list(card.layers))
            self.table.resizeColumnsToContents()
            return
        size = human_bytes(card.size_on_disk)
        labels = ", ".join(card.labels[:12]) + (" …" if len(card.labels) > 12 else "")
        prep = card.preprocessing
        self._card = card
        self.edit_btn.setEnabled(bool(card.path) and Path(card.path).resolve() != DEFAULT_MODEL_DIR.resolve())
        self.summary.setText(
            f"<b>{card.name}</b> — {card.arch}, <b>{card.recipe}</b><br>"
            f"{card.params:,} parameters · {human_count(card.macs)} MACs per image · "
            f"{human_bytes(card.bytes)} in memory · {size} on disk · "
            f"{card.bits_per_weight:.2f} bits/weight · dtypes {', '.join(card.dtypes)}<br>"
            f"input {describe(Preprocessing.from_dict(prep))} · {len(card.labels)} classes: {labels}<br>"
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
        path = open_folder(self, "Open model bundle", "bundles")
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> bool:
        """Add a bundle directory to the list; False (and an error) if it is not one."""
        entry = self.state.add(path)
        if entry is None:
            self.window().show_error(
                "Not a model", f"{path}: neither a model bundle nor an mlx-lm folder (no readable config.json)"
            )
            return False
        self.select(entry.path)
        return True

    def import_file(self, weights: str) -> None:
        """The import dialog with ``weights`` filled in (a file opened from Finder or the command line)."""
        self.import_checkpoint(weights)

    @Slot()
    def import_checkpoint(self, path: str | None = None) -> None:
        """Ask for the import settings (the file prefilled when given), then import on the engine thread."""
        from dataclasses import replace

        from engine.core import paths
        from engine.core.errors import UserError
        from engine.core.fileio import OutputExists, check_output_dir

        dialog = ImportDialog(self, path if isinstance(path, str) and path else None)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        job = dialog.job(paths.variants_dir())
        try:
            check_output_dir(job.out, inputs=(job.weights,))
        except OutputExists:
            answer = QMessageBox.question(
                self,
                "Replace model?",
                f"A model named '{Path(job.out).name}' was imported before.\nReplace it with this import?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            job = replace(job, overwrite=True)
        except UserError as exc:
            QMessageBox.warning(self, "Import", str(exc))
            return
        self.router.submit(job, on_result=self._on_imported)

    def import_files(self, files: list[str]) -> None:
        """Files dropped on the window: import the first (one dialog at a time)."""
        if files:
            self.import_checkpoint(files[0])

    @Slot()
    def edit_preprocessing(self) -> None:
        card = getattr(self, "_card", None)
        if card is None or not card.path:
            return
        editor = PreprocessingEditor(Preprocessing.from_dict(card.preprocessing), list(card.labels), self)
        if editor.exec() != QDialog.DialogCode.Accepted or editor.result_values() is None:
            return
        prep, labels = editor.result_values()
        self.router.submit(EditInputsJob(card.path, prep, labels), on_result=self.state.set_card)

    def _on_imported(self, card: ModelCard) -> None:
        entry = self.state.add(card.path)
        self.state.set_card(card)
        if entry:
            self.select(entry.path)
