"""Run the service under uvicorn: in the foreground (the CLI) or on background threads (the GUI, tests).

The listening socket is bound before anything else, so a port in use is reported at once;
the model loads on the service's own engine thread, and only then does uvicorn start
accepting requests on that socket.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from engine.core.errors import UserError
from engine.serve.config import ServeSettings, exposure_warning, require_serve_modules, url_for
from engine.serve.worker import InferenceWorker

STARTING, RUNNING, STOPPING, STOPPED, FAILED = "starting", "running", "stopping", "stopped", "failed"


@dataclass(frozen=True)
class ServerStatus:
    state: str  # starting, running, stopping, stopped or failed
    url: str | None = None
    model: str | None = None
    kind: str | None = None
    message: str = ""
    warning: str | None = None


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free port).

    Raises:
        UserError: the address cannot be resolved or the port is taken.
    """
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
            0
        ]
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve the host '{host}' ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def _uvicorn_server(app, quiet: bool, on_started: Callable[[], None], on_shutdown: Callable[[], None]):
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                on_started()

        async def shutdown(self, sockets=None):
            on_shutdown()  # end running generations first, so open streams finish promptly
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning" if quiet else "info",
        access_log=not quiet,
        log_config=None if quiet else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=3,
    )
    return _Server(config)


class ServiceServer:
    """One model served over HTTP.

    ``start()`` returns at once (the model loads on the engine thread, uvicorn runs on its
    own thread); ``on_status`` is called from those threads with every ``ServerStatus``.
    ``serve_forever()`` runs uvicorn on the calling thread instead (the CLI; Ctrl+C stops it).
    """

    def __init__(self, settings: ServeSettings, on_status: Callable[[ServerStatus], None] | None = None):
        settings.validate()
        self.settings = settings
        self._on_status = on_status
        self._status = ServerStatus(STOPPED)
        self._cond = threading.Condition()
        self._worker: InferenceWorker | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._stop_requested = False
        self.url: str | None = None
        self.warning = exposure_warning(settings.host, settings.api_key)

    # -- status ------------------------------------------------------------------------------
    @property
    def status(self) -> ServerStatus:
        return self._status

    @property
    def worker(self) -> InferenceWorker | None:
        return self._worker

    def _report(self, state: str, message: str = "", info=None) -> None:
        with self._cond:
            old = self._status
            self._status = ServerStatus(
                state,
                self.url,
                info.id if info is not None else old.model,
                info.kind if info is not None else old.kind,
                message,
                self.warning,
            )
            self._cond.notify_all()
        if self._on_status is not None:
            self._on_status(self._status)

    def wait(self, timeout: float = 60.0) -> ServerStatus:
        """Wait until the server runs, failed or stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._status.state in (RUNNING, FAILED, STOPPED), timeout)
            return self._status

    # -- lifecycle -------------------------------------------------------------------------------
    def _prepare(self):
        require_serve_modules()
        self._sock = bind_socket(self.settings.host, self.settings.port)
        self.url = url_for(self.settings.host, self._sock.getsockname()[1])
        st = self.settings
        self._worker = InferenceWorker(
            st.model, batch_window_ms=st.batch_window_ms, max_batch=st.max_batch, max_queue=st.max_queue
        )
        self._report(STARTING, f"loading {st.model}")
        return self._worker.start()

    def start(self) -> None:
        """Bind, load the model and serve, in the background.

        Raises:
            UserError: the 'serve' extra is missing, or the port cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("the server was already started")
        loaded = self._prepare()
        self._thread = threading.Thread(target=self._run, args=(loaded,), name="mqs-serve-http", daemon=True)
        self._thread.start()

    def _run(self, loaded) -> None:
        from engine.serve.app import create_app

        try:
            info = loaded.result()
            server = _uvicorn_server(
                create_app(self._worker, self.settings),
                quiet=True,
                on_started=lambda: self._report(RUNNING, f"serving {info.id}", info),
                on_shutdown=self._worker.request_stop,
            )
        except Exception as exc:
            self._sock.close()
            self._worker.stop()
            self._report(FAILED, _one_line(exc))
            return
        with self._cond:
            if self._stop_requested:
                self._sock.close()
                return
            self._server = server
        try:
            server.run(sockets=[self._sock])
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot start
            self._report(FAILED, _one_line(exc))

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop serving, end running requests and unload the model; True if every thread ended in time."""
        with self._cond:
            if self._status.state in (STOPPED, FAILED) and self._thread is None:
                return True
            self._stop_requested = True
            server = self._server
        self._report(STOPPING, "stopping")
        if self._worker is not None:
            self._worker.request_stop()
        if server is not None:
            server.should_exit = True
        ok = True
        if self._thread is not None:
            self._thread.join(timeout)
            ok = not self._thread.is_alive()
        if self._worker is not None:
            ok = self._worker.stop(timeout) and ok
        self._thread = None
        self._report(STOPPED, "stopped")
        return ok

    def serve_forever(self) -> None:
        """Load the model and serve on the calling (main) thread until Ctrl+C or SIGTERM.

        Raises:
            UserError: the 'serve' extra is missing, the port cannot be bound, the model cannot load.
        """
        from engine.serve.app import create_app

        loaded = self._prepare()
        try:
            info = loaded.result()
        except BaseException:
            self._sock.close()
            self._worker.stop()
            raise
        try:
            server = _uvicorn_server(
                create_app(self._worker, self.settings),
                quiet=False,
                on_started=lambda: self._report(RUNNING, f"serving {info.id}", info),
                on_shutdown=self._worker.request_stop,
            )
            server.run(sockets=[self._sock])
        except KeyboardInterrupt:
            pass
        finally:
            self._worker.stop()
            self._report(STOPPED, "stopped")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first if isinstance(exc, UserError) else f"{type(exc).__name__}: {first}"
