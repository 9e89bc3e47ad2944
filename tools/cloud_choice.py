"""Which cloud a local tool talks to: one rule for every CLI that sends API calls.

A tool reaches the local emulator with ``--cloud URL`` (or ``ECS_EVENT_OPS_CLOUD_URL``) and
the real Alibaba Cloud only with the explicit ``--real-cloud``: a local run never leaves this
machine by accident. Both at once is a usage error, and so is a ``--cloud`` that is not an
http(s) URL. A tool whose cloud calls are optional (``tools.doctor``) passes
``required=False`` and skips them when neither is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["CLOUD_URL_VAR", "CloudChoiceError", "add_cloud_options", "resolve_cloud"]

CLOUD_URL_VAR = "ECS_EVENT_OPS_CLOUD_URL"

BOTH = f"--real-cloud and --cloud (or {CLOUD_URL_VAR}) exclude each other"
NEITHER = ("refusing to call the real Alibaba Cloud endpoints: pass --cloud URL (the local "
           "emulator, e.g. http://127.0.0.1:8642) or, to reach the real cloud with your "
           "credentials, --real-cloud")


class CloudChoiceError(ValueError):
    """The options name no cloud, two clouds or a malformed URL (a usage error: exit 2)."""


def add_cloud_options(parser: Any, *, real_cloud_help: str,
                      cloud_help: str = "base URL of every call (the local emulator); "
                                        f"default ${CLOUD_URL_VAR}") -> None:
    """Add ``--cloud URL`` and ``--real-cloud`` to a parser or an argument group."""
    parser.add_argument("--cloud", metavar="URL", help=cloud_help)
    parser.add_argument("--real-cloud", action="store_true", help=real_cloud_help)


def resolve_cloud(args: argparse.Namespace, *environs: Mapping[str, str],
                  required: bool = True) -> str | None:
    """The emulator URL to use, or ``None`` for the real cloud (or for no cloud calls at all
    when ``required`` is false and neither option was given); raises CloudChoiceError."""
    cloud = getattr(args, "cloud", None) or next(
        (env[CLOUD_URL_VAR] for env in environs if env.get(CLOUD_URL_VAR)), None)
    real = bool(getattr(args, "real_cloud", False))
    if cloud and real:
        raise CloudChoiceError(BOTH)
    if not cloud and not real and required:
        raise CloudChoiceError(NEITHER)
    if cloud:
        parts = urlsplit(cloud)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CloudChoiceError(f"--cloud must be http(s)://host[:port], not {cloud!r}")
    return cloud or None
