"""`serve`: the inference service in the foreground (an image classifier or a language model)."""

from __future__ import annotations

import argparse
import signal
import sys

from engine.core.argtypes import nonneg_float, positive_float, positive_int
from engine.serve.security_cli import add_security_options, security_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="bundle directory or 'default'; or an mlx-lm model folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-body-mb", type=positive_float, default=16.0, help="largest request body (default 16)")
    p.add_argument("--batch-window-ms", type=nonneg_float, default=2.0, help="classifier micro-batch window")
    p.add_argument("--max-batch", type=positive_int, default=32, help="largest classifier batch")
    p.add_argument("--max-tokens-limit", type=positive_int, default=4096, help="most tokens a completion may ask")
    add_security_options(p)


def run(args) -> int:
    from engine.serve.config import ServeSettings, require_serve_modules

    require_serve_modules()  # before any model loads: a one-line error with the pip command
    from engine.serve.server import RUNNING, ServiceServer

    settings = ServeSettings(
        model=args.model,
        host=args.host,
        port=args.port,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        batch_window_ms=args.batch_window_ms,
        max_batch=args.max_batch,
        max_tokens_limit=args.max_tokens_limit,
        **security_settings(args),
    )

    def on_status(status) -> None:
        if status.state == RUNNING:
            print(f"serving {status.model} ({status.kind}) at {status.url}  (Ctrl+C stops)", flush=True)

    server = ServiceServer(settings, on_status)
    if server.warning:
        print(server.warning, file=sys.stderr, flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops as cleanly as Ctrl+C
    try:
        server.serve_forever()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)
    _exit_promptly()
    return 0


# The CLI process ends right after a clean stop: interpreter teardown of native libraries loaded
# alongside the model (torch, when transformers finds it) can take seconds after Ctrl+C.
FAST_EXIT = True


def _exit_promptly() -> None:
    import os
    import threading

    engine_threads = [t for t in threading.enumerate() if t.name.startswith("mqs-serve") and t.is_alive()]
    if FAST_EXIT and threading.current_thread() is threading.main_thread() and not engine_threads:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got '{text}'") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value
