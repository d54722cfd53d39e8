"""Writing facts as JSON lines, off the hot path, with bounded memory.

``FactSink.emit`` only appends a tuple to a bounded deque (no formatting, no
I/O, no lock), so a producer's frame is never delayed by logging. A writer
thread drains the deque, renders each fact through a structlog processor
chain (one JSON object per line) and writes a batch at a time.

Invariants: at most ``capacity`` facts wait in memory; when the writer cannot
keep up, new facts are counted and dropped, and a ``facts_dropped`` fact with
the count is written as soon as there is room, so the gap is itself on record.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import Processor

from .handoff import Handoff
from .vocabulary import Fact

_Pending = tuple[float, str, Mapping[str, Any]]
# Facts rendered and written at a time; also the backlog that wakes the writer early.
# Unbounded batches held ~4,000 facts at once in bench S1 (about 10 MB in flight).
_BATCH = 512


class _Timestamps:
    """ISO 8601 UTC with microseconds; the date and time to the second are formatted once
    per second (``datetime.isoformat`` per fact was a tenth of a fact's cost)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        # Rounded as datetime.fromtimestamp rounds (half even, carrying into the second).
        second = int(ts)
        micro = round((ts - second) * 1_000_000)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{micro:06d}+00:00"


def _orjson(obj: Any, **kwargs: Any) -> str:
    """structlog's JSONRenderer serializer: orjson, about 5x the standard library's speed."""
    return orjson.dumps(obj, default=kwargs.get("default")).decode()


def _render(processors: list[Processor], event_dict: MutableMapping[str, Any]) -> str:
    value: Any = event_dict
    for processor in processors:
        value = processor(None, "info", value)
    return str(value)


class FactSink:
    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        path: str | Path | None = None,
        capacity: int = 100_000,
        interval: float = 0.05,
        static: Mapping[str, Any] | None = None,
    ) -> None:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._stream: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 closed in close()
            self._owns_stream = True
        else:
            self._stream = stream if stream is not None else sys.stdout
            self._owns_stream = False
        self._pending: collections.deque[_Pending] = collections.deque()
        self._capacity = capacity
        self._interval = interval
        # Each counter has one writer thread (emit: the caller; *_reported: the writer),
        # so no read-modify-write races between threads.
        self._dropped_seen = 0
        self._dropped_reported = 0
        self.listener_errors = 0
        self.writer_listener_errors = 0
        self.dropped_total = 0
        self.written_total = 0
        # structlog's processor chain, applied directly: a bound logger per fact cost more
        # than the rendering itself (13 us against 5 us a fact, measured by bench/).
        self._static = dict(static or {})
        # Lines start with "event" then "ts" (what happened, then when): the dict is built
        # in that order, so the chain needs no reordering step.
        self._processors: list[Processor] = [structlog.processors.JSONRenderer(_orjson)]
        self._stamp = _Timestamps()
        self._handoff = Handoff()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="strangler-facts", daemon=True)
        self._thread.start()
        # Called in emit, on the caller's thread (tests wait on facts this way).
        self.listeners: list[Callable[[str, Mapping[str, Any]], None]] = []
        # Called on the writer thread, in order, as each fact is written: metrics count
        # here, off the data path (in emit, their counters were more than half of its
        # cost: 2.8 against 1.2 us, in a loop).
        self.writer_listeners: list[Callable[[str, Mapping[str, Any]], None]] = []

    def emit(self, fact: Fact, /, **fields: Any) -> None:
        """Record ``fact`` with ``fields``; never blocks, never raises for a full sink."""
        for listener in self.listeners:
            try:
                listener(fact, fields)
            except Exception:  # a metrics bug must not break the data path
                self.listener_errors += 1
        self._handoff.handed += 1
        waiting = len(self._pending)
        if waiting >= self._capacity:
            self._dropped_seen += 1
            return
        self._pending.append((time.time(), fact, fields))
        if waiting == _BATCH:  # a burst: write now rather than at the next interval
            self._handoff.wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every fact emitted before this call is written."""
        return self._handoff.flush(timeout)

    def close(self) -> None:
        self.flush()
        self._closing = True
        self._handoff.wake.set()
        self._thread.join(timeout=5.0)
        if self._owns_stream:
            self._stream.close()

    def _run(self) -> None:
        while True:
            self._handoff.wait_for_work(self._interval)
            self._write_pending()
            if self._closing and not self._pending:
                return

    def _write_pending(self) -> None:
        self._write_batch()
        while self._pending:
            self._write_batch()

    def _write_batch(self) -> None:
        """Render and write up to ``_BATCH`` facts: what a burst costs in memory while it
        is written stays small (rendered lines, their joined text, its encoding)."""
        pending = self._pending
        processors, static, stamp = self._processors, self._static, self._stamp
        listeners = self.writer_listeners
        lines: list[str] = []
        processed = 0
        while pending and processed < _BATCH:
            ts, fact, fields = pending.popleft()
            processed += 1
            for listener in listeners:
                try:
                    listener(fact, fields)
                except Exception:  # a metrics bug must not stop the fact log
                    self.writer_listener_errors += 1
            try:
                lines.append(
                    _render(processors, {"event": str(fact), "ts": stamp(ts), **static, **fields})
                )
            except Exception as exc:  # e.g. a value JSON cannot encode: keep writing
                lines.append(
                    _render(
                        processors,
                        {
                            "event": str(Fact.FACTS_DROPPED),
                            "ts": stamp(ts),
                            "count": 1,
                            "reason": repr(exc)[:200],
                        },
                    )
                )
        dropped = self._dropped_seen - self._dropped_reported
        if dropped:
            self._dropped_reported += dropped
            processed += dropped
            self.dropped_total += dropped
            lines.append(
                _render(
                    processors,
                    {"event": str(Fact.FACTS_DROPPED), "ts": stamp(time.time()), "count": dropped},
                )
            )
        if lines:
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                # The sink must never take the proxy down; the count shows the loss.
                self.dropped_total += len(lines)
            else:
                self.written_total += len(lines)
        self._handoff.finish(processed)
