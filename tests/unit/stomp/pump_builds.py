"""Both frame pump builds, for tests that run each contract check on each of them.

The compiled build is imported directly, whatever ``STRANGLER_NO_EXTENSIONS`` says (that
variable only chooses what ``strangler.stomp.native`` hands the proxy). A missing compiled
build fails these tests: scripts/test.sh installs a compiler, so it must be there.
"""

from __future__ import annotations

import pytest

from strangler.stomp import pump


def compiled_pump() -> type[pump.FramePump]:
    try:
        from strangler.stomp import _pump
    except ImportError as exc:
        pytest.fail(
            f"the compiled frame pump is not built ({exc}): install gcc and python3-dev, "
            "then `.venv/bin/pip install -e .`"
        )
    return _pump.FramePump


BUILDS = ["pure", "compiled"]


def pump_class(build: str) -> type[pump.FramePump]:
    return pump.FramePump if build == "pure" else compiled_pump()
