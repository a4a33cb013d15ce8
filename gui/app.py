"""QApplication and MainWindow: six tabs over one engine thread."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QByteArray, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
)

import engine
from engine.core import paths
from engine.measure.results import ResultsStore
from gui.engine_thread import Engine
from gui.file_open import FileOpener, StudioApplication
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.tabs.benchmark import BenchmarkTab
from gui.tabs.evaluation import EvaluationTab
from gui.tabs.inference import InferenceTab
from gui.tabs.models import ModelsTab
from gui.tabs.quantize import QuantizeTab
from gui.tabs.results import ResultsTab
from gui.theme import DARK, LIGHT, PREFERENCES, SYSTEM, ThemeController

APP_TITLE = "MLX Quant Studio"
ICON_PATH = paths.RESOURCES / "icon.png"
# Tab buttons named differently from the menu command they share a shortcut with.
BUTTON_ACTIONS = {
    "Open Bundle…": "Open Model Bundle…",
    "Run Benchmark": "Benchmark",
    "Run Demo Workflow": "Demo Workflow",
    "Export Summary CSV…": "Export Results CSV…",
}


class MainWindow(QMainWindow):
    def __init__(self, store: ResultsStore | None = None):
        super().__init__()
        self.setWindowTitle(APP_TITLE)
        self.store = store or ResultsStore()
        self.engine = Engine(self.store, self)
        self.router = JobRouter(self.engine, self)
        self.state = AppState(self)
        self.engine.worker.stored.connect(self.state.results_changed)
        self.last_error: str | None = None
        self._error_box: QMessageBox | None = None

        self.tabs = QTabWidget()
        self.models_tab = ModelsTab(self.state, self.router)
        self.quantize_tab = QuantizeTab(self.state, self.router)
        self.benchmark_tab = BenchmarkTab(self.state, self.router)
        self.evaluation_tab = EvaluationTab(self.state, self.router)
        self.inference_tab = InferenceTab(self.state, self.router)
        self.results_tab = ResultsTab(self.state, self.store)
        for tab, name in (
            (self.models_tab, "Models"),
            (self.quantize_tab, "Quantize"),
            (self.benchmark_tab, "Benchmark"),
            (self.evaluation_tab, "Evaluation"),
            (self.inference_tab, "Inference"),
            (self.results_tab, "Results"),
        ):
            self.tabs.addTab(tab, name)
        self.setCentralWidget(self.tabs)

        self.models_tab.model_selected.connect(self._model_selected)
        self.quantize_tab.variant_created.connect(self._variant_created)
        self.results_tab.open_evaluation.connect(self._open_evaluation)

        self._build_status_bar()
        self._build_menus()
        self.router.job_started.connect(self._job_started)
        self.router.job_progress.connect(self._job_progress)
        self.router.job_failed.connect(self._job_failed)
        self.router.job_cancelled.connect(self._job_cancelled)
        self.router.job_finished.connect(self._job_finished)

        # Checkpoint files dropped anywhere on the window open the import dialog (image drops go to the
        # Inference tab's drop zone, which takes them first).
        self.setAcceptDrops(True)

        self._restore_geometry()
        self.state.scan()
        self.models_tab.select(str(paths.DEFAULT_MODEL_DIR.resolve()))

        # Files from Finder / the Dock / the command line; appearance; shortcut hints.
        self.file_opener = FileOpener(self)
        app = QApplication.instance()
        if isinstance(app, StudioApplication):
            app.set_file_handler(self.open_paths)
        self.theme = ThemeController(app, self)
        self._build_view_menu()
        self.theme.apply()
        self._show_shortcuts_in_tooltips()

    # -- chrome ----------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_label = QLabel("Ready")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running job (Esc)")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_all)
        bar.addWidget(self.status_label, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)

    def _action(self, menu, text: str, shortcut, slot) -> QAction:
        act = QAction(text, self)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _build_view_menu(self) -> None:
        """Tabs on Ctrl+1…N (⌘1… on macOS) and the appearance: follow the system, light or dark."""
        mb = self.menuBar()
        v = QMenu("&View", self)
        help_menu = next((a for a in mb.actions() if a.text() == "&Help"), None)
        if help_menu:  # Help stays the last menu, as in every Mac app
            mb.insertMenu(help_menu, v)
        else:
            mb.addMenu(v)
        for i in range(self.tabs.count()):
            widget = self.tabs.widget(i)
            self._action(
                v,
                f"{self.tabs.tabText(i)} Tab",
                f"Ctrl+{i + 1}" if i < 9 else None,
                lambda _=False, w=widget: self.tabs.setCurrentWidget(w),
            )
        v.addSeparator()
        appearance = v.addMenu("Appearance")
        group = QActionGroup(self)
        names = {SYSTEM: "Follow System", LIGHT: "Light", DARK: "Dark"}
        self.appearance_actions = {}
        for pref in PREFERENCES:
            act = QAction(names[pref], self, checkable=True)
            act.setChecked(self.theme.preference() == pref)
            act.triggered.connect(lambda _=False, p=pref: self.theme.set_preference(p))
            group.addAction(act)
            appearance.addAction(act)
            self.appearance_actions[pref] = act
        # Cmd+. cancels on macOS, as Esc does everywhere.
        self.cancel_action.setShortcuts([QKeySequence(Qt.Key.Key_Escape), QKeySequence("Ctrl+.")])

    def _show_shortcuts_in_tooltips(self) -> None:
        """Menu commands and the tab buttons that do the same thing name their shortcut (⌘O on macOS)."""
        actions = {}
        for act in self.findChildren(QAction):
            if act.shortcut().isEmpty() or not act.text():
                continue
            keys = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            act.setToolTip(f"{act.text().replace('&', '')} ({keys})")
            actions.setdefault(act.text().replace("&", ""), keys)
        for button in self.findChildren(QPushButton):
            text = button.text().replace("&", "")
            keys = actions.get(BUTTON_ACTIONS.get(text, text))
            if not keys:
                continue
            tip = button.toolTip() or text
            if tip.endswith(")") and " (" in tip:  # replace a hard-coded "(Ctrl+…)" with the native text
                tip = tip[: tip.rindex(" (")]
            button.setToolTip(f"{tip} ({keys})")

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "Open Model Bundle…", QKeySequence.StandardKey.Open, self.models_tab.open_bundle)
        self._action(f, "Import Checkpoint…", "Ctrl+I", self.models_tab.import_checkpoint)
        self._action(f, "Open Image…", "Ctrl+Shift+O", self._open_image)
        f.addSeparator()
        self._action(f, "Export Results CSV…", "Ctrl+E", self._export)
        f.addSeparator()
        self._action(f, "Quit", QKeySequence.StandardKey.Quit, self.close)
        r = mb.addMenu("&Run")
        self._action(r, "Quantize", "Ctrl+Return", self._quantize)
        self._action(r, "Benchmark", "Ctrl+B", self._benchmark)
        self._action(r, "Evaluate Accuracy", "Ctrl+Shift+E", self._evaluate)
        self._action(r, "Evaluate Variants (per class, calibration, robustness)", "Ctrl+Alt+E", self._evaluate_variants)
        self._action(r, "Demo Workflow", "Ctrl+D", self._demo)
        r.addSeparator()
        self.cancel_action = self._action(r, "Cancel", Qt.Key.Key_Escape, self.cancel_all)
        h = mb.addMenu("&Help")
        self._action(h, "About MLX Quant Studio", None, self.about)

    def _restore_geometry(self) -> None:
        geometry = settings().value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1180, 780)
        self.tabs.setCurrentIndex(int(settings().value("window/tab", 0)))

    # -- cross-tab wiring ------------------------------------------------------------
    @Slot(str)
    def _model_selected(self, path: str) -> None:
        entry = self.state.entry(path)
        if entry and not entry.quantized:
            self.quantize_tab.set_source(path)
        self.benchmark_tab.set_model(path)

    @Slot(str)
    def _variant_created(self, path: str) -> None:
        self.inference_tab.set_variant(path)
        self.evaluation_tab.select_variant(path)
        self.benchmark_tab.set_model(path)

    def open_paths(self, paths: list[str]) -> None:
        """Open files from Finder, the Dock or the command line: images predict, models open or import."""
        self.file_opener.open(paths)

    def _open_image(self) -> None:
        self.tabs.setCurrentWidget(self.inference_tab)
        self.inference_tab.open_images()

    def _export(self) -> None:
        self.tabs.setCurrentWidget(self.results_tab)
        self.results_tab.export_summary()

    def _quantize(self) -> None:
        self.tabs.setCurrentWidget(self.quantize_tab)
        self.quantize_tab.start()

    def _benchmark(self) -> None:
        self.tabs.setCurrentWidget(self.benchmark_tab)
        self.benchmark_tab.start_benchmark()

    def _evaluate(self) -> None:
        self.tabs.setCurrentWidget(self.benchmark_tab)
        self.benchmark_tab.start_evaluate()

    def _evaluate_variants(self) -> None:
        self.tabs.setCurrentWidget(self.evaluation_tab)
        self.evaluation_tab.start()

    @Slot(object)
    def _open_evaluation(self, records) -> None:
        self.tabs.setCurrentWidget(self.evaluation_tab)
        self.evaluation_tab.show_records(records)

    def _demo(self) -> None:
        self.tabs.setCurrentWidget(self.benchmark_tab)
        self.benchmark_tab.start_demo()

    # -- jobs ------------------------------------------------------------------------
    @Slot()
    def cancel_all(self) -> None:
        self.router.cancel(None)
        self.status_label.setText("Cancelling …")

    @Slot(object, object)
    def _job_started(self, jid, title) -> None:
        self.status_label.setText(f"{title} …")
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)

    @Slot(object, object, object)
    def _job_progress(self, jid, fraction, message) -> None:
        self.progress.setValue(int(1000 * fraction))
        if message:
            self.status_label.setText(message)

    @Slot(object, object)
    def _job_failed(self, jid, message) -> None:
        self.show_error("Job failed", message)

    @Slot(object)
    def _job_cancelled(self, jid) -> None:
        self.status_label.setText("Cancelled")

    @Slot(object)
    def _job_finished(self, jid) -> None:
        if not self.engine.busy():
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
            if self.status_label.text().endswith("…"):
                self.status_label.setText("Ready")

    def show_error(self, title: str, message: str) -> None:
        """A non-blocking error dialog; the app keeps running."""
        self.last_error = message
        self.status_label.setText(message.splitlines()[0] if message else title)
        if self._error_box is not None:
            self._error_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._error_closed)
        self._error_box = box
        box.open()

    @Slot()
    def _error_closed(self) -> None:
        self._error_box = None

    def about(self) -> QMessageBox:
        """Versions of the app, MLX and the stack under it, with a button that copies them for bug reports."""
        info = about_info()
        rows = "".join(f"<tr><td>{k}</td><td>&nbsp;{v}</td></tr>" for k, v in info.items() if k != "App")
        box = QMessageBox(self)
        box.setWindowTitle("About MLX Quant Studio")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        icon = QPixmap(str(ICON_PATH))
        if not icon.isNull():
            box.setIconPixmap(
                icon.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            )
        box.setText(
            f"<h3>MLX Quant Studio {engine.__version__}</h3>"
            "How small and fast can this model get on my Mac, and what does it cost in accuracy?"
        )
        box.setInformativeText(f"<table>{rows}</table>")
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        copy = box.addButton("Copy Versions", QMessageBox.ButtonRole.ActionRole)
        text = "\n".join(f"{k}: {v}" for k, v in info.items())
        copy.clicked.connect(lambda: QApplication.clipboard().setText(text))
        box.addButton(QMessageBox.StandardButton.Ok)
        box.open()
        return box

    # -- dropped checkpoint files ----------------------------------------------------
    @staticmethod
    def _usable_files(event) -> list[str]:
        """Dropped files the app can use: images, model folders, checkpoints (engine.kinds.files)."""
        from engine.kinds.files import classify

        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        return [f for f in files if classify(f) is not None]

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if self._usable_files(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802
        """A drop anywhere in the window goes where it belongs, as files opened from Finder do:
        images are predicted in Inference, folders open in Models, checkpoints open the importer."""
        files = self._usable_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        # After the drop returns, so the drag source is not blocked by a modal import dialog.
        from PySide6.QtCore import QTimer

        QTimer.singleShot(0, lambda: self.open_paths(files))

    # -- shutdown --------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/tab", self.tabs.currentIndex())
        s.sync()
        app = QApplication.instance()
        if isinstance(app, StudioApplication) and app.file_handler() == self.open_paths:
            app.set_file_handler(None)
        for plot in (self.benchmark_tab.latency_plot, self.benchmark_tab.memory_plot):
            plot.stop()
        self.inference_tab.serve_panel.shutdown()
        self.engine.shutdown()
        super().closeEvent(event)


def about_info() -> dict[str, str]:
    """Name -> version or place, for the About box and bug reports. Reads no MLX arrays."""
    import platform
    from importlib import metadata

    import mlx.core as mx  # version and default device only
    import numpy
    import pyqtgraph
    import PySide6
    from PySide6.QtCore import qVersion

    def dist_version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    device = mx.default_device()
    system = (
        f"macOS {platform.mac_ver()[0]}" if sys.platform == "darwin" else f"{platform.system()} {platform.release()}"
    )
    return {
        "App": engine.__version__,
        "MLX": f"{mx.__version__} ({getattr(device.type, 'name', device)})",
        "mlx-lm": dist_version("mlx-lm"),
        "Qt": f"{qVersion()} (PySide6 {PySide6.__version__})",
        "pyqtgraph": pyqtgraph.__version__,
        "NumPy": numpy.__version__,
        "Python": platform.python_version(),
        "System": f"{system} {platform.machine()}",
        "Build": "app bundle (PyInstaller)" if getattr(sys, "frozen", False) else "from source",
        "Data folder": str(paths.user_data_dir()),
    }


def run(argv: list[str]) -> int:
    app = QApplication.instance() or StudioApplication([sys.argv[0], *argv])
    app.setApplicationName(APP_TITLE)
    app.setOrganizationName("MLXQuantStudio")
    if ICON_PATH.exists():
        app.setWindowIcon(QIcon(str(ICON_PATH)))
    if "--selftest" in argv:
        from gui.selftest import run_selftest

        return run_selftest(app, argv)
    window = MainWindow()
    window.show()
    # Files named on the command line open like files from Finder (macOS adds -psn_… when launched there).
    files = [a for a in argv if not a.startswith("-")]
    if files:
        window.open_paths(files)
    # Smoke tests and screenshots close the app after a delay.
    quit_after = os.environ.get("MQS_AUTOQUIT_MS")
    if quit_after:
        QTimer.singleShot(int(quit_after), window.close)
    return app.exec()


def main() -> None:
    sys.exit(run(sys.argv[1:]))
