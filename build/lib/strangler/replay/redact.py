"""Headers-only captures: every STOMP frame kept, every body emptied.

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

from ..stomp import Frame, FrameParser, Limits, ProtocolError, encode_parts


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
