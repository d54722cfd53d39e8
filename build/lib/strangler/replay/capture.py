"""``strangler run --capture FILE``: producer traffic as mitmproxy TCP flows.

``FlowCapture`` is a ``TrafficTap`` (``strangler.proxy.context``). Each producer
connection becomes one ``mitmproxy.tcp.TCPFlow``: client -> server messages are what the
producer sent, server -> client what it received, each chunk as the proxy read or wrote
it. Files are written with mitmproxy's own ``FlowWriter``, so ``mitmproxy -r FILE``,
``mitmweb -r FILE`` and ``mitmdump -r FILE`` open them, and ``strangler replay`` reads
them like any other TCP flow file.

Off the hot path: the tap methods, called on the proxy's event loop, only append a chunk
reference to a per-session list and update counters (no I/O, no parsing, no lock). A
writer thread builds, redacts and writes flows.

Invariants (memory and disk are bounded, and every loss is counted):
- A session's flow is written when the session closes. A session whose buffer reaches
  ``flush_bytes`` is written as a *partial flow* right away (metadata ``part`` n,
  ``final`` false) and keeps recording into a new part; ``strangler replay`` joins the
  parts through ``metadata["strangler"]["capture_id"]``. Long-lived producer
  connections are therefore captured without holding them in memory.
- All sessions' buffered plus not-yet-written bytes stay under ``max_pending``. A chunk
  that would exceed it is dropped and *the rest of that session* is dropped too (counted
  in ``dropped_bytes``; the flow is marked ``truncated``): a stream with a hole in the
  middle would be misparsed, a stream cut short is only incomplete.
- ``headers_only``: frames are kept, bodies emptied (``redact``). The redaction runs in
  the writer thread, so the event loop never parses twice.
- The file never grows past ``max_bytes``: a flow that would cross it first renames FILE
  to FILE.1 (replacing an older FILE.1) and starts a new FILE, so at most about twice
  ``max_bytes`` is on disk. A single flow is never split across files (a flow larger
  than ``max_bytes`` is written alone into a fresh file). FILE is appended to, never
  truncated: a restarted proxy adds to the capture; replay FILE.1 and FILE in order.
"""

from __future__ import annotations

import collections
import io
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from ..facts.handoff import Handoff
from ..stomp import DEFAULT_LIMITS, Limits
from .redact import HeadersOnly

MIB: Final = 1024 * 1024
DEFAULT_MAX_BYTES: Final = 256 * MIB
DEFAULT_FLUSH_BYTES: Final = 4 * MIB
DEFAULT_MAX_PENDING: Final = 64 * MIB
# Memory of one buffered chunk beyond its bytes (tuple, float), so tiny chunks count too.
_CHUNK_OVERHEAD: Final = 64

_Chunk = tuple[bool, bytes, float]  # (from_client, data, unix time)
Address = tuple[str, int]


@dataclass(slots=True)
class _Open:
    """A session being recorded (event loop thread only)."""

    capture_id: str
    session: str
    peer: Address
    opened_at: float
    chunks: list[_Chunk] = field(default_factory=list)
    size: int = 0  # bytes accounted for ``chunks`` (with overhead)
    part: int = 0
    truncated: bool = False
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class _Part:
    """One flow to write, handed from the event loop to the writer thread."""

    capture_id: str
    session: str
    peer: Address
    opened_at: float
    closed_at: float | None
    part: int
    chunks: list[_Chunk]
    size: int
    final: bool
    truncated: bool
    dropped: int


@dataclass(frozen=True, slots=True)
class CaptureStats:
    flows_written: int
    bytes_written: int
    dropped_bytes: int
    truncated_sessions: int
    rotations: int
    write_errors: int
    last_error: str | None


def parse_address(text: str) -> Address:
    """``host:port`` (as the proxy reports a peer) to mitmproxy's address tuple."""
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return host.strip("[]"), int(port)
    return text, 0


def tcp_flow(
    chunks: list[_Chunk],
    *,
    peer: Address,
    server: Address,
    listen: Address,
    opened_at: float,
    closed_at: float | None,
    metadata: dict[str, Any] | None = None,
    comment: str = "",
) -> Any:
    """A ``mitmproxy.tcp.TCPFlow`` holding ``chunks`` (built like ``mitmproxy.test.tflow``)."""
    from mitmproxy import connection, tcp

    client = connection.Client(
        peername=peer,
        sockname=listen,
        timestamp_start=opened_at,
        timestamp_end=closed_at,
        state=connection.ConnectionState.CLOSED
        if closed_at is not None
        else connection.ConnectionState.OPEN,
    )
    upstream = connection.Server(
        address=server, peername=server, timestamp_start=opened_at, timestamp_end=closed_at
    )
    flow = tcp.TCPFlow(client, upstream)
    flow.timestamp_created = opened_at
    flow.messages = [
        tcp.TCPMessage(from_client, data, ts)  # type: ignore[no-untyped-call]
        for from_client, data, ts in chunks
    ]
    if metadata:
        flow.metadata["strangler"] = metadata
    flow.comment = comment
    return flow


class FlowCapture:
    """A ``TrafficTap`` writing one TCP flow per producer session to ``path``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        headers_only: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        flush_bytes: int | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        server: Address = ("legacy", 0),
        listen: Address = ("", 0),
        limits: Limits = DEFAULT_LIMITS,
        interval: float = 0.2,
    ) -> None:
        if max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        self.path = os.fspath(path)
        self.headers_only = headers_only
        self._max_bytes = max_bytes
        # A quarter of the file bound: a partial flow never forces a rotation on its own.
        self._flush_bytes = flush_bytes or min(DEFAULT_FLUSH_BYTES, max(max_bytes // 4, 1))
        self._max_pending = max_pending
        self._server = server
        self._listen = listen
        self._limits = limits
        self._interval = interval
        # Opened now, in the caller's thread, so a bad path fails at startup (OSError).
        self._file: BinaryIO | None = open(self.path, "ab")  # noqa: SIM115 closed in close()
        self._size = self._file.tell()
        self._sessions: dict[str, _Open] = {}
        self._queue: collections.deque[_Part] = collections.deque()
        # Each counter has a single writing thread (event loop: _in_*, writer: _out_*).
        self._in_bytes = 0
        self._out_bytes = 0
        self._dropped = 0
        self._truncated = 0
        self._flows = 0
        self._written = 0
        self._rotations = 0
        self._write_errors = 0
        self._last_error: str | None = None
        self._redactors: dict[str, HeadersOnly] = {}  # writer thread only
        self._handoff = Handoff()  # parts handed to the writer thread, and parts done
        self._closing = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="strangler-capture", daemon=True)
        self._thread.start()

    # -- TrafficTap (event loop: append only) ----------------------------------------------

    def opened(self, session: str, peer: str) -> None:
        if self._closing:
            return
        self._sessions[session] = _Open(uuid.uuid4().hex, session, parse_address(peer), time.time())

    def from_client(self, session: str, data: bytes) -> None:
        self._add(session, True, data)

    def to_client(self, session: str, data: bytes) -> None:
        self._add(session, False, data)

    def closed(self, session: str) -> None:
        recording = self._sessions.pop(session, None)
        if recording is not None:
            self._hand_off(recording, final=True, closed_at=time.time())

    def _add(self, session: str, from_client: bool, data: bytes) -> None:
        recording = self._sessions.get(session)
        if recording is None or recording.truncated:
            self._dropped += len(data)
            if recording is not None:
                recording.dropped += len(data)
            return
        cost = len(data) + _CHUNK_OVERHEAD
        if self._in_bytes - self._out_bytes + cost > self._max_pending:
            recording.truncated = True
            recording.dropped += len(data)
            self._dropped += len(data)
            self._truncated += 1
            return
        # bytes are immutable: keeping the reference costs no copy.
        recording.chunks.append((from_client, data, time.time()))
        recording.size += cost
        self._in_bytes += cost
        if recording.size >= self._flush_bytes:
            self._hand_off(recording, final=False, closed_at=None)

    def _hand_off(self, recording: _Open, *, final: bool, closed_at: float | None) -> None:
        part = _Part(
            recording.capture_id,
            recording.session,
            recording.peer,
            recording.opened_at,
            closed_at,
            recording.part,
            recording.chunks,
            recording.size,
            final,
            recording.truncated,
            recording.dropped,
        )
        recording.chunks = []
        recording.size = 0
        recording.part += 1
        self._handoff.handed += 1
        self._queue.append(part)
        self._handoff.wake.set()

    # -- control (any thread) ----------------------------------------------------------------

    @property
    def stats(self) -> CaptureStats:
        return CaptureStats(
            flows_written=self._flows,
            bytes_written=self._written,
            dropped_bytes=self._dropped,
            truncated_sessions=self._truncated,
            rotations=self._rotations,
            write_errors=self._write_errors,
            last_error=self._last_error,
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every flow handed off before this call is written (True) or timeout."""
        return self._handoff.flush(timeout)

    def close(self, timeout: float = 30.0) -> CaptureStats:
        """Write sessions still open (as non-final parts), then everything queued; idempotent.

        Call it after the proxy stopped (its sessions then closed normally).
        """
        if self._closed:
            return self.stats
        self._closing = True
        for recording in list(self._sessions.values()):
            self._hand_off(recording, final=False, closed_at=None)
        self._sessions.clear()
        self.flush(timeout)
        self._closed = True
        self._handoff.wake.set()
        self._thread.join(timeout=5.0)
        if self._file is not None:
            self._file.close()
            self._file = None
        return self.stats

    def summary(self) -> str:
        s = self.stats
        text = f"capture {self.path}: {s.flows_written} flows, {s.bytes_written} bytes written"
        if s.rotations:
            text += f", rotated {s.rotations} time(s) (previous in {self.path}.1)"
        if s.dropped_bytes:
            text += f"; {s.dropped_bytes} bytes NOT captured ({s.truncated_sessions} sessions cut)"
        if s.write_errors:
            text += f"; {s.write_errors} flows could not be written ({s.last_error})"
        return text

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._handoff.wait_for_work(self._interval)
            while self._queue:
                part = self._queue.popleft()
                try:
                    self._write_part(part)
                except Exception as exc:  # the capture must never take the proxy down
                    self._write_errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"[:300]
                self._out_bytes += part.size
                self._handoff.finish(1)
            if self._closed and not self._queue:
                return

    def _write_part(self, part: _Part) -> None:
        from mitmproxy.io import FlowWriter

        chunks = part.chunks
        meta: dict[str, Any] = {
            "capture_id": part.capture_id,
            "session": part.session,
            "part": part.part,
            "final": part.final,
            "headers_only": self.headers_only,
        }
        if self.headers_only:
            chunks, failure = self._redact(part)
            if failure is not None:
                meta["redaction_failed"] = failure
        if part.truncated:
            meta["truncated"] = True
            meta["dropped_bytes"] = part.dropped
        state = "closed" if part.final else "still open"
        flow = tcp_flow(
            chunks,
            peer=part.peer,
            server=self._server,
            listen=self._listen,
            opened_at=part.opened_at,
            closed_at=part.closed_at,
            metadata=meta,
            comment=f"strangler session {part.session}, part {part.part} ({state})",
        )
        buffer = io.BytesIO()
        FlowWriter(buffer).add(flow)  # type: ignore[no-untyped-call]
        self._write_blob(buffer.getvalue())
        self._flows += 1

    def _redact(self, part: _Part) -> tuple[list[_Chunk], str | None]:
        redactor = self._redactors.get(part.capture_id)
        if redactor is None:
            redactor = self._redactors[part.capture_id] = HeadersOnly(self._limits)
        out: list[_Chunk] = []
        for from_client, data, ts in part.chunks:
            kept = redactor.feed(from_client, data)
            if kept:
                out.append((from_client, kept, ts))
        if part.final:
            del self._redactors[part.capture_id]
        return out, redactor.failed

    def _write_blob(self, blob: bytes) -> None:
        if self._file is not None and self._size and self._size + len(blob) > self._max_bytes:
            self._file.close()
            self._file = None
            os.replace(self.path, self.path + ".1")
            self._rotations += 1
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 closed in close()
            self._size = self._file.tell()
        self._file.write(blob)
        self._file.flush()
        self._size += len(blob)
        self._written += len(blob)
