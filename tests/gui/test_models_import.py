"""Models tab: drop a checkpoint on the window, import it on the engine thread, edit its preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QDialog

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from gui.widgets import import_dialog as import_dialog_module  # noqa: E402
from gui.widgets import preprocessing_editor as editor_module  # noqa: E402
from gui.widgets.import_dialog import FROM_FILE, ImportDialog  # noqa: E402


def tiny_onnx(path: Path) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(0, 0.3, (3, 4)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1, name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w, fc],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def drop(window, files: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)


def test_import_dialog_validates_and_builds_the_job(qtbot, tmp_path):
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"x")
    d = ImportDialog(path=str(ckpt))
    qtbot.addWidget(d)
    d.arch.setCurrentText(FROM_FILE)
    assert "choose one" in d.validate()
    d.arch.setCurrentText("resnet50")
    d.preset.setCurrentText("inception")
    d.overrides.setText("interpolation=bicubic")
    d.input_size.setText("160")
    d.labels.setText("a, b")
    assert d.validate() is None
    job = d.job(tmp_path)
    assert (job.arch, job.preprocess, job.input_size, job.labels) == (
        "resnet50", "inception,interpolation=bicubic", "160", ("a", "b"),
    )  # fmt: skip
    d.overrides.setText("warp=3")
    assert "unknown preprocessing key 'warp'" in d.validate()
    onnx_file = tiny_onnx(tmp_path / "m.onnx")
    d.weights.setText(str(onnx_file))
    assert d.arch.currentText() == FROM_FILE and not d.arch.isEnabled()


def test_drop_imports_on_the_engine_thread_then_edit_preprocessing(qtbot, window, tmp_path, monkeypatch):
    path = tiny_onnx(tmp_path / "tiny.onnx")

    def accept_import(dialog):
        dialog.labels.setText("cat, dog, cow")
        dialog.preset.setCurrentText("imagenet")
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(import_dialog_module.ImportDialog, "exec", accept_import)
    drop(window, [path, tmp_path / "notes.txt"])
    assert window.tabs.currentWidget() is window.models_tab
    qtbot.waitUntil(lambda: any(e.name == "tiny" for e in window.state.entries()), timeout=20000)
    entry = next(e for e in window.state.entries() if e.name == "tiny")
    qtbot.waitUntil(lambda: window.models_tab.current_path() == entry.path, timeout=5000)
    qtbot.waitUntil(lambda: "MACs" in window.models_tab.summary.text(), timeout=10000)
    text = window.models_tab.summary.text()
    assert "cat, dog, cow" in text and "16×16 RGB" in text
    assert window.models_tab.edit_btn.isEnabled()

    def accept_edit(editor):
        editor.height.setValue(20)
        editor.scale.setCurrentIndex(editor.scale.findData("symmetric"))
        editor.mean.setText("")
        editor.std.setText("")
        editor.labels.setPlainText("koala\nemu\nwombat")
        editor.accept()
        return QDialog.DialogCode.Accepted if editor.result_values() else QDialog.DialogCode.Rejected

    monkeypatch.setattr(editor_module.PreprocessingEditor, "exec", accept_edit)
    window.models_tab.edit_preprocessing()
    cfg_path = Path(entry.path) / "config.json"
    qtbot.waitUntil(lambda: json.loads(cfg_path.read_text())["labels"][0] == "koala", timeout=10000)
    cfg = json.loads(cfg_path.read_text())
    assert cfg["preprocessing"]["input_size"] == [20, 16] and cfg["preprocessing"]["scale"] == "symmetric"
    qtbot.waitUntil(lambda: "koala" in window.models_tab.summary.text(), timeout=10000)


def test_a_broken_file_gives_an_error_naming_it(qtbot, window, tmp_path, monkeypatch):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 20)
    monkeypatch.setattr(import_dialog_module.ImportDialog, "exec", lambda d: QDialog.DialogCode.Accepted)
    drop(window, [bad])
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=15000)
    assert "broken.onnx" in window.last_error
    assert window.engine.worker is not None  # the engine lives on


def test_models_tab_screenshot(qtbot, window, tmp_path):
    window.resize(1100, 700)
    window.show()
    qtbot.waitUntil(lambda: "MACs" in window.models_tab.summary.text(), timeout=15000)
    window.grab().save(str(tmp_path / "models.png"))
    assert (tmp_path / "models.png").stat().st_size > 0
