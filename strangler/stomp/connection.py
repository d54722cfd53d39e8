"""The state of one STOMP connection, seen from one side (the h11 ``_state`` pattern).

Sans-I/O: it reads frames and says whether they are legal now; it never touches a
socket. The proxy keeps one per peer: toward a producer it plays the broker
(``Role.SERVER``), toward Amazon MQ the client (``Role.CLIENT``).

Invariants:
- a frame is checked against the state before it changes it: the first client frame
  must be CONNECT or STOMP, the first server frame CONNECTED or ERROR (spec:
  "Connecting"); after that only the other client (server) commands; nothing after
  DISCONNECT's frame or an ERROR;
- a frame missing a header its command requires in the negotiated version (spec:
  "Frames and Headers", per command) is a protocol error, as the broker would answer;
- errors say whose fault they are: ``RemoteProtocolError`` (the peer broke the
  protocol; carries the ERROR frame to answer with) or ``LocalProtocolError`` (we were
  about to).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .errors import ProtocolError
from .frame import CLIENT_COMMANDS, SERVER_COMMANDS, Frame
from .serializer import error_frame

SUPPORTED_VERSIONS: Final = ("1.0", "1.1", "1.2")


class Role(StrEnum):
    CLIENT = "client"  # we send CONNECT (the proxy toward Amazon MQ)
    SERVER = "server"  # we answer CONNECT (the proxy toward a producer)


class State(StrEnum):
    CONNECTING = "connecting"  # before CONNECT/CONNECTED
    CONNECTED = "connected"
    DISCONNECTING = "disconnecting"  # the client sent DISCONNECT
    CLOSED = "closed"  # an ERROR was sent or received, or the socket ended


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; ``answer`` is the ERROR frame to send before closing."""

    @property
    def answer(self) -> bytes:
        return error_frame(self.reason)


class LocalProtocolError(ProtocolError):
    """We were about to break the protocol (a bug on our side, never the peer's)."""


# Headers each command must carry, by version (ActiveMQ answers their absence with ERROR;
# 1.0 ACK/UNSUBSCRIBE accept either form, checked in ``missing_header``).
_REQUIRED: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "1.0": {
        "SEND": ("destination",),
        "SUBSCRIBE": ("destination",),
        "BEGIN": ("transaction",),
        "COMMIT": ("transaction",),
        "ABORT": ("transaction",),
        "ACK": ("message-id",),
        "MESSAGE": ("destination", "message-id"),
        "RECEIPT": ("receipt-id",),
    },
    "1.1": {
        "SEND": ("destination",),
        "SUBSCRIBE": ("destination", "id"),
        "UNSUBSCRIBE": ("id",),
        "BEGIN": ("transaction",),
        "COMMIT": ("transaction",),
        "ABORT": ("transaction",),
        "ACK": ("message-id", "subscription"),
        "NACK": ("message-id", "subscription"),
        "MESSAGE": ("destination", "message-id", "subscription"),
        "RECEIPT": ("receipt-id",),
        "CONNECTED": ("version",),
    },
    "1.2": {
        "SEND": ("destination",),
        "SUBSCRIBE": ("destination", "id"),
        "UNSUBSCRIBE": ("id",),
        "BEGIN": ("transaction",),
        "COMMIT": ("transaction",),
        "ABORT": ("transaction",),
        "ACK": ("id",),
        "NACK": ("id",),
        "MESSAGE": ("destination", "message-id", "subscription"),
        "RECEIPT": ("receipt-id",),
        "CONNECTED": ("version",),
    },
}


def missing_header(frame: Frame, version: str) -> str | None:
    """The first header ``frame`` needs in ``version`` and lacks (spec: per command)."""
    if frame.command == "UNSUBSCRIBE" and version == "1.0":
        return None if "id" in frame or "destination" in frame else "id"
    for name in _REQUIRED[version].get(frame.command, ()):
        if name not in frame:
            return name
    return None


def negotiate_version(accept_version: str | None) -> str | None:
    """The highest version both sides speak (spec: "Protocol Negotiation"); None if none.

    No ``accept-version`` header means a 1.0 client."""
    if accept_version is None:
        return "1.0"
    offered = {v.strip() for v in accept_version.split(",")}
    for version in reversed(SUPPORTED_VERSIONS):
        if version in offered:
            return version
    return None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Negotiated heart-beating in seconds; 0 means none (spec: "Heart-beating")."""

    send_every: float
    expect_every: float


def parse_heartbeat(value: str | None) -> tuple[int, int]:
    """``cx,cy`` in milliseconds; malformed or absent is ``0,0`` (as ActiveMQ treats it)."""
    x, _, y = (value or "0,0").partition(",")
    try:
        return max(0, int(x.strip())), max(0, int(y.strip() or "0"))
    except ValueError:
        return 0, 0


def negotiate_heartbeat(ours: tuple[int, int], theirs: tuple[int, int]) -> Heartbeat:
    """What we send and expect, given our ``cx,cy`` and the peer's (in ms).

    We send every max(our cx, their cy) if both are non-zero, and expect the peer
    every max(their cx, our cy) if both are non-zero."""
    our_send, our_want = ours
    their_send, their_want = theirs
    send = max(our_send, their_want) if our_send and their_want else 0
    expect = max(their_send, our_want) if their_send and our_want else 0
    return Heartbeat(send / 1000, expect / 1000)


class StompConnection:
    """Which frames are legal now, for one side of one connection."""

    __slots__ = ("check_headers", "role", "state", "version")

    def __init__(self, role: Role, *, check_headers: bool = True) -> None:
        self.role = role
        # False: a missing required header is not this object's concern (a proxy lets the
        # broker behind it answer, as the broker would; see ``missing_header``).
        self.check_headers = check_headers
        self.state = State.CONNECTING
        self.version = "1.0"

    def receive(self, frame: Frame) -> None:
        """Check a frame the peer sent and advance; raise ``RemoteProtocolError``."""
        self._check(frame, RemoteProtocolError, peer_is_client=self.role is Role.SERVER)

    def send(self, frame: Frame) -> None:
        """Check a frame we are about to send and advance; raise ``LocalProtocolError``."""
        self._check(frame, LocalProtocolError, peer_is_client=self.role is Role.CLIENT)

    def connected(self, version: str) -> None:
        """The handshake ended with CONNECTED in ``version``."""
        self.version = version
        self.state = State.CONNECTED

    def closed(self) -> None:
        self.state = State.CLOSED

    def _check(self, frame: Frame, error: type[ProtocolError], *, peer_is_client: bool) -> None:
        command = frame.command
        from_client = peer_is_client
        allowed = CLIENT_COMMANDS if from_client else SERVER_COMMANDS
        if command not in allowed:
            side = "client" if from_client else "server"
            raise error(f"{command} is not a {side} frame")
        if self.state is State.CLOSED:
            raise error(f"{command} after the connection ended")
        if self.state is State.CONNECTING:
            first = ("CONNECT", "STOMP") if from_client else ("CONNECTED", "ERROR")
            if command not in first:
                raise error(f"expected {' or '.join(first)}, got {command}")
            if command == "ERROR":
                self.state = State.CLOSED
            return
        if command in ("CONNECT", "STOMP", "CONNECTED"):
            raise error(f"{command} after the session is established")
        if self.state is State.DISCONNECTING and from_client:
            raise error(f"{command} after DISCONNECT")
        missing = missing_header(frame, self.version) if self.check_headers else None
        if missing is not None:
            raise error(f"{command} frame has no {missing} header")
        if command == "DISCONNECT":
            self.state = State.DISCONNECTING
        elif command == "ERROR":
            self.state = State.CLOSED
