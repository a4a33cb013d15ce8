"""A representative part of the bad-input corpus through the GUI: one message naming the file,
the engine thread lives on, and the next job runs."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDialog

from tests.gui.test_app import drop_files, idle
from tests.reliability import corpus


def wait_for_error(qtbot, window, name: str) -> str:
    qtbot.waitUntil(lambda: window.last_error is not None and name in window.last_error and idle(window), timeout=20000)
    message = window.last_error
    window.last_error = None
    assert "Traceback" not in message
    return message


def test_bad_and_unusual_images_dropped_on_inference(qtbot, window, corpus_dir):
    inf = window.inference_tab
    for case, (make, phrase) in sorted(corpus.BAD_IMAGES.items()):
        path = make(corpus_dir)
        drop_files(inf.drop, [path])
        message = wait_for_error(qtbot, window, path.name)
        assert phrase in message, (case, message)
        assert inf.outcome is None
    unusual = [make(corpus_dir) for make in corpus.UNUSUAL_IMAGES.values()]
    drop_files(inf.drop, unusual)
    qtbot.waitUntil(lambda: inf.outcome is not None and idle(window), timeout=20000)
    assert [str(p) for p in unusual] == list(inf.outcome.inputs)
    assert all(preds[0][0].label == "1" for preds in inf.outcome.predictions)
    assert window.engine.worker is not None and not window.progress.isVisible()


def test_bad_checkpoints_imported_through_the_dialog(qtbot, window, corpus_dir, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from gui.widgets import import_dialog as import_dialog_module

    chosen = {}

    def accept(dialog):
        dialog.arch.setCurrentText(chosen["arch"])
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(import_dialog_module.ImportDialog, "exec", accept)
    sentinel = tmp_path / "payload-ran"
    cases = [
        (corpus.truncated_safetensors(corpus_dir), "small_cnn", "truncated or corrupt"),
        (corpus.empty_safetensors(corpus_dir), "small_cnn", "empty"),
        (corpus.default_weights_path(), "resnet18", "do not fit"),
        (corpus.pickle_payload_pth(corpus_dir, sentinel), "small_cnn", "refused to unpickle"),
        (corpus.pickle_payload_torch_zip(corpus_dir, sentinel), "small_cnn", "refused to unpickle"),
    ]
    before = len(window.state.entries())
    for path, arch, phrase in cases:
        chosen["arch"] = arch
        window.models_tab.import_file(str(path))
        assert phrase in wait_for_error(qtbot, window, path.name)
        assert not sentinel.exists(), "the pickle payload ran"
        assert len(window.state.entries()) == before
    # The app keeps working: a good checkpoint at an odd path imports.
    good = corpus_dir / "gute gewichte ü.safetensors"
    good.write_bytes(corpus.default_weights_path().read_bytes())
    chosen["arch"] = "small_cnn"
    window.models_tab.import_file(str(good))
    qtbot.waitUntil(lambda: len(window.state.entries()) == before + 1 and idle(window), timeout=20000)
    assert window.last_error is None


def test_bad_datasets_in_evaluate_then_a_good_one(qtbot, window, corpus_dir):
    b = window.benchmark_tab
    empty_class = corpus.class_folders(corpus_dir / "leere klasse", {str(i): (0 if i == 4 else 1) for i in range(10)})
    three = corpus.class_folders(corpus_dir / "drei ü", {"a": 1, "b": 1, "c": 1})
    for data, name, phrase in [(empty_class, "leere klasse", "holds no images"), (three, "drei ü", "has 10 classes")]:
        b.data.setText(str(data))
        b.start_evaluate()
        assert phrase in wait_for_error(qtbot, window, name)
        assert b.eval_btn.isEnabled() and b.bench_btn.isEnabled() and not b.cancel_btn.isEnabled()
        assert not window.progress.isVisible()
    good = corpus.class_folders(corpus_dir / "zehn ü", {str(i): 1 for i in range(10)})
    b.data.setText(str(good))
    b.start_evaluate()
    qtbot.waitUntil(lambda: idle(window) and "accuracy" in b.status.text().lower(), timeout=20000)
    assert window.last_error is None
