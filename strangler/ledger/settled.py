"""The trace ids of messages already settled, in little memory.

The audit forgets a settled message (its counts are folded into the report) but must
still recognise a late fact about it: a second confirmation is a broken promise, not an
outcome without a ``message_routed``.

strangler's own trace ids are a per-process prefix (16 hex digits) and a counter (8 or
more hex digits), handed out in routing order. Per prefix this set keeps a *watermark*
(every counter below it is settled, or was never seen) and the settled counters above
it; messages settle roughly in routing order, so the watermark moves up and what is
held stays about as large as the number of messages in flight. Other ids (a producer's
own, written by proxies before ``producer_trace_id``) are held as they are.

Invariant: ``in`` never misses an id that was added. It may answer yes for a counter
below a watermark that was never added (a gap: a message whose facts are not in the
input); ``MAX_ABOVE`` bounds what is held above a watermark stuck at such a gap.
"""

from __future__ import annotations

import re
from typing import Final

PREFIX_LENGTH: Final = 16
_OURS: Final = re.compile(r"[0-9a-f]{16}[0-9a-f]{8,16}")
MAX_ABOVE: Final = 65_536


class _Counters:
    __slots__ = ("above", "low")

    def __init__(self, first: int) -> None:
        self.low = first  # every counter below is settled (or a gap)
        self.above: set[int] = set()

    def add(self, counter: int) -> None:
        if counter < self.low:
            return
        above = self.above
        if counter == self.low:
            low = counter + 1
            while low in above:
                above.discard(low)
                low += 1
            self.low = low
            return
        above.add(counter)
        if len(above) > MAX_ABOVE:  # stuck at a gap: give the gap up
            low = min(above)
            while low in above:
                above.discard(low)
                low += 1
            self.low = low


class SettledIds:
    def __init__(self) -> None:
        self._prefixes: dict[str, _Counters] = {}
        self._others: set[str] = set()

    def first_seen(self, trace: str) -> None:
        """A message was routed: its prefix's watermark starts no higher than it."""
        parsed = _split(trace)
        if parsed is None:
            return
        prefix, counter = parsed
        if prefix not in self._prefixes:
            self._prefixes[prefix] = _Counters(counter)

    def add(self, trace: str) -> None:
        parsed = _split(trace)
        if parsed is None:
            self._others.add(trace)
            return
        prefix, counter = parsed
        counters = self._prefixes.get(prefix)
        if counters is None:
            counters = self._prefixes[prefix] = _Counters(counter)
        counters.add(counter)

    def __contains__(self, trace: object) -> bool:
        if not isinstance(trace, str):
            return False
        parsed = _split(trace)
        if parsed is None:
            return trace in self._others
        prefix, counter = parsed
        counters = self._prefixes.get(prefix)
        if counters is None:
            return False
        return counter < counters.low or counter in counters.above

    @property
    def held(self) -> int:
        """Ids held individually (what the memory bound is about)."""
        return len(self._others) + sum(len(c.above) for c in self._prefixes.values())


def _split(trace: str) -> tuple[str, int] | None:
    if _OURS.fullmatch(trace) is None:
        return None
    return trace[:PREFIX_LENGTH], int(trace[PREFIX_LENGTH:], 16)
