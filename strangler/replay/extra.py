"""mitmproxy is an optional extra, ``strangler[capture]``: what needs it says so.

It is needed to write captures (``run --capture``) and to read mitmproxy flow files
(``replay`` and ``plan --capture`` with a flow file); facts files and everything else
work without it. It takes an install from about 15 packages to 56.
"""

from __future__ import annotations

import importlib.util
from typing import Final

INSTALL: Final = (
    "pip install 'strangler[capture]' (the container image: "
    "docker build --build-arg EXTRAS=fast,capture .)"
)


class CaptureUnavailable(Exception):
    """mitmproxy is not installed (a configuration error, exit 2)."""


def mitmproxy_installed() -> bool:
    return importlib.util.find_spec("mitmproxy") is not None


def require_mitmproxy(what: str) -> None:
    """Raise ``CaptureUnavailable`` naming ``what`` needs it, and how to install it."""
    if not mitmproxy_installed():
        raise CaptureUnavailable(f"{what} needs mitmproxy, which is not installed: {INSTALL}")
