"""What a Mac user expects: appearance that follows light/dark, shortcuts, About, remembered geometry,
and a --selftest that exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QKeySequence, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox

from gui.theme import DARK, LIGHT, PLOT_COLORS, SYSTEM

ROOT = Path(__file__).resolve().parents[2]


def window_color(app) -> str:
    return app.palette().color(QPalette.ColorRole.Window).name()


def plot_state(plot) -> tuple[str, str, str]:
    item = plot.getPlotItem()
    return (
        plot.backgroundBrush().color().name(),
        item.getAxis("left").textPen().color().name(),
        item.titleLabel.opts["color"],
    )


def test_appearance_switches_palette_and_plots_and_is_remembered(window, tmp_path):
    app = QApplication.instance()
    theme = window.theme
    plot = window.benchmark_tab.latency_plot
    assert theme.preference() == SYSTEM and theme.scheme == LIGHT  # offscreen reports a light system
    light = (window_color(app), plot_state(plot))
    assert light[1] == (PLOT_COLORS[LIGHT].background, PLOT_COLORS[LIGHT].foreground, PLOT_COLORS[LIGHT].foreground)

    window.appearance_actions[DARK].trigger()
    assert theme.scheme == DARK
    assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
    assert app.palette().color(QPalette.ColorRole.WindowText).lightness() > 180
    dark = PLOT_COLORS[DARK]
    assert plot_state(plot) == (dark.background, dark.foreground, dark.foreground)
    assert plot_state(window.benchmark_tab.memory_plot)[0] == dark.background
    if os.environ.get("MQS_SCREENSHOTS"):
        window.grab().save(str(Path(os.environ["MQS_SCREENSHOTS"]) / "dark.png"))

    from gui.state import settings

    assert settings().value("appearance/scheme") == DARK
    window.appearance_actions[SYSTEM].trigger()
    assert (window_color(app), plot_state(plot)) == light
    assert window.appearance_actions[SYSTEM].isChecked() and not window.appearance_actions[DARK].isChecked()


def test_color_scheme_env_pins_the_scheme(window, monkeypatch):
    monkeypatch.setenv("MQS_COLOR_SCHEME", "dark")
    assert window.theme.apply() == DARK
    monkeypatch.delenv("MQS_COLOR_SCHEME")
    assert window.theme.apply() == LIGHT


def test_shortcuts_for_open_import_run_cancel_export_are_unique_and_shown(window):
    actions = {a.text(): a for a in window.findChildren(type(window.cancel_action)) if a.text()}
    wanted = {
        "Open Model Bundle…": QKeySequence.StandardKey.Open,
        "Import Checkpoint…": "Ctrl+I",
        "Open Image…": "Ctrl+Shift+O",
        "Quantize": "Ctrl+Return",
        "Benchmark": "Ctrl+B",
        "Evaluate Accuracy": "Ctrl+Shift+E",
        "Export Results CSV…": "Ctrl+E",
    }
    for text, keys in wanted.items():
        assert actions[text].shortcut() == QKeySequence(keys), text
    assert [s.toString() for s in window.cancel_action.shortcuts()] == ["Esc", "Ctrl+."]
    bound = [s.toString() for a in actions.values() for s in a.shortcuts()]
    assert len(bound) == len(set(bound)), sorted(bound)
    native = actions["Benchmark"].shortcut().toString(QKeySequence.SequenceFormat.NativeText)
    assert window.benchmark_tab.bench_btn.toolTip().endswith(f"({native})")
    assert window.quantize_tab.run_btn.toolTip().count("(") == 1  # the hard-coded hint was replaced, not doubled
    assert [a.text() for a in window.menuBar().actions()] == ["&File", "&Run", "&View", "&Help"]
    # Tabs are one keystroke away.
    actions["Inference Tab"].trigger()
    assert window.tabs.currentWidget() is window.inference_tab


def test_about_box_names_app_and_mlx_versions(window, qtbot):
    import mlx.core as mx

    import engine

    box = window.about()
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert f"MLX Quant Studio {engine.__version__}" in box.text()
    assert mx.__version__ in box.informativeText() and "PySide6" in box.informativeText()
    copy = next(b for b in box.buttons() if b.text() == "Copy Versions")
    copy.click()
    assert f"MLX: {mx.__version__}" in QApplication.clipboard().text()


def test_window_geometry_and_tab_are_restored(qtbot, window):
    from gui.app import MainWindow

    # The offscreen screen is 800 px wide, narrower than the window's minimum, and restoreGeometry()
    # fits a window to its screen; so the height tells whether the geometry came back.
    height = window.minimumSizeHint().height() + 41  # any height the window can take
    window.resize(window.width(), height)
    window.tabs.setCurrentWidget(window.results_tab)
    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.height() == height
    assert again.tabs.currentWidget() is again.results_tab
    again.close()


def test_folder_dialogs_start_in_the_last_folder_used_for_that_kind(window, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog

    starts, answers = [], [str(tmp_path / "sets" / "digits"), "", ""]
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", lambda parent, caption, start: starts.append(start) or answers.pop(0)
    )
    bench = window.benchmark_tab
    bench._browse_data()
    assert starts[0] == str(Path.home()) and bench.data.text() == str(tmp_path / "sets" / "digits")
    bench._browse_data()  # cancelled: the field keeps its dataset
    assert starts[1] == str(tmp_path / "sets") and bench.data.text() == str(tmp_path / "sets" / "digits")
    window.models_tab.open_bundle()  # bundles remember their own folder, not the datasets'
    assert starts[2] == str(Path.home())


@pytest.mark.timeout(60)
def test_selftest_exits_zero_offscreen(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MQS_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", str(ROOT / "main.py"), "--selftest"],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10/10 samples correct" in proc.stdout and proc.stdout.rstrip().endswith("selftest passed")
    assert "Traceback" not in proc.stderr
    bad = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--selftest", "--device", "tpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
