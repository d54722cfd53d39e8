"""STOMP frames as values.

A :class:`Frame` is what the parser yields and what the serializer encodes.
Invariants: ``headers`` keeps every header line in wire order (repeated names
included); :meth:`Frame.get` returns the *first* value of a name, as STOMP 1.2
("Repeated Header Entries") requires. ``raw`` holds the exact wire bytes the
frame was parsed from (command line through the terminating NUL), so a frame
that needs no rewrite can be forwarded untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

CLIENT_COMMANDS: Final = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "ACK",
        "NACK",
        "DISCONNECT",
    }
)
SERVER_COMMANDS: Final = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
COMMANDS: Final = CLIENT_COMMANDS | SERVER_COMMANDS
# Spec: "The CONNECT and CONNECTED frames do not escape the carriage return,
# line feed or colon octets", so headers of these frames are taken verbatim.
UNESCAPED_COMMANDS: Final = frozenset({"CONNECT", "STOMP", "CONNECTED"})

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Frame:
    command: str
    headers: Headers = ()
    body: bytes = b""
    raw: bytes | None = field(default=None, compare=False, repr=False)
    _first: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ValueError(f"unknown STOMP command {self.command!r}")
        if not self._first and self.headers:
            first: dict[str, str] = {}
            for name, value in self.headers:
                first.setdefault(name, value)
            object.__setattr__(self, "_first", first)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (STOMP 1.2: first one wins)."""
        return self._first.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._first

    def with_headers(self, headers: Headers) -> Frame:
        """The same command and body with other headers (no raw bytes: it must be re-encoded)."""
        return Frame(self.command, headers, self.body)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A bare EOL between frames (spec: "Heart-beating")."""


HEARTBEAT: Final = Heartbeat()

Event = Frame | Heartbeat
