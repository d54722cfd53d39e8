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

    def routed(self, trace: str) -> bool:
        """A message was routed: True if its id is settled already (routed twice). The
        first id of a prefix starts its watermark."""
        counters = self._prefixes.get(trace[:PREFIX_LENGTH])
        if counters is None:
            if _OURS.fullmatch(trace) is None:
                return trace in self._others
            self._prefixes[trace[:PREFIX_LENGTH]] = _Counters(int(trace[PREFIX_LENGTH:], 16))
            return False
        try:
            counter = int(trace[PREFIX_LENGTH:], 16)
        except ValueError:
            return trace in self._others
        return counter < counters.low or counter in counters.above

    def add(self, trace: str) -> None:
        counters = self._prefixes.get(trace[:PREFIX_LENGTH])
        if counters is not None:
            try:
                counters.add(int(trace[PREFIX_LENGTH:], 16))
                return
            except ValueError:
                pass
        self._others.add(trace)

    def __contains__(self, trace: object) -> bool:
        if not isinstance(trace, str):
            return False
        counters = self._prefixes.get(trace[:PREFIX_LENGTH])
        if counters is not None:
            try:
                counter = int(trace[PREFIX_LENGTH:], 16)
            except ValueError:
                return trace in self._others
            return counter < counters.low or counter in counters.above
        return trace in self._others

    @property
    def held(self) -> int:
        """Ids held individually (what the memory bound is about)."""
        return len(self._others) + sum(len(c.above) for c in self._prefixes.values())
