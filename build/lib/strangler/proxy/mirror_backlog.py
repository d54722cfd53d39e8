"""Mirror copies waiting for room on the Amazon MQ link, so a burst does not drop them.

A producer that sends without receipts can outrun Amazon MQ's receipts by far;
at most ``max_inflight`` frames wait on the link, and the copies beyond that
wait here, in order, until the link has room. The producer is never slowed
for a copy: when this backlog is full too, the copy is dropped with a
``message_mirror_failed`` fact.

Invariants: the bytes waiting (frames as the producer sent them) are taken from
a budget all sessions share, so a thousand connections cannot hold a thousand
backlogs;
copies leave in the order they came; every copy queued here is submitted to
the link or reported through ``dropped``, never forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from ..routes import Decision
from ..stomp import Frame
from ..upstream import BrokerLink
from .context import ByteBudget

Submit = Callable[[Frame, str, Decision], None]  # (frame, trace id, decision)
Dropped = Callable[[str, str, str], None]  # (trace id, rule, reason)


class MirrorBacklog:
    def __init__(self, budget: ByteBudget, submit: Submit, dropped: Dropped) -> None:
        self._budget = budget
        self._submit = submit
        self._dropped = dropped
        self._queue: deque[tuple[Frame, str, Decision]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._empty = asyncio.Event()
        self._empty.set()

    def __bool__(self) -> bool:
        return bool(self._queue)

    def add(self, link: BrokerLink, frame: Frame, trace: str, decision: Decision) -> None:
        size = _size(frame)
        if not self._budget.take(size):
            self._dropped(trace, decision.rule, "mirror backlog full")
            return
        self._queue.append((frame, trace, decision))
        self._empty.clear()
        if self._task is None:
            self._task = asyncio.create_task(self._pump(link))

    async def _pump(self, link: BrokerLink) -> None:
        try:
            while self._queue:
                await link.wait_capacity()
                frame, trace, decision = self._queue.popleft()
                self._budget.give(_size(frame))
                self._submit(frame, trace, decision)
        finally:
            self._task = None
            if not self._queue:
                self._empty.set()

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every queued copy went to the link (DISCONNECT, shutdown)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._empty.wait()
        return not self._queue

    async def close(self, reason: str) -> None:
        """Stop; copies still queued are reported as dropped for ``reason``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            frame, trace, decision = self._queue.popleft()
            self._budget.give(_size(frame))
            self._dropped(trace, decision.rule, reason)
        self._empty.set()


# What a queued copy costs besides its bytes (the Frame, its headers, its body slice):
# counted too, so the budget bounds memory and not only payload.
_ENTRY_OVERHEAD = 1024


def _size(frame: Frame) -> int:
    raw = len(frame.raw) if frame.raw is not None else 0
    return raw + len(frame.body) + _ENTRY_OVERHEAD
