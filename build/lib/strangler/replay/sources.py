"""The SENDs in a capture (mitmproxy flow file) or a facts file, in a reproducible order.

A capture holds raw TCP: per flow, what the producer sent (client -> server messages) and
what it received. The client bytes are parsed with ``strangler.stomp.FrameParser`` the
way the proxy parses them: STOMP 1.0 until the server's CONNECTED names the negotiated
version, which then applies to both directions.

Invariants:
- Order is file order, then flow order, then frame order: reading the same files twice
  yields the same messages with the same keys (``CapturedMessage.key``), so reports and
  the replay position (``publish``) are reproducible.
- A SEND inside a transaction is yielded at its COMMIT, in send order; SENDs of an
  aborted or never-committed transaction are counted (``uncommitted``), not yielded,
  because the broker never delivered them either.
- Flows written by ``FlowCapture`` in several parts (a long session, see ``capture``) are
  joined through ``metadata["strangler"]["capture_id"]``, across files given in order
  (``FILE.1 FILE``). A session whose first part is missing (rotated away) is skipped and
  reported: parsing a stream from its middle would misread a body as frames.
- A malformed stream stops that session (reported in ``errors``), never the whole read.
- Facts files yield one message per ``message_routed`` fact: destination and trace id
  only. Facts hold no bodies and no sticky-header values, so split decisions made from
  facts use the trace id as key (exact for routes without ``sticky_header``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..stomp import Frame, FrameParser, Headers, Limits, ProtocolError
from .extra import INSTALL, mitmproxy_installed

Kind = Literal["flows", "facts"]

# Captures come from anywhere (mitmdump in front of an ActiveMQ allowing 100 MiB frames),
# so reading is more lenient than the proxy; a frame is still bounded.
READ_LIMITS: Final = Limits(max_frame_bytes=256 * 1024 * 1024, max_header_line=1024 * 1024)
# Namespace of the stable ids of SENDs that carry no trace header (uuid5 of flow + frame).
_KEY_NAMESPACE: Final = uuid.UUID("6f1d3c56-3a0e-4c1e-9a57-7a3f0c2b9e11")
_TNETSTRING_START: Final = re.compile(rb"\d{1,12}:")
_MAX_ERRORS: Final = 100


class SourceError(Exception):
    """A file that is neither a readable flow file nor a facts file."""


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One SEND as the producer sent it (capture) or as the proxy recorded it (facts).

    ``body`` is None when the source does not have it (facts, headers-only captures).
    ``headers`` are unescaped values in wire order, empty for facts.
    """

    origin: str  # the flow (capture session) id, or "facts:<file>"
    index: int  # the frame's position in its session (CONNECT = 0); facts: the line number
    destination: str
    headers: Headers = ()
    body: bytes | None = None
    trace_id: str | None = None  # what the facts recorded

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (STOMP 1.2: the first occurrence wins)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def stable_id(self) -> str:
        """A trace-id-shaped id derived from ``origin`` and ``index`` only."""
        return uuid.uuid5(_KEY_NAMESPACE, f"{self.origin}#{self.index}").hex

    def key(self, trace_header: str) -> str:
        """The message key the live proxy decides with: the trace id.

        The trace header's value when the producer set one (the proxy keeps it), else the
        recorded trace id (facts), else ``stable_id`` (the proxy would have made a random
        one; a stable one keeps reports reproducible).
        """
        value = self.header(trace_header) if self.headers else None
        if value is not None:
            return value
        return self.trace_id if self.trace_id is not None else self.stable_id


@dataclass(slots=True)
class SourceStats:
    """What reading found besides the messages; filled in while iterating."""

    files: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    sessions: int = 0  # TCP sessions (a multi-part capture session counts once)
    skipped_flows: int = 0  # non-TCP flows (HTTP, UDP, ...): not STOMP producers
    messages: int = 0
    uncommitted: int = 0  # SENDs in transactions that were aborted or never committed
    incomplete: int = 0  # sessions that ended inside a frame
    truncated: int = 0  # capture sessions the proxy stopped recording (memory bound)
    headers_only: bool = False  # some flow was captured without bodies
    login: tuple[str, str] | None = None  # the first CONNECT's login and passcode
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "kinds": self.kinds,
            "sessions": self.sessions,
            "skipped_flows": self.skipped_flows,
            "messages": self.messages,
            "uncommitted": self.uncommitted,
            "incomplete": self.incomplete,
            "truncated": self.truncated,
            "headers_only": self.headers_only,
            "errors": self.errors,
        }


def detect_kind(path: str) -> Kind:
    """A file's kind judged by content: flows (mitmproxy tnetstring) or facts (JSON lines)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text or _TNETSTRING_START.match(text):
        return "flows"
    if text.startswith(b"{") and _looks_like_fact(text.split(b"\n", 1)[0]):
        return "facts"
    raise SourceError(
        f"{path}: neither a mitmproxy flow file (TCP flows) nor a strangler facts file"
    )


def _looks_like_fact(line: bytes) -> bool:
    try:
        fact = json.loads(line)
    except ValueError:
        # A first line longer than the 4 KiB read is cut: judge it by its start.
        return b'{"event"' in line[:16]
    return isinstance(fact, dict) and "event" in fact


class MessageSource:
    """Iterate the SENDs of ``paths`` (each a flow file or a facts file), in order.

    ``stats`` is complete once iteration has finished. Iterating again re-reads the files
    and yields the same messages (used by ``publish`` to count before sending).
    """

    def __init__(self, paths: Sequence[str], limits: Limits = READ_LIMITS) -> None:
        self.paths = list(paths)
        self.limits = limits
        self.kinds = [detect_kind(path) for path in self.paths]
        flows = [p for p, kind in zip(self.paths, self.kinds, strict=True) if kind != "facts"]
        if flows and not mitmproxy_installed():
            raise SourceError(
                f"{flows[0]}: reading a mitmproxy flow file needs mitmproxy, "
                f"which is not installed: {INSTALL}"
            )
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[CapturedMessage]:
        self.stats = stats = SourceStats(files=list(self.paths), kinds=list(self.kinds))
        joiner = _Sessions(stats, self.limits)
        for path, kind in zip(self.paths, self.kinds, strict=True):
            if kind == "facts":
                yield from _read_facts(path, stats)
            else:
                yield from joiner.read(path)
        joiner.finish_all()

    @property
    def has_bodies(self) -> bool:
        """False when some message's body is missing (facts or headers-only captures)."""
        return "facts" not in self.kinds and not self.stats.headers_only


# -- facts ----------------------------------------------------------------------------------


def _read_facts(path: str, stats: SourceStats) -> Iterator[CapturedMessage]:
    origin = f"facts:{os.path.basename(path)}"
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if '"message_routed"' not in line:  # cheap skip of every other fact
                continue
            try:
                fact = json.loads(line)
            except ValueError:
                stats.error(f"{path}:{number}: not a JSON line")
                continue
            if not isinstance(fact, dict) or fact.get("event") != "message_routed":
                continue
            destination, trace = fact.get("destination"), fact.get("trace_id")
            if not isinstance(destination, str) or not isinstance(trace, str):
                stats.error(f"{path}:{number}: message_routed without destination or trace_id")
                continue
            stats.messages += 1
            yield CapturedMessage(origin, number, destination, trace_id=trace)


# -- flows ----------------------------------------------------------------------------------


class _Session:
    """Parser state of one producer connection, possibly spread over several flows."""

    def __init__(self, origin: str, limits: Limits, stats: SourceStats) -> None:
        self.origin = origin
        self.stats = stats
        self.client = FrameParser(limits)
        self.server: FrameParser | None = FrameParser(limits)  # None once CONNECTED was seen
        self.frames = 0
        self.headers_only = False
        self.failed = False
        self.transactions: dict[str, list[CapturedMessage]] = {}

    def feed(self, from_client: bool, data: bytes) -> list[CapturedMessage]:
        if self.failed:
            return []
        if not from_client:
            self._feed_server(data)
            return []
        try:
            events = self.client.feed(data)
        except ProtocolError as exc:
            self._fail(f"{exc.reason} (after {self.frames} frames)")
            return []
        ready: list[CapturedMessage] = []
        for event in events:
            if isinstance(event, Frame):
                self._on_frame(event, ready)
        return ready

    def _feed_server(self, data: bytes) -> None:
        # Only the CONNECTED frame matters (the version); later bytes (MESSAGE bodies)
        # are not parsed at all.
        server = self.server
        if server is None:
            return
        try:
            events = server.feed(data)
        except ProtocolError:
            self.server = None  # an unparseable server stream: keep the 1.0 default
            return
        for event in events:
            if isinstance(event, Frame):
                if event.command == "CONNECTED":
                    self.client.version = event.get("version") or "1.0"
                self.server = None
                return

    def _on_frame(self, frame: Frame, ready: list[CapturedMessage]) -> None:
        index = self.frames
        self.frames += 1
        command = frame.command
        if command == "SEND":
            destination = frame.get("destination")
            if not destination:
                self.stats.error(f"flow {self.origin}: SEND #{index} has no destination")
                return
            message = CapturedMessage(
                self.origin,
                index,
                destination,
                frame.headers,
                None if self.headers_only else frame.body,
            )
            tx = frame.get("transaction")
            if tx is not None and tx in self.transactions:
                self.transactions[tx].append(message)
            else:
                ready.append(message)
        elif command in ("CONNECT", "STOMP"):
            login, passcode = frame.get("login"), frame.get("passcode")
            if self.stats.login is None and login and passcode:
                self.stats.login = (login, passcode)
        elif command == "BEGIN":
            tx = frame.get("transaction")
            if tx is not None:
                self.transactions[tx] = []
        elif command == "COMMIT":
            ready.extend(self.transactions.pop(frame.get("transaction") or "", ()))
        elif command == "ABORT":
            self.stats.uncommitted += len(self.transactions.pop(frame.get("transaction") or "", ()))

    def _fail(self, reason: str) -> None:
        self.failed = True
        self.stats.error(f"flow {self.origin}: stopped reading: {reason}")

    def finish(self) -> None:
        self.stats.uncommitted += sum(len(sends) for sends in self.transactions.values())
        self.transactions.clear()
        if not self.failed and self.client.buffered:
            self.stats.incomplete += 1


class _Sessions:
    """Reads flow files, joining the parts of FlowCapture sessions."""

    def __init__(self, stats: SourceStats, limits: Limits) -> None:
        self.stats = stats
        self.limits = limits
        self.open: dict[str, _Session] = {}  # capture_id -> session awaiting more parts
        self.skipped: set[str] = set()  # capture ids whose first part was missing

    def read(self, path: str) -> Iterator[CapturedMessage]:
        # Imported here: the facts-only path and the CLI's startup stay free of mitmproxy.
        from mitmproxy import exceptions, io, tcp

        try:
            with open(path, "rb") as f:
                for flow in io.FlowReader(f).stream():
                    if not isinstance(flow, tcp.TCPFlow):
                        self.stats.skipped_flows += 1
                        continue
                    yield from self._flow(flow)
        except exceptions.FlowReadException as exc:
            raise SourceError(f"{path}: not a readable mitmproxy flow file: {exc}") from None
        except OSError as exc:
            raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None

    def _flow(self, flow: Any) -> Iterator[CapturedMessage]:
        meta = flow.metadata.get("strangler")
        if not isinstance(meta, dict) or not isinstance(meta.get("capture_id"), str):
            # A plain mitmproxy TCP flow (mitmdump): one flow is one whole session.
            whole = _Session(str(flow.id), self.limits, self.stats)
            self.stats.sessions += 1
            yield from self._messages(whole, flow)
            whole.finish()
            return
        capture_id: str = meta["capture_id"]
        if capture_id in self.skipped:
            return
        session = self.open.get(capture_id)
        if session is None:
            if meta.get("part", 0) != 0:
                self.skipped.add(capture_id)
                self.stats.error(
                    f"capture session {capture_id}: first part missing "
                    "(rotated away?); its later parts are skipped"
                )
                return
            session = self.open[capture_id] = _Session(capture_id, self.limits, self.stats)
            self.stats.sessions += 1
        if meta.get("headers_only"):
            session.headers_only = self.stats.headers_only = True
        if meta.get("truncated"):
            self.stats.truncated += 1
        yield from self._messages(session, flow)
        if meta.get("final"):
            del self.open[capture_id]
            session.finish()

    def _messages(self, session: _Session, flow: Any) -> Iterator[CapturedMessage]:
        for message in flow.messages:
            for captured in session.feed(bool(message.from_client), bytes(message.content)):
                self.stats.messages += 1
                yield captured

    def finish_all(self) -> None:
        # Sessions still open when the capture stopped: their committed SENDs were yielded.
        for session in self.open.values():
            session.finish()
        self.open.clear()
