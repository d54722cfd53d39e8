"""Redacting captures: producers' passcodes always (unless asked), bodies in headers-only mode.

``WithoutPasscodes`` (every capture, unless ``--capture-passcodes``): the client stream is
kept byte for byte except the value of every ``passcode`` header of a CONNECT/STOMP frame,
which is emptied.

- Frames are found with ``FrameParser``; a frame's bytes are handed on once the frame is
  complete (so a frame split over reads lands in the chunk that completed it), every other
  frame exactly as read (``Frame.raw``), heart-beats too.
- A stream that fails to parse is passed on from there with every line that starts with
  ``passcode:`` emptied (no frame is trusted any more, so no passcode is either); so is an
  incomplete frame left when the session ends (``finish``).

Headers-only captures: every STOMP frame kept, every body emptied.

Bodies may hold customer data; headers are what routing needs (destination, sticky and
trace headers). Frames are parsed with ``FrameParser`` and re-encoded with an empty body
and no ``content-length`` (which would otherwise announce a body that is not there).

Invariants:
- Output is a valid STOMP stream of the same frames in the same order, heart-beats
  included; only bodies, ``content-length`` and the CONNECT/STOMP ``passcode`` value
  (a password) are gone.
- Both directions of a session share the negotiated version: the server's CONNECTED sets
  it, so escaped header values re-encode exactly as they were parsed.
- A stream that fails to parse yields nothing from that point on (never raw bytes, which
  could hold a body); ``failed`` says why.
"""

from __future__ import annotations

import re
from typing import Final

from ..stomp import Frame, FrameParser, Limits, ProtocolError, encode_parts

_LOGIN_COMMANDS: Final = ("CONNECT", "STOMP")
_PASSCODE_LINE: Final = re.compile(rb"(?m)^(passcode:)[^\r\n]*")


def blank_passcodes(data: bytes) -> bytes:
    """``data`` with the value of every line starting ``passcode:`` removed."""
    return _PASSCODE_LINE.sub(rb"\1", data) if b"passcode:" in data else data


def _login_without_passcode(raw: bytes) -> bytes:
    """A CONNECT/STOMP frame's bytes with its passcode values emptied (its body untouched)."""
    end = raw.find(b"\n\n")
    crlf = raw.find(b"\r\n\r\n")
    if end < 0 or 0 <= crlf < end:
        end = crlf
    return blank_passcodes(raw[:end]) + raw[end:]


class WithoutPasscodes:
    """Redacts one session's client stream: passcodes of its login frames, nothing else."""

    __slots__ = ("_held", "_parser", "failed")

    def __init__(self, limits: Limits) -> None:
        self._parser = FrameParser(limits)
        self._held = bytearray()  # the bytes the parser holds: an incomplete frame
        self.failed: str | None = None

    def feed(self, data: bytes) -> bytes:
        if self.failed is not None:
            return blank_passcodes(data)
        self._held += data
        try:
            events = self._parser.feed(data)
        except ProtocolError as exc:
            self.failed = f"client stream: {exc.reason}"
            return self.finish()
        done = len(self._held) - self._parser.buffered
        ready = bytes(self._held[:done])
        del self._held[:done]
        if not any(isinstance(e, Frame) and e.command in _LOGIN_COMMANDS for e in events):
            return ready
        out: list[bytes] = []
        pos = 0
        for event in events:
            if isinstance(event, Frame):
                assert event.raw is not None  # the parser always sets it
                size = len(event.raw)
                if event.command in _LOGIN_COMMANDS:
                    out.append(_login_without_passcode(event.raw))
                else:
                    out.append(ready[pos : pos + size])
            else:  # a heart-beat: LF or CRLF
                size = 2 if ready[pos] == 0x0D else 1
                out.append(ready[pos : pos + size])
            pos += size
        return b"".join(out)

    def finish(self) -> bytes:
        """What is still held (an incomplete frame), passcode lines emptied."""
        tail = blank_passcodes(bytes(self._held))
        self._held.clear()
        return tail


def without_body(frame: Frame, version: str) -> bytes:
    """``frame`` re-encoded with an empty body (and without a password, for CONNECT)."""
    login_frame = frame.command in ("CONNECT", "STOMP")
    headers = tuple(
        (name, "" if login_frame and name == "passcode" else value)
        for name, value in frame.headers
        if name != "content-length"
    )
    return encode_parts(frame.command, headers, b"", version)


class HeadersOnly:
    """Redacts one session: feed each chunk with its direction, get the redacted bytes."""

    __slots__ = ("_client", "_server", "failed")

    def __init__(self, limits: Limits) -> None:
        self._client = FrameParser(limits)
        self._server = FrameParser(limits)
        self.failed: str | None = None

    def feed(self, from_client: bool, data: bytes) -> bytes:
        if self.failed is not None:
            return b""
        parser = self._client if from_client else self._server
        try:
            events = parser.feed(data)
        except ProtocolError as exc:
            side = "client" if from_client else "server"
            self.failed = f"{side} stream: {exc.reason}"
            return b""
        out: list[bytes] = []
        for event in events:
            if not isinstance(event, Frame):
                out.append(b"\n")
                continue
            # Encoded with the version the frame was parsed with, before CONNECTED changes it.
            out.append(without_body(event, parser.version))
            if event.command == "CONNECTED":
                self._client.version = self._server.version = event.get("version") or "1.0"
        return b"".join(out)
