"""Settings of the inference service and the checks that need no FastAPI."""

from __future__ import annotations

import importlib.util
import ipaddress
from dataclasses import dataclass

from engine.core.errors import UserError

# What `pip install "mlx-quant-studio[serve]"` brings: distribution -> the module names it may provide.
SERVE_MODULES = {
    "fastapi": ("fastapi",),
    "uvicorn": ("uvicorn",),
    "python-multipart": ("python_multipart", "multipart"),
}
INSTALL_HINT = 'pip install "mlx-quant-studio[serve]"'
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class ServeSettings:
    """How the service runs.

    Attributes:
        model: a model bundle directory or 'default' (image classifier), or an mlx-lm
            model folder or Hugging Face id (language model).
        host, port: where to listen; port 0 picks a free port.
        max_body_bytes: larger request bodies get 413.
        max_queue: requests waiting for the engine thread beyond this get 503.
        batch_window_ms: how long the engine thread waits for more classify requests
            to batch with the first one (0: batch only what is already queued).
        max_batch: the largest classifier batch.
        max_tokens_limit: the most tokens one completion may ask for.
        default_max_tokens: max_tokens when a completion request gives none (capped by the limit).
        allowed_origins: web origins (``http://host:port``, or ``*``) whose pages may call the service.
        api_key: when set, every request needs ``Authorization: Bearer <api_key>``.
        max_image_pixels: uploads whose header states more pixels are refused before decoding.
        max_concurrent_decodes: images decoded at once; more requests wait their turn.
    """

    model: str = "default"
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 16 * 1024 * 1024
    max_queue: int = 256
    batch_window_ms: float = 2.0
    max_batch: int = 32
    max_tokens_limit: int = 4096
    default_max_tokens: int = 256
    allowed_origins: tuple[str, ...] = ()
    api_key: str | None = None
    max_image_pixels: int = 16_777_216
    max_concurrent_decodes: int = 2

    def validate(self) -> None:
        if not (0 <= self.port <= 65535):
            raise UserError(f"port must be between 0 and 65535, not {self.port}")
        if self.max_body_bytes < 1024:
            raise UserError(f"the request size limit must be at least 1 KiB, not {self.max_body_bytes} bytes")
        if self.max_queue < 1 or self.max_batch < 1:
            raise UserError("the queue and batch limits must be at least 1")
        if self.batch_window_ms < 0:
            raise UserError(f"the batch window must be 0 ms or more, not {self.batch_window_ms}")
        if self.default_max_tokens < 1 or self.max_tokens_limit < 1:
            raise UserError("max_tokens limits must be at least 1")
        if self.max_image_pixels < 1 or self.max_concurrent_decodes < 1:
            raise UserError("the image pixel and concurrent decode limits must be at least 1")
        if self.api_key is not None and len(self.api_key) < 8:
            raise UserError("the API key must be at least 8 characters")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None = None) -> str | None:
    """A one-line warning when the service would be reachable from other machines without a key."""
    if is_loopback(host) or api_key:
        return None
    return (
        f"warning: listening on {host} makes the model reachable from other machines; "
        "the service has no authentication (bind 127.0.0.1 to keep it local, or pass --api-key)"
    )


def missing_serve_modules() -> list[str]:
    """Distribution names of the 'serve' extra that cannot be imported."""
    return [dist for dist, modules in SERVE_MODULES.items() if not any(_importable(m) for m in modules)]


def _importable(module: str) -> bool:
    """Whether ``module`` is installed, without importing it (the GUI asks this at start-up)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_serve_modules() -> None:
    """Raise a one-line UserError naming the pip command when the 'serve' extra is missing."""
    missing = missing_serve_modules()
    if missing:
        raise UserError(f"the inference service needs {', '.join(missing)}; install them with: {INSTALL_HINT}")


def url_for(host: str, port: int) -> str:
    """The URL a local client uses: a wildcard address becomes the loopback one."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
