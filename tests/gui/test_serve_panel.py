"""The Inference tab's HTTP service toggle: start, answer, stop, and stop on close."""

from __future__ import annotations

import threading

import pytest

from engine.core.paths import SAMPLES_DIR


@pytest.fixture
def httpx():
    """The tests that serve need the 'serve' extra and an HTTP client; the last test needs neither."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("python_multipart")
    return pytest.importorskip("httpx")


def _serve_threads():
    return [t for t in threading.enumerate() if t.name.startswith("mqs-serve") and t.is_alive()]


def test_toggle_serves_the_chosen_model_and_stops_cleanly(httpx, window, qtbot):
    panel = window.inference_tab.serve_panel
    window.tabs.setCurrentWidget(window.inference_tab)
    assert panel.model.currentData() is not None
    panel.port.setValue(0)  # any free port
    qtbot.mouseClick(panel.toggle, qtbot_button())
    qtbot.waitUntil(lambda: panel.status is not None and panel.status.state == "running", timeout=30000)
    url = panel.status.url
    assert url.startswith("http://127.0.0.1:") and url in panel.label.text()
    assert panel.toggle.text() == "Stop serving" and not panel.model.isEnabled()
    sample = SAMPLES_DIR / "digit_4.png"
    r = httpx.post(f"{url}/v1/classify", files={"file": (sample.name, sample.read_bytes())}, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "4"
    # The GUI's own engine thread stays free while the service runs.
    assert not window.engine.busy()

    qtbot.mouseClick(panel.toggle, qtbot_button())
    qtbot.waitUntil(lambda: panel.status.state == "stopped", timeout=20000)
    qtbot.waitUntil(lambda: not _serve_threads(), timeout=5000)
    assert panel.toggle.text() == "Start serving" and panel.model.isEnabled() and panel.label.text() == "Stopped"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)


def test_closing_the_window_stops_a_running_service(httpx, window, qtbot):
    panel = window.inference_tab.serve_panel
    panel.port.setValue(0)
    panel.toggle.click()
    qtbot.waitUntil(lambda: panel.status is not None and panel.status.state == "running", timeout=30000)
    url = panel.status.url
    window.close()
    assert not _serve_threads()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)


def test_a_taken_port_is_reported_and_the_toggle_resets(httpx, window, qtbot):
    import socket

    panel = window.inference_tab.serve_panel
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        panel.port.setValue(taken.getsockname()[1])
        panel.toggle.click()
    assert not panel.toggle.isChecked() and not panel.is_running()
    assert "cannot listen" in window.last_error


def test_without_the_extra_the_panel_says_what_to_install(qtbot, monkeypatch):
    import gui.widgets.serve_panel as sp
    from gui.state import AppState

    monkeypatch.setattr(sp, "missing_serve_modules", lambda: ["fastapi", "uvicorn"])
    panel = sp.ServePanel(AppState())
    qtbot.addWidget(panel)
    assert not panel.toggle.isEnabled()
    assert 'pip install "mlx-quant-studio[serve]"' in panel.label.text()


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
