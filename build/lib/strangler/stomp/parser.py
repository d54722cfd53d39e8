"""Incremental, sans-I/O STOMP 1.0/1.1/1.2 frame parser.

Feed it bytes as they arrive; it returns every complete event (frames and
heart-beat EOLs) and keeps the rest. It never blocks, never touches a socket,
and raises only :class:`~strangler.stomp.errors.ProtocolError` subclasses.

Invariants:
- the buffer never holds more than one frame's worth of bytes beyond
  ``Limits.max_frame_bytes`` (plus the last chunk fed): an incomplete frame
  that already exceeds a limit is refused before more bytes are buffered;
- a body is read by ``content-length`` when that header is present (binary
  bodies may hold NUL), else up to the first NUL (spec: "Body");
- lines end in LF or CRLF (1.2 "Augmented BNF"; accepted for every version,
  as ActiveMQ does);
- header names/values are UTF-8; values are unescaped per :attr:`version`
  except in CONNECT/STOMP/CONNECTED frames.
"""

from __future__ import annotations

from .errors import FrameTooLarge, HeaderLineTooLong, MalformedFrame, TooManyHeaders
from .escaping import unescape
from .frame import COMMANDS, HEARTBEAT, UNESCAPED_COMMANDS, Event, Frame, Headers
from .limits import DEFAULT_LIMITS, Limits

_LF = 0x0A
_CR = 0x0D


class FrameParser:
    """Bytes in, :class:`Frame`/:class:`Heartbeat` events out.

    ``version`` starts at "1.0" (CONNECT frames are never escaped, so the
    parser does not need the version before the handshake); the session sets
    it to the negotiated version once CONNECTED is seen.
    """

    # _need: bytes the incomplete frame at the buffer's start needs in total (known from
    # its content-length), _scanned: bytes of it already searched for NUL. Both spare a
    # slow-dripping frame from being re-parsed from scratch on every feed (quadratic).
    __slots__ = ("_buf", "_need", "_scanned", "limits", "version")

    def __init__(self, limits: Limits = DEFAULT_LIMITS, version: str = "1.0") -> None:
        self._buf = bytearray()
        self._need = 0
        self._scanned = 0
        self.limits = limits
        self.version = version

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        """Add ``data`` and return every event now complete, in order."""
        buf = self._buf
        buf += data
        events: list[Event] = []
        pos = 0
        try:
            while pos < len(buf):
                first = buf[pos]
                if first == _LF:
                    events.append(HEARTBEAT)
                    pos += 1
                    continue
                if first == _CR:
                    if pos + 1 >= len(buf):
                        break
                    if buf[pos + 1] != _LF:
                        raise MalformedFrame("CR not followed by LF")
                    events.append(HEARTBEAT)
                    pos += 2
                    continue
                if self._need and len(buf) - pos < self._need:
                    break
                frame, end = self._parse_frame(buf, pos)
                if frame is None:
                    break
                self._need = self._scanned = 0
                events.append(frame)
                pos = end
        finally:
            if pos:
                del buf[:pos]
        return events

    def _parse_frame(self, buf: bytearray, start: int) -> tuple[Frame | None, int]:
        limits = self.limits
        # Most frames: LF lines and a short header block, found with one bounded search.
        header_end = buf.find(b"\n\n", start, start + limits.max_header_line + 2)
        parsed = None
        if header_end >= 0:
            parsed = self._plain_headers(buf, start, header_end)
        if parsed is None:
            parsed = self._headers(buf, start)
            if parsed is None:
                return None, start
        command, headers, first, body_start = parsed
        self._check_size(body_start - start, complete=False)
        length_text = first.get("content-length")
        if length_text is not None:
            length_text = length_text.strip()
            if not (length_text.isascii() and length_text.isdigit()):
                raise MalformedFrame(f"content-length is not a number: {length_text[:32]!r}")
            digits = length_text.lstrip("0")
            if len(digits) > 18:  # int() refuses > 4300 digits; any limit is far below this
                raise FrameTooLarge(f"frame larger than {limits.max_frame_bytes} bytes")
            length = int(digits or "0")
            # + 1 for the terminating NUL, which counts in the complete-frame check below.
            self._check_size(body_start - start + length + 1, complete=False)
            end = body_start + length
            if len(buf) <= end:
                self._need = end + 1 - start
                return None, start
            if buf[end] != 0:
                raise MalformedFrame("frame body longer than content-length (no NUL after body)")
        else:
            end = buf.find(b"\0", max(body_start, start + self._scanned))
            if end < 0:
                self._check_size(len(buf) - start, complete=False)
                self._scanned = len(buf) - start
                return None, start
        self._check_size(end + 1 - start, complete=True)
        # One copy out of the buffer (slicing a bytearray, then bytes(), would be two).
        raw = bytes(memoryview(buf)[start : end + 1])
        frame = Frame(command, headers, raw[body_start - start : -1], raw, first)
        return frame, end + 1

    def _plain_headers(
        self, buf: bytearray, start: int, header_end: int
    ) -> tuple[str, Headers, dict[str, str], int] | None:
        """The header block ``buf[start:header_end]`` in one decode and one split; None
        when it needs the line-by-line path (CR, bad UTF-8, an unknown command), which
        gives the precise error. Callers ensure the whole block is within
        ``max_header_line``, so no single line can exceed it."""
        block = buf[start:header_end]
        if _CR in block:  # CRLF lines
            return None
        try:
            lines = block.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            return None
        command = lines[0]
        if command not in COMMANDS:
            return None
        if len(lines) > self.limits.max_headers + 1:
            raise TooManyHeaders(f"more than {self.limits.max_headers} headers")
        headers, first = self._pairs(command, lines[1:])
        return command, headers, first, header_end + 2

    def _headers(
        self, buf: bytearray, start: int
    ) -> tuple[str, Headers, dict[str, str], int] | None:
        """Line by line, CRLF allowed and every limit checked; None while incomplete."""
        limits = self.limits
        lines: list[bytearray] = []
        line_start = start
        while True:
            nl = buf.find(b"\n", line_start)
            if nl < 0:
                pending = len(buf) - line_start
                if pending and buf[-1] == _CR:
                    pending -= 1  # may be the CR of a CRLF, not part of the line
                if pending > limits.max_header_line:
                    raise HeaderLineTooLong(
                        f"header line longer than {limits.max_header_line} bytes"
                    )
                self._check_size(len(buf) - start, complete=False)
                return None
            line_end = nl - 1 if nl > line_start and buf[nl - 1] == _CR else nl
            if line_end - line_start > limits.max_header_line:
                raise HeaderLineTooLong(f"header line longer than {limits.max_header_line} bytes")
            if line_end == line_start:
                break
            lines.append(buf[line_start:line_end])  # a bytearray copy; decoded below
            if len(lines) > limits.max_headers + 1:
                raise TooManyHeaders(f"more than {limits.max_headers} headers")
            line_start = nl + 1
        try:
            command = lines[0].decode("ascii")
        except UnicodeDecodeError:
            raise MalformedFrame("command is not ASCII") from None
        if command not in COMMANDS:
            raise MalformedFrame(f"unknown command {command[:32]!r}")
        try:
            text = [line.decode("utf-8") for line in lines[1:]]
        except UnicodeDecodeError:
            raise MalformedFrame("header is not valid UTF-8") from None
        headers, first = self._pairs(command, text)
        return command, headers, first, nl + 1

    def _pairs(self, command: str, lines: list[str]) -> tuple[Headers, dict[str, str]]:
        """Header lines as (name, value) in wire order, and the first value of each name."""
        escaped = command not in UNESCAPED_COMMANDS and self.version != "1.0"
        headers: list[tuple[str, str]] = []
        first: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise MalformedFrame(f"header line without ':' ({line[:32]!r})")
            if escaped and "\\" in line:  # most lines have nothing to unescape
                name = unescape(name, self.version)
                value = unescape(value, self.version)
            headers.append((name, value))
            if name not in first:
                first[name] = value
        return tuple(headers), first

    def _check_size(self, size: int, *, complete: bool) -> None:
        if size > self.limits.max_frame_bytes:
            what = "frame" if complete else "incomplete frame"
            raise FrameTooLarge(f"{what} larger than {self.limits.max_frame_bytes} bytes")
