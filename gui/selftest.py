"""``--selftest``: build the main window, run one inference on the engine thread, print, exit.

It checks what a packaged app most often gets wrong: Qt and its platform
plugin load, the GUI modules import, MLX loads (and, on macOS, finds its
metallib beside the libmlx it loaded), the shipped model and samples are
there, and the model gives the right answers. Exit 0 on success, 1 with the
reason on failure, 2 for bad arguments. Works offscreen
(``QT_QPA_PLATFORM=offscreen``); the user's settings and results are not
touched (a temporary data folder is used unless ``MQS_DATA_DIR`` is set).

    python main.py --selftest [--device cpu|gpu] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from PySide6.QtCore import QTimer, qVersion
from PySide6.QtWidgets import QApplication

from engine.core.paths import DATA_DIR_ENV
from engine.jobs.selftest import SelfTestJob, SelfTestReport


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mlx-quant-studio --selftest", description="Self-test the app and exit.")
    parser.add_argument("--selftest", action="store_true", required=True)
    parser.add_argument("--device", choices=("cpu", "gpu"), help="run MLX on this device (default: MLX's default)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    return parser.parse_args(argv)


def _say(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    if stream is not None:  # a windowed frozen app may have no console
        print(text, file=stream, flush=True)


def run_selftest(app: QApplication, argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    scratch = None
    if not os.environ.get(DATA_DIR_ENV):
        scratch = tempfile.mkdtemp(prefix="mqs-selftest-")
        os.environ[DATA_DIR_ENV] = scratch
    try:
        return _run(app, args)
    finally:
        if scratch:
            os.environ.pop(DATA_DIR_ENV, None)
            shutil.rmtree(scratch, ignore_errors=True)


def _run(app: QApplication, args: argparse.Namespace) -> int:
    from gui.app import MainWindow

    t0 = time.perf_counter()
    window = MainWindow()
    _say(
        f"Qt {qVersion()} ({app.platformName()} platform, {app.style().name()} style, {window.theme.scheme} scheme); "
        f"main window built in {time.perf_counter() - t0:.2f} s"
    )
    outcome = {"code": 1}

    def finish(code: int) -> None:
        outcome["code"] = code
        app.exit(code)

    def on_result(report: SelfTestReport) -> None:
        for line in report.lines():
            _say(line, err=not report.passed and line.startswith(("PROBLEM", "ERROR", "selftest FAILED")))
        finish(0 if report.passed else 1)

    def on_failed(message: str) -> None:
        _say(f"ERROR: {message}\nselftest FAILED", err=True)
        finish(1)

    def on_timeout() -> None:
        _say(f"ERROR: no answer from the engine thread in {args.timeout:g} s\nselftest FAILED", err=True)
        window.router.cancel(None)
        finish(1)

    window.router.submit(SelfTestJob(device=args.device), on_result=on_result, on_failed=on_failed)
    timer = QTimer(window)
    timer.setSingleShot(True)
    timer.timeout.connect(on_timeout)
    timer.start(int(args.timeout * 1000))
    app.exec()
    timer.stop()
    window.close()  # stops the engine thread
    return outcome["code"]
