"""Writing facts as JSON lines, off the hot path, with bounded memory.

``FactSink.emit`` (and ``record``, for a caller that already holds the fields as a
mapping) only appends a record, ``(time, fact, fields)``, to a bounded deque: no
formatting, no I/O, no lock, so a producer's frame is never delayed by logging. A writer
thread drains the deque and renders a batch at a time: each record becomes one JSON
object through orjson (the serializer and fallback structlog's ``JSONRenderer`` used
here before, so the lines are byte for byte the same), and the batch is joined and
written once.

Invariants: at most ``capacity`` facts wait in memory; when the writer cannot
keep up, new facts are counted and dropped, and a ``facts_dropped`` fact with
the count is written as soon as there is room, so the gap is itself on record.
A line starts with ``event`` then ``ts`` (what happened, then when), then the static
fields, then the fact's own.

A sink writing to a file (``path``) opens it again by name on ``reopen()`` (the
proxy calls it on SIGHUP and SIGUSR1), so logrotate can move the file away: the
writer thread switches files between two batches, so a line is never split
between files; facts written after the switch go to the new file. If the path
cannot be opened, the sink keeps writing to the file it has and says so on stderr.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

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


def _fallback(obj: Any) -> Any:
    """What orjson cannot encode: structlog's fallback (``__structlog__``, else repr)."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


_dumps = orjson.dumps
_now = time.time


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
        self._path = Path(path) if path is not None else None
        self._reopen_requested = False
        self.reopen_errors = 0
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
        self._static = dict(static or {})
        self._stamp = _Timestamps()
        self._handoff = Handoff()
        self._closing = False
        # Called in emit, on the caller's thread (tests wait on facts this way).
        self.listeners: list[Callable[[str, Mapping[str, Any]], None]] = []
        # Called on the writer thread, in order, as each fact is written: metrics count
        # here, off the data path (in emit, their counters were more than half of its
        # cost: 2.8 against 1.2 us, in a loop).
        self.writer_listeners: list[Callable[[str, Mapping[str, Any]], None]] = []
        # Last: the writer reads every attribute above (started earlier, it could die on a
        # missing one when this thread was descheduled for an interval).
        self._thread = threading.Thread(target=self._run, name="strangler-facts", daemon=True)
        self._thread.start()

    def emit(self, fact: Fact, /, **fields: Any) -> None:
        """Record ``fact`` with ``fields``; never blocks, never raises for a full sink."""
        self.record(fact, fields)

    def record(self, fact: Fact, fields: Mapping[str, Any], /) -> None:
        """``emit`` for fields already in a mapping (no copy: do not change it after)."""
        if self.listeners:
            self._tell(fact, fields)
        pending = self._pending
        waiting = len(pending)
        self._handoff.handed += 1
        if waiting >= self._capacity:
            self._dropped_seen += 1
            return
        pending.append((_now(), fact, fields))
        if waiting == _BATCH:  # a burst: write now rather than at the next interval
            self._handoff.wake.set()

    def _tell(self, fact: Fact, fields: Mapping[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(fact, fields)
            except Exception:  # a metrics bug must not break the data path
                self.listener_errors += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every fact emitted before this call is written."""
        return self._handoff.flush(timeout)

    def reopen(self) -> None:
        """Write to the file at ``path`` afresh from the next batch on (logrotate moved it).

        Safe from any thread and from a signal handler: it only sets a flag and wakes the
        writer. A sink given a stream (stdout) has nothing to reopen.
        """
        if self._path is not None:
            self._reopen_requested = True
            self._handoff.wake.set()

    def _reopen_now(self) -> None:
        """Writer thread: swap to a newly opened file at the path, or keep the old one."""
        self._reopen_requested = False
        assert self._path is not None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            stream = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 closed in close()
        except OSError as exc:
            self.reopen_errors += 1
            print(
                f"strangler: cannot reopen the facts file {self._path}: "
                f"{exc.strerror or exc}; facts still go to the file opened before",
                file=sys.stderr,
                flush=True,
            )
            return
        old, self._stream = self._stream, stream
        with contextlib.suppress(OSError):
            old.close()

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
        if self._reopen_requested:
            self._reopen_now()
        pending = self._pending
        static, stamp = self._static, self._stamp
        listeners = self.writer_listeners
        # Each line decoded at once: 512 live orjson outputs (over pymalloc's 512-byte
        # objects, system malloc) made the batch twice as slow, measured by bench/hotpath.
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
                # The Fact member as is: orjson writes an enum as its value.
                line = {"event": fact, "ts": stamp(ts), **static, **fields}
                lines.append(_dumps(line, default=_fallback).decode())
            except Exception as exc:  # e.g. a value JSON cannot encode: keep writing
                failed = {
                    "event": str(Fact.FACTS_DROPPED),
                    "ts": stamp(ts),
                    "count": 1,
                    "reason": repr(exc)[:200],
                }
                lines.append(_dumps(failed, default=_fallback).decode())
        dropped = self._dropped_seen - self._dropped_reported
        if dropped:
            self._dropped_reported += dropped
            processed += dropped
            self.dropped_total += dropped
            gap = {"event": str(Fact.FACTS_DROPPED), "ts": stamp(_now()), "count": dropped}
            lines.append(_dumps(gap, default=_fallback).decode())
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
