"""Files opened from Finder / the Dock (QFileOpenEvent) and the command line reach the right tab."""

from __future__ import annotations

import shutil

from PySide6.QtCore import QUrl
from PySide6.QtGui import QFileOpenEvent
from PySide6.QtWidgets import QApplication, QDialog

from engine.core import paths
from gui.file_open import StudioApplication

SAMPLES = paths.SAMPLES_DIR


def send_file_open(path) -> None:
    """What the Cocoa platform plugin does when Finder asks the app to open a document."""
    QApplication.sendEvent(QApplication.instance(), QFileOpenEvent(QUrl.fromLocalFile(str(path))))


def test_the_test_app_is_the_studio_application(qapp):
    assert isinstance(qapp, StudioApplication)


def test_images_opened_from_finder_are_predicted_in_one_batch(qtbot, window):
    routed = []
    window.file_opener.routed.connect(routed.append)
    # Finder sends one event per selected file; they arrive before the event loop turns.
    send_file_open(SAMPLES / "digit_3.png")
    send_file_open(SAMPLES / "digit_7.png")
    inference = window.inference_tab
    qtbot.waitUntil(lambda: inference.outcome is not None, timeout=20000)
    assert window.tabs.currentWidget() is inference
    assert [p.rsplit("/", 1)[-1] for p in inference.outcome.inputs] == ["digit_3.png", "digit_7.png"]
    assert inference.table_a.labels()[0] == "3"
    assert len(routed) == 1 and len(routed[0]["image"]) == 2


def test_a_bundle_folder_opens_in_models(qtbot, window, tmp_path):
    bundle = tmp_path / "my-bundle"
    shutil.copytree(paths.DEFAULT_MODEL_DIR, bundle)
    window.tabs.setCurrentWidget(window.inference_tab)
    send_file_open(bundle)
    qtbot.waitUntil(lambda: window.models_tab.current_path() == str(bundle.resolve()), timeout=5000)
    assert window.tabs.currentWidget() is window.models_tab
    assert window.state.entry(str(bundle.resolve())) is not None


def test_a_checkpoint_opens_the_import_dialog_with_the_file_filled_in(qtbot, window, tmp_path, monkeypatch):
    from gui.tabs import models

    seen = []

    def fake_exec(dialog):
        seen.append(dialog.weights.text())
        return QDialog.DialogCode.Rejected

    monkeypatch.setattr(models.ImportDialog, "exec", fake_exec)
    ckpt = tmp_path / "resnet.safetensors"
    ckpt.write_bytes(b"\0")
    send_file_open(ckpt)
    qtbot.waitUntil(lambda: seen == [str(ckpt)], timeout=5000)
    assert window.tabs.currentWidget() is window.models_tab


def test_an_unusable_file_shows_one_line_naming_it(qtbot, window, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    send_file_open(notes)
    send_file_open(tmp_path / "gone.png")
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=5000)
    lines = window.last_error.splitlines()
    assert lines[0].startswith(str(notes)) and "not an image or model file" in lines[0]
    assert lines[1] == f"{tmp_path / 'gone.png'}: no such file or folder"


def test_files_that_arrive_before_the_window_are_delivered_when_it_registers(qapp, tmp_path):
    previous = qapp.file_handler()
    qapp.set_file_handler(None)
    try:
        send_file_open(tmp_path / "early.png")
        got = []
        qapp.set_file_handler(got.extend)
        assert got == [str(tmp_path / "early.png")]
        send_file_open(tmp_path / "later.png")
        assert got[-1] == str(tmp_path / "later.png")
    finally:
        qapp.set_file_handler(previous)


def test_command_line_files_are_routed_like_finder_files(qapp, monkeypatch, tmp_path):
    import gui.app

    opened = []
    monkeypatch.setattr(gui.app.MainWindow, "open_paths", lambda self, p: opened.append(list(p)))
    monkeypatch.setenv("MQS_AUTOQUIT_MS", "200")
    image = str(SAMPLES / "digit_1.png")
    # macOS adds -psn_… when Finder launches an app; it is not a file.
    assert gui.app.run([image, "-psn_0_12345"]) == 0
    assert opened == [[image]]


def test_main_routes_an_existing_path_to_the_app():
    import main

    assert main.wants_gui([str(SAMPLES / "digit_1.png")])
    assert main.wants_gui(["--selftest"])
    assert not main.wants_gui(["info", "--model", "default"])
