"""A STOMP client on a raw socket that records exactly what it reads, for the
transparency harness (tests/integration/test_transparency.py).

Nothing here uses strangler's own codec: the tokenizer below is deliberately a second,
independent reading of the byte stream, so a parser bug in the proxy cannot hide itself.

What a :class:`WireClient` records, per connection:
- every token it read, in order: frames (command, header lines as sent, body), EOLs
  (each with its exact bytes, ``trailing`` when it directly follows a frame's NUL, as
  ActiveMQ ends every frame), end of input, and waits that ended empty-handed;
- every ``recv`` as the socket returned it (the chunk), with the number of TCP data
  segments the kernel had received for it (``TCP_INFO.tcpi_data_segs_in``), and when.

The chunks show how the client saw the bytes cut, but two writes of the peer reach one
``recv`` or two depending on the reader's timing; the segment counts do not depend on
it (on loopback each ``send`` of a TCP_NODELAY peer is one segment), but they include
a segment sent again (a tail-loss probe when an ACK was late: the client sets
TCP_QUICKACK after each read to make that rare). Both are reported; ``pieces.py`` judges
from the proxy's own writes.

Invariants: a token is recorded once, when it completed; the client never raises
because of what the peer did (a closed connection is a token), so a conversation always
runs to its end.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

STEP_WAIT = 5.0  # seconds a wait lasts for what the direct run showed arrives in ms
_TCP_INFO_DATA_SEGS_IN = 152  # offsetof(struct tcp_info, tcpi_data_segs_in), Linux >= 4.6


@dataclass(frozen=True, slots=True)
class Frame:
    command: str
    headers: tuple[tuple[str, str], ...]  # as on the wire (still escaped), in order
    body: bytes

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (STOMP: the first occurrence wins)."""
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True)
class Eol:
    text: bytes  # b"\n" or b"\r\n"
    trailing: bool  # directly after a frame's NUL: that frame's EOL, not a heart-beat


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the connection (recv returned b"" or the connection was reset)."""


@dataclass(frozen=True, slots=True)
class Missing:
    """A wait for something that did not come within ``STEP_WAIT``."""

    waited_for: str


Token = Frame | Eol | Closed | Missing


class Tokenizer:
    """Bytes in, tokens out; keeps an incomplete frame until the rest arrives.
    ``ends[i]`` is the stream offset just past the i-th token."""

    def __init__(self) -> None:
        self._buf = b""
        self._after_nul = False
        self._consumed = 0
        self.ends: list[int] = []

    def feed(self, data: bytes) -> list[Token]:
        self._buf += data
        out: list[Token] = []
        while self._buf:
            token: Token
            if self._buf.startswith(b"\n") or self._buf.startswith(b"\r\n"):
                size = 1 if self._buf[0] == 0x0A else 2
                token = Eol(self._buf[:size], self._after_nul)
                self._after_nul = False
            elif self._buf == b"\r":
                break
            else:
                parsed = _frame(self._buf)
                if parsed is None:
                    break
                token, size = parsed
                self._after_nul = True
            out.append(token)
            self._buf = self._buf[size:]
            self._consumed += size
            self.ends.append(self._consumed)
        return out


def _frame(buf: bytes) -> tuple[Frame, int] | None:
    """The frame at the start of ``buf`` and its size (through the NUL), or None."""
    lines: list[str] = []
    pos = 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return None
        line = buf[pos:nl].removesuffix(b"\r").decode("utf-8")
        pos = nl + 1
        if not line:
            break
        lines.append(line)
    headers = tuple((k, v) for k, _, v in (line.partition(":") for line in lines[1:]))
    length = next((v for k, v in headers if k == "content-length"), None)
    if length is not None:
        end = pos + int(length)
        if len(buf) <= end:
            return None
    else:
        end = buf.find(b"\0", pos)
        if end < 0:
            return None
    return Frame(lines[0], headers, buf[pos:end]), end + 1


def encode(
    command: str, headers: list[tuple[str, str]], body: bytes = b"", eol: bytes = b"\n"
) -> bytes:
    lines = [command, *(f"{k}:{v}" for k, v in headers)]
    return eol.join(line.encode() for line in lines) + eol + eol + body + b"\0"


def data_segments_in(sock: socket.socket) -> int:
    """TCP data segments this socket has received so far (Linux ``tcp_info``)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    assert len(info) >= _TCP_INFO_DATA_SEGS_IN + 4, "kernel too old for tcpi_data_segs_in"
    return int(struct.unpack_from("I", info, _TCP_INFO_DATA_SEGS_IN)[0])


@dataclass(slots=True)
class Read:
    data: bytes
    segments: int  # TCP data segments that arrived for this read
    at: float  # monotonic time of the read
    tokens: list[Token] = field(default_factory=list)


class WireClient:
    """One STOMP connection on a raw socket; writes frames, reads and records tokens.

    ``framing`` b"\\r\\n" writes every frame's lines (and heart-beats) with CRLF.
    ``heartbeat_ms`` > 0: an EOL is written that often while the client waits to read.
    """

    def __init__(
        self,
        name: str,
        port: int,
        *,
        framing: bytes = b"\n",
        heartbeat_ms: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.framing = framing
        self.heartbeat_ms = heartbeat_ms
        self.sock = socket.create_connection((host, port), timeout=STEP_WAIT)
        self.port: int = self.sock.getsockname()[1]  # the proxy's peer port for this client
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        self.tokens: list[Token] = []
        self.reads: list[Read] = []
        self.closed = False  # the peer closed (or we dropped the connection)
        self.via_legacy = False  # talks to legacy directly in every run
        self._tokenizer = Tokenizer()
        self._segments = data_segments_in(self.sock)
        self._last_beat = time.monotonic()

    # -- writing --------------------------------------------------------------

    def write(self, command: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        """One frame, one ``sendall``."""
        self.write_bytes(encode(command, headers, body, self.framing))

    def write_bytes(self, data: bytes) -> None:
        """``data`` in one ``sendall``; a connection the peer closed is recorded, not raised
        (the comparison shows it)."""
        if self.closed:
            return
        try:
            self.sock.sendall(data)
        except OSError:
            self.tokens.append(Closed())
            self.closed = True
        self._last_beat = time.monotonic()

    def drop(self) -> None:
        """Close without DISCONNECT (a crashed or killed client)."""
        self.closed = True
        self.sock.close()

    # -- reading --------------------------------------------------------------

    def expect(self, what: str, done: Callable[[list[Token]], bool]) -> bool:
        """Read until ``done(tokens)``; False (and a ``Missing`` token) after ``STEP_WAIT``."""
        deadline = time.monotonic() + STEP_WAIT
        while not done(self.tokens):
            if self.closed or not self._read_some(deadline):
                self.tokens.append(Missing(what))
                return False
        return True

    def frames(self, command: str | None = None) -> list[Frame]:
        return [t for t in self.tokens if isinstance(t, Frame) and command in (None, t.command)]

    def receipt(self, receipt_id: str) -> bool:
        return self.expect(
            f"RECEIPT {receipt_id}",
            lambda tokens: any(
                isinstance(t, Frame)
                and t.command == "RECEIPT"
                and t.get("receipt-id") == receipt_id
                for t in tokens
            ),
        )

    def messages(self, count: int) -> list[Frame]:
        """Wait until ``count`` MESSAGEs were read in all; every MESSAGE read so far."""
        self.expect(f"{count} MESSAGE frames", lambda _: len(self.frames("MESSAGE")) >= count)
        return self.frames("MESSAGE")

    def until_closed(self) -> bool:
        return self.expect("end of input", lambda tokens: bool(tokens) and tokens[-1] == Closed())

    def _read_some(self, deadline: float) -> bool:
        """One ``recv`` (writing due heart-beats while waiting); False at ``deadline``."""
        while True:
            now = time.monotonic()
            wait = deadline - now
            if self.heartbeat_ms:
                beat_at = self._last_beat + self.heartbeat_ms / 1000
                if beat_at <= now:
                    self.sock.sendall(self.framing)
                    self._last_beat = now
                    continue
                wait = min(wait, beat_at - now)
            if wait <= 0:
                return False
            if select.select([self.sock], [], [], wait)[0]:
                break
            if time.monotonic() >= deadline:
                return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if data:
            # ACK at once (the kernel clears this after use): a delayed ACK lets the peer's
            # tail-loss probe send a segment again, and the copy counts as a segment in.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        segments = data_segments_in(self.sock) if data else self._segments
        read = Read(data, segments - self._segments, time.monotonic())
        self._segments = segments
        if data:
            read.tokens = self._tokenizer.feed(data)
        else:
            read.tokens = [Closed()]
            self.closed = True
        self.reads.append(read)
        self.tokens += read.tokens
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()
