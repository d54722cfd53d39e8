"""Checking that routes.yaml is refused at the right line, for the loader's error tests.

Each case's text marks the offending line with a trailing ``# <-``.
"""

from __future__ import annotations

import pytest

from strangler.routes import RoutesError, parse_routes

FILE = "conf/routes.yaml"


def marked_line(text: str) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if line.endswith("# <-")]
    assert len(lines) == 1, "each case marks exactly one line"
    return lines[0]


def assert_refused(text: str, reason: str) -> RoutesError:
    """``text`` is refused with ``reason``, naming the file and the marked line."""
    with pytest.raises(RoutesError) as caught:
        parse_routes(text, FILE)
    error = caught.value
    assert reason in error.reason, error.reason
    assert error.line == marked_line(text), str(error)
    assert error.file == FILE
    assert str(error) == f"{FILE}:{error.line}: {error.reason}"
    return error
