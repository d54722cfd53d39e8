"""Writing facts as JSON lines, off the hot path, with bounded memory.

``FactSink.emit`` (and ``record``, for a caller that already holds the fields as a
mapping) only appends a record, ``(time, fact, fields)``, to a bounded deque: no
formatting, no I/O, no lock, so a producer's frame is never delayed by logging. A writer
thread drains the deque and renders a batch at a time: each record becomes one JSON
object through orjson (the serializer and fallback structlog's ``JSONRenderer`` used
here before, so the lines are byte for byte the same), and the batch is joined and
written once.

A fact whose fields are the same every time but for one string (``message_routed`` of
a pass-through SEND: only its trace id changes) can be recorded from a
:class:`FactTemplate` (``template`` once, then ``record_from`` per fact): the writer
renders it by joining the template's pieces with the time and the string, no dict and
no JSON encoding per fact. The line is byte for byte the one ``record`` would write
(tests/unit/facts/test_sink.py checks it). ``record_run`` records ``count`` such facts
at once whose values are a prefix and consecutive counters (the trace ids of SENDs that
passed through the frame pump): one entry in memory for all of them.

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
import os
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

# (time, Fact, fields), (time, FactTemplate, the variable's value) or (time, FactTemplate,
# _Run): the writer tells them apart by the types.
_Pending = tuple[float, Any, Any]
# Facts rendered and written at a time; also the backlog that wakes the writer early.
# Unbounded batches held ~4,000 facts at once in bench S1 (about 10 MB in flight).
_BATCH = 512
# The writer gives the GIL up this often within a batch. Otherwise a producer's frame
# that arrives while a batch is rendered waits for all of it (or for the interpreter's
# 5 ms switch interval): bench S2's p99 was 1.6-2.6 ms against 0.3 ms directly.
# os.sched_yield lets go of the GIL for the yield; time.sleep(0) did too, but slept
# about 90 us each time on this machine (timer slack), which the writer then lost.
_YIELD_EVERY = 32
_yield = os.sched_yield


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
# Stand-ins for the time and the variable string while a template is rendered once:
# private-use characters, which orjson writes as they are (never escaped).
_TS_MARK = "\ue000ts\ue000"
_VALUE_MARK = "\ue000value\ue000"


def plain_json_string(text: str) -> bool:
    """``text`` is written into a JSON string as it is: printable ASCII without ``"``
    or ``\\`` (what a template's variable must be, so the join equals orjson's line)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


class FactTemplate:
    """A fact with fixed fields but for ``variable`` (a string); see the module notes.

    ``fields`` is the mapping without the variable (what writer listeners get: they
    count facts, they do not read trace ids); ``with_value`` the whole mapping."""

    __slots__ = ("_order", "_variable", "fact", "fields", "head", "middle", "tail")

    def __init__(
        self, fact: Fact, fields: Mapping[str, Any], variable: str, static: Mapping[str, Any]
    ) -> None:
        self.fact = fact
        self._variable = variable
        self._order = tuple(fields)
        if variable not in self._order:
            raise ValueError(f"{variable!r} is not a field of the template")
        self.fields = {k: v for k, v in fields.items() if k != variable}
        probe = {**fields, variable: _VALUE_MARK}
        line = _dumps({"event": fact, "ts": _TS_MARK, **static, **probe}, default=_fallback)
        text = line.decode()
        head, rest = text.split(_TS_MARK)
        middle, tail = rest.split(_VALUE_MARK)
        # The line is head, time, middle, value, tail (the writer joins them inline).
        self.head, self.middle, self.tail = head, middle, tail

    def with_value(self, value: str) -> dict[str, Any]:
        return {k: (value if k == self._variable else self.fields[k]) for k in self._order}


class _Run(tuple[str, int, int]):
    """Facts of a template whose values are ``prefix`` and ``first``, ``first + 1``, ...
    as at least 8 lowercase hex digits, ``count`` of them."""

    __slots__ = ()


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
        # Called on the writer thread once per batch for each template recorded from in
        # it, with its fields (the variable left out) and how many of its facts were
        # written: a template's facts are counted, not handed over one at a time
        # (metrics per fact were more than the rest of its rendering: 1.6 against 1.2 us).
        self.writer_counters: list[Callable[[str, Mapping[str, Any], int], None]] = []
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
        self._append((_now(), fact, fields))

    def template(
        self, fact: Fact, fields: Mapping[str, Any], variable: str = "trace_id"
    ) -> FactTemplate:
        """A template of ``fact`` with ``fields`` (``variable``'s value is a stand-in)."""
        return FactTemplate(fact, fields, variable, self._static)

    def record_from(self, template: FactTemplate, value: str, ts: float, /) -> None:
        """``record`` of ``template`` with its variable set to ``value``, which must be a
        :func:`plain_json_string` (the caller checks once, for what it will pass), at
        ``ts`` (``time.time()``: facts of one socket read share it, and the writer formats
        a time once for all the facts in a row that have it)."""
        if self.listeners:
            self._tell(template.fact, template.with_value(value))
        self._append((ts, template, value))

    def record_run(
        self, template: FactTemplate, prefix: str, first: int, count: int, ts: float, /
    ) -> None:
        """``record_from`` for ``count`` facts in a row whose values are ``prefix`` and
        ``first``, ``first + 1``, ... as at least 8 lowercase hex digits (``prefix`` a
        :func:`plain_json_string`)."""
        if self.listeners:
            for n in range(first, first + count):
                self._tell(template.fact, template.with_value(f"{prefix}{n:08x}"))
        self._append((ts, template, _Run((prefix, first, count))), count)

    def _append(self, entry: _Pending, facts: int = 1) -> None:
        pending = self._pending
        waiting = len(pending)
        self._handoff.handed += facts
        if waiting >= self._capacity:
            self._dropped_seen += facts
            return
        pending.append(entry)
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
        """Render and write about ``_BATCH`` facts (a run is not split, so one read's
        run may take a batch past it): what a burst costs in memory while it is written
        stays small (rendered lines, their joined text, its encoding)."""
        if self._reopen_requested:
            self._reopen_now()
        pending = self._pending
        static, stamp = self._static, self._stamp
        listeners = self.writer_listeners
        # Each line decoded at once: 512 live orjson outputs (over pymalloc's 512-byte
        # objects, system malloc) made the batch twice as slow, measured by bench/hotpath.
        lines: list[str] = []
        templated: collections.Counter[FactTemplate] = collections.Counter()
        last_ts, last_stamp = None, ""  # a template's facts of one read share their time
        processed = 0  # facts taken (a run is as many as it holds)
        next_yield = _YIELD_EVERY
        while pending and processed < _BATCH:
            ts, fact, fields = pending.popleft()
            processed += 1
            if processed >= next_yield:
                _yield()  # let the event loop have the GIL: see _YIELD_EVERY
                next_yield = processed + _YIELD_EVERY
            if type(fact) is FactTemplate:
                if ts != last_ts:
                    last_ts, last_stamp = ts, stamp(ts)
                if type(fields) is _Run:
                    prefix, first, count = fields
                    templated[fact] += count
                    processed += count - 1
                    head = f"{fact.head}{last_stamp}{fact.middle}{prefix}"
                    tail = fact.tail
                    lines += [f"{head}{n:08x}{tail}" for n in range(first, first + count)]
                    continue
                templated[fact] += 1
                lines.append(f"{fact.head}{last_stamp}{fact.middle}{fields}{fact.tail}")
                continue
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
        for template, count in templated.items():
            for counter in self.writer_counters:
                try:
                    counter(template.fact, template.fields, count)
                except Exception:  # a metrics bug must not stop the fact log
                    self.writer_listener_errors += 1
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
