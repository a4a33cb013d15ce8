"""The service's security options on the command line: --allow-origin, --api-key, image limits."""

from __future__ import annotations

import os

from engine.core.argtypes import positive_int

API_KEY_ENV = "MQS_API_KEY"


def add_security_options(p) -> None:
    g = p.add_argument_group("security (see the README's Security section)")
    g.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (http://host:port) whose pages may call the service; repeatable; '*' allows any",
    )
    g.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require 'Authorization: Bearer KEY' on every request (default: ${API_KEY_ENV}); "
        "recommended whenever --host is not 127.0.0.1",
    )
    g.add_argument(
        "--max-image-pixels",
        type=positive_int,
        default=16_777_216,
        help="refuse uploads whose header states more pixels, before decoding (default 16777216 = 4096x4096)",
    )
    g.add_argument("--max-concurrent-decodes", type=positive_int, default=2, help="images decoded at once (default 2)")


def security_settings(args) -> dict:
    """The ServeSettings fields these options set."""
    return {
        "allowed_origins": tuple(args.allow_origin),
        "api_key": args.api_key or None,
        "max_image_pixels": args.max_image_pixels,
        "max_concurrent_decodes": args.max_concurrent_decodes,
    }
