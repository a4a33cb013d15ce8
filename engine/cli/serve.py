"""`serve`: the inference service in the foreground (an image classifier or a language model)."""

from __future__ import annotations

import argparse
import signal
import sys

from engine.core.argtypes import (
    nonneg_float,
    positive_float,
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="bundle directory or 'default'; or an mlx-lm model folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-body-mb", type=positive_float, default=16.0, help="largest request body (default 16)")
    p.add_argument("--batch-window-ms", type=nonneg_float, default=2.0, help="classifier micro-batch window")
    p.add_argument("--max-batch", type=positive_int, default=32, help="largest classifier batch")
    p.add_argument("--max-tokens-limit", type=positive_int, default=4096, help="most tokens a completion may ask")


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
    return 0


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
