"""Asking Prometheus for one number (its HTTP API, ``/api/v1/query``).

Every failure (unreachable, HTTP error, a query Prometheus refuses, an answer that is not
one number) is raised as ``PrometheusError`` with a reason for people: the controller
turns it into a held step, never into a step taken blind.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class PrometheusError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class PrometheusClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str) -> float | None:
        """The query's one value now; None when it has none (no series, NaN, infinite)."""
        body = urllib.parse.urlencode({"query": promql}).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/query", data=body)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"Prometheus refused {promql!r}: {_error_of(exc)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(f"cannot ask Prometheus at {self.url}: {reason}") from None
        return one_value(answer, promql)


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read())
        return f"{detail.get('errorType', exc.code)}: {detail.get('error', '')}"
    except (ValueError, OSError):
        return f"HTTP {exc.code}"


def one_value(answer: Any, promql: str) -> float | None:
    """The number in an ``/api/v1/query`` answer (pure, for tests)."""
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise PrometheusError(f"Prometheus answered {promql!r} without success: {answer!r:.200}")
    data = answer.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        sample = result
    elif kind == "vector":
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(
                f"{promql!r} returned {len(result)} series; a gate needs one number "
                "(aggregate it, e.g. with sum(...))"
            )
        sample = result[0].get("value")
    else:
        raise PrometheusError(f"{promql!r} returned a {kind}; a gate needs one number")
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError):
        raise PrometheusError(f"{promql!r} returned {sample!r}, not a number") from None
    return value if math.isfinite(value) else None
