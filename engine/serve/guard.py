"""Who may talk to the service: Host, Origin and API-key checks in front of every route.

A web page the user visits can send requests to a service on loopback: a multipart POST needs no
CORS preflight, and DNS rebinding (a page's own name re-pointed at 127.0.0.1) lets it read every
answer. So, before any route runs:

- the ``Host`` header must name the bound address, a loopback address or a localhost name (with a
  wildcard bind, any IP literal): a rebound domain name is refused with 421;
- a request carrying ``Origin`` must come from the service's own origin or one configured with
  ``--allow-origin`` (which also answers CORS preflights); anything else gets 403;
- with ``--api-key``, every request needs ``Authorization: Bearer KEY`` (401 otherwise).

Clients that are not browsers (curl, httpx, the OpenAI SDK) send no Origin and pass unchanged.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from engine.serve.config import LOOPBACK_NAMES, is_loopback

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    421: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "unsupported_media_type",
    499: "client_closed_request",
    422: "invalid_request_error",
    503: "service_unavailable",
}


def error_response(status: int, message: str, headers: dict | None = None):
    """The service's JSON error body (OpenAI's shape): every route and the guard answer with it."""
    from starlette.responses import JSONResponse

    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


WILDCARDS = {"", "0.0.0.0", "::"}


def host_name(header: str) -> str:
    """'example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(header: str, bound: str) -> bool:
    """Whether a request's Host header may reach a service bound to ``bound``."""
    name = host_name(header)
    if not name:
        return False
    if name in LOOPBACK_NAMES or is_loopback(name):
        return True
    bound = bound.strip("[]").lower()
    if bound in WILDCARDS:
        return _is_ip(name)  # a domain name could be rebound; an address literal cannot
    return name == bound


def normalise_origin(origin: str) -> str:
    parts = urlsplit(origin.strip().lower())
    if not parts.scheme or not parts.hostname:
        return origin.strip().lower()
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def same_origin(origin: str, host_header: str) -> bool:
    """True when ``origin`` is this service's own http origin (a page it served)."""
    return normalise_origin(origin) == normalise_origin(f"http://{host_header}")


class RequestGuard:
    """ASGI middleware applying the Host, Origin and API-key rules above."""

    def __init__(self, app, bound_host: str, allowed_origins: Iterable[str] = (), api_key: str | None = None):
        self.app = app
        self.bound_host = bound_host
        self.allowed = {normalise_origin(o) for o in allowed_origins if o != "*"}
        self.any_origin = "*" in allowed_origins
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        host = headers.get("host", "")
        if not host_allowed(host, self.bound_host):
            shown = host or "no Host header"
            return await _deny(421, f"Host '{shown}' is not this service's address; use 127.0.0.1 or localhost")(
                scope, receive, send
            )
        origin = headers.get("origin")
        configured = origin is not None and (self.any_origin or normalise_origin(origin) in self.allowed)
        if origin is not None and not configured and not same_origin(origin, host):
            return await _deny(
                403, f"cross-origin requests from '{origin}' are refused; start the service with --allow-origin"
            )(scope, receive, send)
        if scope["method"] == "OPTIONS" and configured and "access-control-request-method" in headers:
            return await _preflight(origin)(scope, receive, send)
        if self.api_key is not None and not self._authorised(headers.get("authorization", "")):
            return await _deny(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", bearer=True)(
                scope, receive, send
            )
        if not configured:
            return await self.app(scope, receive, send)

        async def send_with_cors(message):
            if message["type"] == "http.response.start":
                extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, send_with_cors)

    def _authorised(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key)


def _deny(status: int, message: str, bearer: bool = False):
    return error_response(status, message, headers={"WWW-Authenticate": "Bearer"} if bearer else None)


def _preflight(origin: str):
    from starlette.responses import Response

    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )
