"""Which frame pump runs: the compiled one or the pure-Python reference.

``FramePump`` is ``strangler.stomp._pump.FramePump`` (Cython, built at ``pip install``)
when that extension imports, else ``strangler.stomp.pump.FramePump``. Both keep one
contract (``pump.py``'s docstring), checked against each other by a differential
property test. ``STRANGLER_NO_EXTENSIONS=1`` forces the pure build (as
``AIOHTTP_NO_EXTENSIONS`` does for aiohttp); ``BUILD`` says which one runs and
``BUILD_NOTE`` why, for ``strangler --version`` and the ``proxy_started`` fact.

A missing extension that was not asked for is one ``RuntimeWarning`` at import: the
proxy works, several times slower per frame.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Final, Literal

NO_EXTENSIONS: Final = os.environ.get("STRANGLER_NO_EXTENSIONS", "") not in ("", "0")

BUILD: Literal["compiled", "pure"]
BUILD_NOTE: str

if TYPE_CHECKING:
    from .pump import FramePump, Pumped, PumpedFrame
elif NO_EXTENSIONS:
    from .pump import FramePump, Pumped, PumpedFrame

    BUILD, BUILD_NOTE = "pure", "pure (STRANGLER_NO_EXTENSIONS is set)"
else:
    try:
        from ._pump import FramePump, Pumped, PumpedFrame
    except ImportError as exc:
        from .pump import FramePump, Pumped, PumpedFrame

        BUILD, BUILD_NOTE = "pure", f"pure (the compiled frame pump is missing: {exc})"
        warnings.warn(
            "strangler: the compiled frame pump (strangler.stomp._pump) is not available "
            f"({exc}); running the pure-Python one. Install gcc and python3-dev, then "
            "reinstall strangler, to build it.",
            RuntimeWarning,
            stacklevel=2,
        )
    else:
        BUILD, BUILD_NOTE = "compiled", "compiled"

__all__ = ["BUILD", "BUILD_NOTE", "NO_EXTENSIONS", "FramePump", "Pumped", "PumpedFrame"]
