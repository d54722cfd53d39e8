"""Trace ids: one per SEND, unique across replicas and restarts, never trusted blindly.

Ours are a random per-process prefix and a counter (no urandom syscall per message:
uuid4 was a measurable cost). A producer may send its own id in the trace header; it
is kept, so a producer can correlate its own messages, only when it is well-formed and
not seen recently in this process. Otherwise our id goes on the wire (first, so it
wins: ActiveMQ keeps the first of repeated headers) and the producer's value is
recorded as ``producer_trace_id``: an empty, 9,000-character or reused id would make the
audit trail ambiguous (``strangler verify`` could hide a missing copy behind it).

Invariants: memory is bounded (``RECENT`` ids); a reused id is caught within that
window in this process, not across replicas (those carry our own ids anyway).
"""

from __future__ import annotations

import itertools
import os
import re
from collections import OrderedDict
from typing import Final

RECENT: Final = 65_536
_WELL_FORMED: Final = re.compile(r"[A-Za-z0-9._:/@+=~-]{1,200}")
_PREFIX: Final = os.urandom(8).hex()
_sequence = itertools.count(1)


def new_trace_id() -> str:
    return f"{_PREFIX}{next(_sequence):08x}"


class TraceIds:
    """Decides which trace id a SEND carries (shared by every session of one proxy)."""

    def __init__(self, recent: int = RECENT) -> None:
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._limit = recent

    def accept(self, value: str) -> bool:
        """True when the producer's own id ``value`` may be kept (and remember it)."""
        if _WELL_FORMED.fullmatch(value) is None or value in self._recent:
            return False
        self._recent[value] = None
        if len(self._recent) > self._limit:
            self._recent.popitem(last=False)
        return True
