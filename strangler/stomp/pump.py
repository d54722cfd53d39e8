"""The frame pump, pure Python: one call per socket read, bytes to forward and a record
per frame. This is the reference build; ``_pump.pyx`` is its compiled twin and
``native.py`` chooses between them (``STRANGLER_NO_EXTENSIONS=1`` forces this one).

``FramePump.feed(chunk)`` returns a :class:`Pumped`:

- ``data``: every complete frame and EOL of the input, in order, as bytes to forward.
  When ``splice`` is set, each SEND gets the line ``<splice>:<trace id>\\n`` right after
  its command line, so it is the frame's first header and wins (STOMP 1.2 "Repeated
  Header Entries"; ActiveMQ keeps the first of repeated headers too). The trace id is
  ``trace_prefix`` followed by the pump's own SEND counter (from 1) as at least 8
  lowercase hex digits.
- ``frames``: one :class:`PumpedFrame` per complete frame, with offsets into ``data``.
- ``error``: the :class:`ProtocolError` that stopped the input, or None. Frames complete
  before it are still returned; every later ``feed`` returns the same error.
- ``passed``: the SENDs that *passed through* (see below) as runs ``(value, first,
  count)``: ``count`` SENDs in a row whose first field's value maps to ``value`` in
  ``passing``, with trace counters ``first``, ``first + 1``, ... They have no record.

Pass-through: when ``passing`` (a dict) is set and ``splice`` is, a SEND whose first
field's value maps to a value other than None in ``passing`` and that has none of the
other ``fields`` is
forwarded as usual (trace line spliced) but gets no record, only a place in a run.
Only the frames before a read's first record can pass: the session decides the frames
after a record one by one (a record may block or end the session), so a passed frame
is always one that would have been forwarded right away.

Invariants (the compiled twin keeps them too, checked by a differential property test):
- frames, limits and errors are :class:`FrameParser`'s: this build drives the parser's
  own frame reader (``_parse_frame``) over the pump's buffer, so a frame, or the class
  and message of an error, is what ``FrameParser.feed`` gives for the same bytes;
- ``values`` are the *first* value of each name in ``fields``, unescaped as the parser
  does, from the frame as received (a producer's own value of ``splice`` is visible);
- the buffer holds only an incomplete frame (or a CR that may start a CRLF), never more
  than the parser would; it is a ``bytearray``, which gives memory back when a large
  frame has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .errors import MalformedFrame, ProtocolError
from .frame import Frame
from .limits import DEFAULT_LIMITS, Limits
from .parser import FrameParser

_LF: Final = 0x0A
_CR: Final = 0x0D
VERSIONS: Final = ("1.0", "1.1", "1.2")


def check_token(what: str, text: str, *, empty: bool) -> None:
    """``text`` must be printable ASCII with no byte that needs escaping in a header
    (``:`` or ``\\``), so the spliced line means the same in every STOMP version."""
    if not empty and not text:
        raise ValueError(f"{what} must not be empty")
    if not (text.isascii() and text.isprintable()) or ":" in text or "\\" in text:
        raise ValueError(f"{what} must be printable ASCII without ':' or '\\': {text!r}")


def check_version(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(f"unknown STOMP version {version!r}")
    return version


def spliced(parsed: Frame, raw: bytes, splice: str | None, trace: str | None) -> Frame:
    """The frame as forwarded: ``parsed`` (as received) with the spliced header first."""
    if trace is None or splice is None:
        return parsed
    return Frame(parsed.command, ((splice, trace), *parsed.headers), parsed.body, raw)


def reparse(received: bytes, limits: Limits, version: str) -> Frame:
    """``received`` (one whole frame, as it came in) parsed by the reference parser."""
    (frame,) = FrameParser(limits, version).feed(received)
    assert isinstance(frame, Frame)
    return frame


class PumpedFrame:
    """One complete frame of a :class:`Pumped` chunk; offsets are into ``Pumped.data``.

    ``start``..``end``: command line through the NUL (the spliced line included);
    ``eol_end``: the end of the one EOL (LF or CRLF) right after the NUL when it is in
    this chunk, else ``end``; ``body_start``..``body_end``: the body (NUL excluded);
    ``values``: aligned with the pump's ``fields``; ``trace``: the spliced id or None;
    ``splice_at``: where the spliced line starts, or -1.
    """

    __slots__ = (
        "_data",
        "_parsed",
        "_splice",
        "body_end",
        "body_start",
        "command",
        "end",
        "eol_end",
        "splice_at",
        "start",
        "trace",
        "values",
    )

    _data: bytes
    _parsed: Frame
    _splice: str | None
    command: str
    start: int
    end: int
    eol_end: int
    body_start: int
    body_end: int
    values: tuple[str | None, ...]
    trace: str | None
    splice_at: int

    def frame(self) -> Frame:
        """The whole :class:`Frame` as forwarded (spliced header first); ``raw`` is
        ``data[start:end]``. For what the pump's record does not hold."""
        raw = self._data[self.start : self.end]
        return spliced(self._parsed, raw, self._splice, self.trace)

    def __repr__(self) -> str:
        return (
            f"PumpedFrame({self.command} {self.start}:{self.end} eol_end={self.eol_end} "
            f"body={self.body_start}:{self.body_end} values={self.values!r} "
            f"trace={self.trace!r} splice_at={self.splice_at})"
        )


class Pumped:
    """What one ``feed`` gives: bytes to forward, a record per frame, an error or None."""

    __slots__ = ("data", "error", "frames", "passed")

    def __init__(
        self,
        data: bytes,
        frames: list[PumpedFrame],
        error: ProtocolError | None,
        passed: list[tuple[Any, int, int]],
    ) -> None:
        self.data = data
        self.frames = frames
        self.error = error
        self.passed = passed

    def __repr__(self) -> str:
        return (
            f"Pumped({len(self.data)} bytes, {len(self.frames)} frames, "
            f"{sum(count for _, _, count in self.passed)} passed, error={self.error!r})"
        )


class FramePump:
    """Bytes in, bytes to forward plus a :class:`PumpedFrame` per frame out (pure build).

    ``version`` starts as given ("1.0" before the handshake: CONNECT frames are never
    escaped); the session sets it to the negotiated version once CONNECTED is seen.
    """

    __slots__ = (
        "_buf",
        "_count",
        "_error",
        "_fields",
        "_line_head",
        "_parser",
        "_slow",
        "_splice",
        "limits",
        "passing",
        "trace_prefix",
    )

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        *,
        version: str = "1.0",
        fields: Sequence[str] = (),
        splice: str | None = None,
        trace_prefix: str = "",
    ) -> None:
        if splice is not None:
            check_token("splice", splice, empty=False)
        check_token("trace_prefix", trace_prefix, empty=True)
        self.limits = limits
        self._parser = FrameParser(limits, check_version(version))
        self._buf = bytearray()
        self._fields = tuple(fields)
        self._splice = splice
        self._line_head = b"" if splice is None else f"{splice}:".encode()
        self.trace_prefix = trace_prefix  # read only: the prefix of every trace id
        self._count = 0
        self._slow = 0
        self._error: ProtocolError | None = None
        # Set by the session before a feed: the SENDs that may pass through (above).
        self.passing: dict[str, Any] | None = None

    @property
    def version(self) -> str:
        return self._parser.version

    @version.setter
    def version(self, version: str) -> None:
        self._parser.version = check_version(version)

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (or a CR that may start a CRLF)."""
        return len(self._buf)

    @property
    def sends(self) -> int:
        """SENDs that got a trace id so far (the last id's counter)."""
        return self._count

    @property
    def slow_frames(self) -> int:
        """Frames read by the reference reader: all of them in this build; in the compiled
        one, those its fast path leaves to it (CRLF, escapes, errors)."""
        return self._slow

    def feed(self, data: bytes) -> Pumped:
        """Add ``data``; return the complete frames and EOLs, their records, any error."""
        if self._error is not None:
            return Pumped(b"", [], self._error, [])
        buf = self._buf
        buf += data
        parser = self._parser
        fields = self._fields
        splice = self._splice
        records: list[PumpedFrame] = []
        passing = self.passing if splice is not None and fields else None
        passed: list[tuple[Any, int, int]] = []
        npassed = 0
        run: Any = None  # the open run's value; run_first, run_count: its counters
        run_first = run_count = 0
        view = memoryview(buf)  # slices without copies; released before buf is resized
        pieces: list[bytes | memoryview] = []  # the output when something is spliced in
        copied = 0  # buf[:copied] is in pieces
        shift = 0  # bytes spliced in before pos: output offset - buffer offset
        pos = 0
        size = len(buf)
        error: ProtocolError | None = None
        try:
            while pos < size:
                first = buf[pos]
                if first == _LF:
                    pos += 1
                    continue
                if first == _CR:
                    if pos + 1 >= size:
                        break
                    if buf[pos + 1] != _LF:
                        raise MalformedFrame("CR not followed by LF")
                    pos += 2
                    continue
                if parser._need and size - pos < parser._need:
                    break
                frame, end = parser._parse_frame(buf, pos)
                if frame is None:
                    break
                parser._need = parser._scanned = 0
                values = tuple(map(frame._first.get, fields))  # Frame.get without its call
                start = pos + shift
                trace: str | None = None
                splice_at = -1
                if splice is not None and frame.command == "SEND":
                    self._count += 1
                    trace = f"{self.trace_prefix}{self._count:08x}"
                    line_at = buf.index(b"\n", pos) + 1
                    line = self._line_head + trace.encode() + b"\n"
                    pieces.append(view[copied:line_at])
                    pieces.append(line)
                    copied = line_at
                    splice_at = line_at + shift
                    shift += len(line)
                    if (
                        passing is not None
                        and not records
                        and (value := passing.get(values[0])) is not None  # type: ignore[arg-type]
                        and values.count(None) == len(values) - 1
                    ):
                        if value is not run:  # never None: a run starts
                            if run_count:
                                passed.append((run, run_first, run_count))
                            run, run_first, run_count = value, self._count, 0
                        run_count += 1
                        npassed += 1
                        pos = end
                        continue
                record = PumpedFrame()
                record.command = frame.command
                record._parsed = frame
                record._splice = splice
                record.values = values
                record.start = start
                record.trace = trace
                record.splice_at = splice_at
                record.end = end + shift
                record.body_end = record.end - 1
                record.body_start = record.body_end - len(frame.body)
                if end < size and buf[end] == _LF:
                    record.eol_end = record.end + 1
                elif end + 1 < size and buf[end] == _CR and buf[end + 1] == _LF:
                    record.eol_end = record.end + 2
                else:
                    record.eol_end = record.end
                records.append(record)
                pos = end
        except ProtocolError as exc:
            error = self._error = exc
        if pieces:
            pieces.append(view[copied:pos])
            out = b"".join(pieces)
        else:
            out = bytes(view[:pos])
        pieces.clear()
        view.release()
        if pos:
            del buf[:pos]
        for record in records:
            record._data = out
        if run_count:
            passed.append((run, run_first, run_count))
        self._slow += len(records) + npassed
        return Pumped(out, records, error, passed)
