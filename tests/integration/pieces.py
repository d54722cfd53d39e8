"""Where the proxy cut what it wrote to a client (the transparency harness's pieces check).

ActiveMQ writes each frame together with its trailing EOL in one write, and a heart-beat
EOL in one of its own (both checked on the direct runs through ``wire.Read.segments``).
A proxy must not cut that into pieces a client can see: a client that polls its socket
after CONNECT and finds a lone EOL blocks (issue #20, item 1).

The proxy in these tests runs in-process, so its writes to each client are recorded
exactly, through its traffic tap (``ProxyContext.tap``, the interface ``--capture``
uses): one record per write call, in order. A write boundary inside a unit (a frame and
its trailing EOL, or a standalone EOL) is a cut. On loopback, with TCP_NODELAY (the
proxy sets it), each write leaves as a segment of its own: what the client's kernel
counts as data segments (``wire.Read.segments``, shown in the report) is the same thing
seen from the client, but that counter also counts a segment the peer sent again (a
tail-loss probe when an ACK was late), so it cannot decide alone.

Invariant: a :class:`WriteLog` is filled on the proxy's event loop and read by the test
thread only after the client read everything it wanted; reads wait (bounded) until the
log holds as many bytes as the client read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .wire import Eol, Frame, Tokenizer

_CATCH_UP = 2.0  # seconds the log may lag behind what the client already read


@dataclass
class _Session:
    port: int
    writes: list[bytes] = field(default_factory=list)
    size: int = 0


class WriteLog:
    """A ``TrafficTap``: every write of the proxy to a client, per client port."""

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._by_port: dict[int, _Session] = {}
        self._changed = threading.Condition()

    def opened(self, session: str, peer: str) -> None:
        port = int(peer.rsplit(":", 1)[1])
        with self._changed:
            self._sessions[session] = self._by_port[port] = _Session(port)

    def from_client(self, session: str, data: bytes) -> None:
        pass

    def to_client(self, session: str, data: bytes) -> None:
        with self._changed:
            record = self._sessions.get(session)
            if record is not None:
                record.writes.append(bytes(data))
                record.size += len(data)
                self._changed.notify_all()

    def closed(self, session: str) -> None:
        pass

    def writes_to(self, port: int, size: int) -> list[bytes]:
        """The writes to the client on ``port``, once they add up to ``size`` bytes."""
        with self._changed:
            self._changed.wait_for(
                lambda: port in self._by_port and self._by_port[port].size >= size, _CATCH_UP
            )
            record = self._by_port.get(port)
            return list(record.writes) if record is not None else []


def cuts(data: bytes, writes: list[bytes], *, login: bool) -> list[str]:
    """Write boundaries within ``data`` (what the client read) that fall inside a unit;
    the first unit (CONNECTED and its EOL) only if ``login``."""
    tokenizer = Tokenizer()
    tokens = tokenizer.feed(data)
    units: list[tuple[int, int, str]] = []  # start, end, what
    start = 0
    for token, end in zip(tokens, tokenizer.ends, strict=True):
        if isinstance(token, Eol) and token.trailing and units:
            units[-1] = (units[-1][0], end, units[-1][2] + " and its EOL")
        elif isinstance(token, Frame):
            units.append((start, end, token.command))
        else:
            units.append((start, end, "a heart-beat EOL"))
        start = end
    allowed = {end for _, end, _ in units}
    found = []
    offset = 0
    for write in writes[:-1]:
        offset += len(write)
        if offset >= len(data) or offset in allowed:
            continue
        first, end, what = next(((s, e, w) for s, e, w in units if s < offset < e), (0, 0, "?"))
        if first == 0 and not login:
            continue
        where = "after its NUL" if data[offset - 1] == 0 else f"{offset - first} bytes in"
        found.append(f"the proxy wrote {what} in pieces (a write ended {where})")
    return found
