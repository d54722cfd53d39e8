"""Differential property test: the compiled frame pump against the pure one, and both
against FrameParser, on any byte stream split at any points.

For every chunk both builds must forward the same bytes, give the same records (every
field, and the whole frame behind each) and the same error (class and message), and hold
the same number of bytes. Over the stream, the frames must be FrameParser's (with the
spliced trace header first), the error FrameParser's, raised at the same chunk, and the
forwarded bytes the input itself plus one trace line per SEND.

The streams mix valid frames of every version (LF or CRLF lines, repeated and escaped
headers, content-length or not, non-ASCII), heart-beats, hand-written near-frames
(bad content-lengths, lines without ':', unknown commands) and random bytes, and mutate
some of them, so both the compiled fast path and its fallback to the reference reader run.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pump_builds import compiled_pump
from test_properties import chunked, text_with

from strangler.stomp import Frame, FrameParser, Limits, ProtocolError, encode, pump
from strangler.stomp.frame import COMMANDS, UNESCAPED_COMMANDS

SETTINGS = settings(
    max_examples=int(os.environ.get("STRANGLER_FUZZ", "0") or 0) or 300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
VERSIONS = ("1.0", "1.1", "1.2")
LIMITS = (
    Limits(max_frame_bytes=300, max_headers=10, max_header_line=100),
    Limits(max_frame_bytes=20_000, max_headers=100, max_header_line=8_000),
)
NAMES = ("destination", "receipt", "transaction", "content-length", "a:b", "dést", "x\\y", "")
SPLICE = "strangler-trace"
FIELDS = ("destination", "receipt", "transaction", "content-length")
PASS_FIELDS = ("destination", "receipt", "transaction")
PASSABLE = ("/q/a", "/q/b", "1", "é", "x\\y", "a:b", "")  # destinations that may pass
RUNS = ("run-1", "run-2", None)  # what they map to: one run per value in a row; None: no pass


# -- streams ----------------------------------------------------------------------------

# Mostly plain text (the compiled fast path), sometimes what needs the reference reader.
plain_text = st.text(alphabet="abcxyz/._-0123456789", max_size=10)
names = st.one_of(
    st.sampled_from(FIELDS), st.sampled_from(NAMES), plain_text, text_with(":\\\n\r é")
)
values = st.one_of(
    st.sampled_from(["/q/a", "/q/b", "1", "5", "007", " 3", "x\\y", "é"]),
    plain_text,
    plain_text,
    text_with(":\\\n\r é"),
)

verbatim_values = st.one_of(st.sampled_from(["/q/a", "/q/b", "1", "x\\y", "a:b", "é"]), plain_text)


@dataclass
class Piece:
    wire: bytes
    size: int = 0  # a frame's size (command line through NUL); 0 if not a frame
    lines: int = 0  # its header lines (the command's included)
    longest: int = 0  # its longest line


@st.composite
def valid_frame(draw: st.DrawFn, version: str, plain: bool = False) -> Piece:
    """An encoded frame: repeated names likely, CRLF lines and no content-length sometimes;
    ``plain``: LF lines, nothing to unescape, a content-length (the compiled fast path)."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    if plain or command in UNESCAPED_COMMANDS or version == "1.0":
        # No escaping: a raw LF, CR or ':' in a name would only make a broken frame.
        header = st.tuples(st.one_of(st.sampled_from(FIELDS), plain_text), verbatim_values)
    else:
        header = st.tuples(names, values)
    headers = draw(st.lists(header, max_size=7))
    body = draw(st.one_of(st.binary(max_size=40), st.just(b"x" * 120)))
    headers = [(n, v) for n, v in headers if n != "content-length"]
    for _ in range(draw(st.integers(min_value=0, max_value=2))):  # repeats: the first wins
        name = draw(st.sampled_from([n for n, _ in headers] or ["destination"]))
        at = draw(st.integers(min_value=0, max_value=len(headers)))
        headers.insert(at, (name, draw(header)[1]))
    if plain or draw(st.booleans()) or b"\0" in body:
        at = draw(st.integers(min_value=0, max_value=len(headers)))
        headers.insert(at, ("content-length", str(len(body))))
    head = encode(Frame(command, tuple(headers)), version)[:-3]  # without the blank line
    lines = head.split(b"\n")
    eols = (
        "lf"
        if plain
        else draw(st.sampled_from(["lf"] * 3 + ["crlf", "crlf-headers", "crlf-blank"]))
    )
    if eols == "crlf":
        head = head.replace(b"\n", b"\r\n") + b"\r\n\r\n"
    elif eols == "crlf-headers":
        head = lines[0] + b"\n" + b"".join(line + b"\r\n" for line in lines[1:]) + b"\n"
    elif eols == "crlf-blank":
        head = head + b"\n\r\n"
    else:
        head = head + b"\n\n"
    wire = head + body + b"\0"
    return Piece(wire, len(wire), len(lines), max(len(line) for line in lines))


@st.composite
def send_frame(draw: st.DrawFn, version: str) -> Piece:
    """A SEND as producers send them: a destination (one a case may let pass, mostly),
    sometimes a receipt, transaction or another header, LF or CRLF lines."""
    odd = draw(st.integers(min_value=0, max_value=3)) == 0
    destination = draw(plain_text if odd else st.sampled_from(["/q/a", "/q/a", *PASSABLE]))
    headers = [("destination", destination)]
    extra = st.sampled_from(
        [("receipt", "r-1"), ("transaction", "tx"), ("persistent", "true"), ("destination", "/q/b")]
    )
    for header in draw(st.lists(extra, max_size=2)) if draw(st.booleans()) else ():
        headers.insert(draw(st.integers(min_value=0, max_value=len(headers))), header)
    body = draw(st.binary(max_size=20))
    if draw(st.booleans()) or b"\0" in body:
        headers.append(("content-length", str(len(body))))
    head = encode(Frame("SEND", tuple(headers)), version)[:-3] + b"\n\n"
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        head = head.replace(b"\n", b"\r\n")  # the compiled build's slow path
    wire = head + body + b"\0"
    lines = head.split(b"\n")
    return Piece(wire, len(wire), len(lines) - 2, max(len(line) for line in lines))


def raw_line() -> st.SearchStrategy[bytes]:
    return st.sampled_from(
        [
            b"destination:/q/a\n",
            b"destination:/q/b\n",
            b"receipt:r1\n",
            b"content-length:3\n",
            b"content-length:0003\n",
            b"content-length: 3\n",
            b"content-length:x\n",
            b"content-length:\n",
            b"content-length:99999999999999999999\n",
            b"no colon\n",
            b"a\\cb:c\\nd\n",
            b"bad:\\t\n",
            b"d\xc3\xa9st:\xc3\xa9\n",
            b"bad:\xff\n",
            b"cr:in\rside\n",
            b"crlf:1\r\n",
            b"x" * 70 + b":long\n",
        ]
    )


@st.composite
def near_frame(draw: st.DrawFn) -> Piece:
    """Hand-written frames and near-frames: what encode never produces."""
    command = draw(
        st.sampled_from([b"SEND", b"CONNECT", b"MESSAGE", b"SEND\r", b"SENDX", b"s\xc3\xa9"])
    )
    lines = draw(st.lists(raw_line(), max_size=5))
    body = draw(st.sampled_from([b"", b"abc", b"ab\0", b"abcd", b"x" * 300]))
    end = draw(st.sampled_from([b"\0", b"\0\n", b"\0\r\n", b"\0\r", b"\0\rx", b""]))
    return Piece(command + b"\n" + b"".join(lines) + b"\n" + body + end)


@st.composite
def streams(draw: st.DrawFn, hostile: bool) -> tuple[str, list[Piece]]:
    """Valid frames and heart-beats; ``hostile`` adds near-frames, stray bytes and noise."""
    version = draw(st.sampled_from(VERSIONS))
    pieces = []
    producer = draw(st.booleans())  # SENDs as a producer sends them, mostly
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        # Weighted by hand: hypothesis' one_of would merge repeated branches.
        kind = draw(st.integers(min_value=0, max_value=19 if hostile else 15))
        if kind < (2 if producer else 9):
            pieces.append(draw(valid_frame(version)))
        elif kind < 14:
            pieces.append(draw(send_frame(version)))
        elif kind < 16:
            pieces.append(Piece(draw(st.sampled_from([b"\n", b"\r\n"]))))
        elif kind < 18:
            pieces.append(draw(near_frame()))
        elif kind < 19:
            pieces.append(Piece(draw(st.sampled_from([b"\r", b"\0"]))))
        else:
            pieces.append(Piece(draw(st.binary(max_size=12))))
    return version, pieces


@dataclass
class Case:
    version: str
    data: bytes
    chunks: list[bytes]
    limits: Limits
    fields: tuple[str, ...]
    splice: str | None
    prefix: str
    switch: tuple[int, str] | None  # before chunk i, set the version (as after CONNECTED)
    # The pump's ``passing`` for every chunk but those in ``passing_off`` (None for them).
    passing: dict[str, str | None] | None = None
    passing_off: frozenset[int] = frozenset()


@st.composite
def limits_for(draw: st.DrawFn, pieces: list[Piece]) -> tuple[Limits, list[int]]:
    """Fixed limits, or limits at one of the stream's frames' edges (one below, at, above)
    with a cut inside that frame (a limit must hold before the frame is complete)."""
    frames = [i for i, p in enumerate(pieces) if p.size]
    if not frames or draw(st.booleans()):
        return draw(st.sampled_from(LIMITS)), []
    index = draw(st.sampled_from(frames))
    frame = pieces[index]
    # Each limit roomy, or one below, at or one above what this frame needs.
    limits = LIMITS[1]
    for name, need in (
        ("max_frame_bytes", frame.size),
        ("max_headers", frame.lines - 1),
        ("max_header_line", frame.longest),
    ):
        edge = draw(st.sampled_from([None, -1, 0, 1]))
        if edge is not None:
            limits = replace(limits, **{name: max(1, need + edge)})
    offset = sum(len(p.wire) for p in pieces[:index])
    cut = offset + draw(st.integers(min_value=1, max_value=frame.size))
    return limits, [cut]


@st.composite
def cases(draw: st.DrawFn, hostile: bool) -> Case:
    version, pieces = draw(streams(hostile))
    data = bytearray(b"".join(p.wire for p in pieces))
    for _ in range(draw(st.integers(min_value=0, max_value=2)) if hostile else 0):
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data[at] = draw(st.sampled_from([0x00, 0x0A, 0x0D, 0x3A, 0x5C, 0xFF, 0x41]))
    # Cuts anywhere, and near where pieces start and end (frame and header edges).
    starts = [0]
    for p in pieces:
        starts.append(starts[-1] + len(p.wire))
    near = st.tuples(st.sampled_from(starts), st.integers(min_value=-40, max_value=40))
    cuts = draw(st.lists(st.integers(min_value=0), max_size=6))
    cuts += [max(0, a + b) for a, b in draw(st.lists(near, max_size=6))]
    limits, edge_cuts = draw(limits_for(pieces))
    cuts += edge_cuts
    chunks = chunked(bytes(data), cuts)
    switch = None
    if draw(st.booleans()):
        switch = (
            draw(st.integers(min_value=0, max_value=len(chunks))),
            draw(st.sampled_from(VERSIONS)),
        )
    return Case(
        version=version,
        data=bytes(data),
        chunks=chunks,
        limits=limits,
        fields=draw(st.sampled_from([(), ("destination",), PASS_FIELDS, PASS_FIELDS, FIELDS]))
        + tuple(draw(st.lists(st.sampled_from([*NAMES, "missing"]), max_size=3))),
        splice=draw(st.sampled_from([None, SPLICE, SPLICE])),
        prefix=draw(st.sampled_from(["", "ab12"])),
        switch=switch,
        passing=draw(
            st.none()
            | st.dictionaries(st.sampled_from(PASSABLE), st.sampled_from(RUNS)).map(
                lambda d: {"/q/a": "run-1", **d}
            )
        ),
        passing_off=draw(
            st.frozensets(st.integers(min_value=0, max_value=len(chunks)), max_size=2)
        ),
    )


# -- running one case -------------------------------------------------------------------


def record_of(record: Any) -> tuple[Any, ...]:
    """Everything a record says, its whole frame included (with the raw bytes)."""
    frame = record.frame()
    return (
        record.command,
        record.start,
        record.end,
        record.eol_end,
        record.body_start,
        record.body_end,
        record.values,
        record.trace,
        record.splice_at,
        frame,
        frame.raw,
    )


def error_of(error: ProtocolError | None) -> tuple[str, str] | None:
    return None if error is None else (type(error).__name__, str(error))


def run_pump(cls: type[pump.FramePump], case: Case) -> list[tuple[Any, ...]]:
    """Per chunk: (forwarded bytes, records, error, buffered, passed runs)."""
    pumper = cls(
        case.limits,
        version=case.version,
        fields=case.fields,
        splice=case.splice,
        trace_prefix=case.prefix,
    )
    out = []
    for i, chunk in enumerate(case.chunks):
        if case.switch and case.switch[0] == i:
            pumper.version = case.switch[1]
        pumper.passing = None if i in case.passing_off else case.passing
        result = pumper.feed(chunk)
        for record in result.frames:
            assert result.data[record.start : record.end].endswith(b"\0")
            assert result.data[record.body_end] == 0
        out.append(
            (
                result.data,
                [record_of(r) for r in result.frames],
                error_of(result.error),
                pumper.buffered,
                result.passed,
            )
        )
    return out


def run_parser(case: Case) -> tuple[list[list[Frame]], tuple[int, tuple[str, str]] | None]:
    """FrameParser on the same chunks: frames per chunk, and (chunk index, error)."""
    parser = FrameParser(case.limits, case.version)
    per_chunk: list[list[Frame]] = []
    for i, chunk in enumerate(case.chunks):
        if case.switch and case.switch[0] == i:
            parser.version = case.switch[1]
        try:
            per_chunk.append([e for e in parser.feed(chunk) if isinstance(e, Frame)])
        except ProtocolError as exc:
            return per_chunk, (i, (type(exc).__name__, str(exc)))
    return per_chunk, None


@SETTINGS
@given(case=cases(hostile=False))
def test_both_builds_and_the_parser_agree_on_valid_streams_in_any_chunking(case: Case) -> None:
    check_agreement(case)


@SETTINGS
@given(case=cases(hostile=True))
def test_both_builds_and_the_parser_agree_on_hostile_streams_in_any_chunking(case: Case) -> None:
    check_agreement(case)


@st.composite
def producer_cases(draw: st.DrawFn) -> Case:
    """A producer's SENDs (and a few other frames) in a few reads, with pass-through on."""
    version = draw(st.sampled_from(VERSIONS))
    pieces = [
        draw(valid_frame(version) if draw(st.integers(0, 5)) == 0 else send_frame(version))
        for _ in range(draw(st.integers(min_value=1, max_value=12)))
    ]
    data = b"".join(p.wire for p in pieces)
    chunks = chunked(data, draw(st.lists(st.integers(min_value=0), max_size=3)))
    return Case(
        version=version,
        data=data,
        chunks=chunks,
        limits=LIMITS[1],
        fields=draw(st.sampled_from([("destination",), PASS_FIELDS, (*PASS_FIELDS, SPLICE)])),
        splice=SPLICE,
        prefix=draw(st.sampled_from(["", "ab12"])),
        switch=None,
        passing=draw(
            st.dictionaries(st.sampled_from(PASSABLE), st.sampled_from(RUNS)).map(
                lambda d: {"/q/a": "run-1", **d}
            )
        ),
        passing_off=draw(
            st.frozensets(st.integers(min_value=0, max_value=len(chunks)), max_size=1)
        ),
    )


@SETTINGS
@given(case=producer_cases())
def test_both_builds_agree_on_what_passes_through(case: Case) -> None:
    """Runs of pass-through SENDs: the same in both builds, and each chunk exactly what
    it is without pass-through but for the records of the SENDs that passed."""
    check_agreement(case)


@SETTINGS
@given(data=st.data())
def test_both_builds_agree_at_a_plain_frames_limits_in_any_chunking(data: st.DataObject) -> None:
    """One limit one below, at or one above what a plain frame needs, the frame cut
    anywhere: where the compiled fast path must refuse exactly what the reference does."""
    version = data.draw(st.sampled_from(VERSIONS))
    frame = data.draw(valid_frame(version, plain=True))
    name, need = data.draw(
        st.sampled_from(
            [
                ("max_frame_bytes", frame.size),
                ("max_headers", frame.lines - 1),
                ("max_header_line", frame.longest),
            ]
        )
    )
    limits = replace(LIMITS[1], **{name: max(1, need + data.draw(st.integers(-1, 1)))})
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=frame.size), max_size=3))
    wire = frame.wire + data.draw(st.sampled_from([b"", b"\n", b"SEND\n\n\0"]))
    chunks = chunked(wire, cuts)
    check_agreement(Case(version, wire, chunks, limits, FIELDS, SPLICE, "", None))


def check_agreement(case: Case) -> None:
    for pumped in (case, replace(case, passing=None)):
        pure = run_pump(pump.FramePump, pumped)
        compiled = run_pump(compiled_pump(), pumped)
        for i, (a, b) in enumerate(zip(pure, compiled, strict=True)):
            assert a == b, f"chunk {i}: the builds differ"
    if case.passing is not None:
        check_passing(case, run_pump(pump.FramePump, case), pure)

    parser_frames, parser_error = run_parser(case)
    errors = [(i, chunk[2]) for i, chunk in enumerate(pure) if chunk[2] is not None]
    if parser_error is None:
        assert errors == []
    else:
        # The error comes at the chunk where the parser raised it, then on every later feed.
        assert errors[0] == parser_error
        assert [e for _, e in errors] == [parser_error[1]] * len(errors)
    for i, frames in enumerate(parser_frames):
        got = [r[9] for r in pure[i][1]]
        if case.splice is not None:
            want = [
                Frame(f.command, ((SPLICE, r[7]), *f.headers), f.body) if f.command == "SEND" else f
                for f, r in zip(frames, pure[i][1], strict=True)
            ]
        else:
            want = frames
        assert got == want, f"chunk {i}: frames differ from FrameParser's"
        assert [r[6] for r in pure[i][1]] == [tuple(map(f.get, case.fields)) for f in frames]

    # Forwarded bytes: the input, in order, with one trace line per SEND.
    forwarded = b""
    sends = 0
    for data, records, _, _, _ in pure:
        at = 0
        for r in records:
            if r[7] is not None:
                sends += 1
                line = f"{SPLICE}:{case.prefix}{sends:08x}\n".encode()
                assert r[7] == f"{case.prefix}{sends:08x}"
                assert data[r[8] : r[8] + len(line)] == line
                forwarded += data[at : r[8]]
                at = r[8] + len(line)
        forwarded += data[at:]
    if not errors:
        assert forwarded + case.data[len(case.data) - pure[-1][3] :] == case.data
    else:
        assert case.data.startswith(forwarded)


def check_passing(case: Case, passing: list[tuple[Any, ...]], plain: list[tuple[Any, ...]]) -> None:
    """A chunk pumped with ``passing`` is the same chunk pumped without, but for the
    records of its first SENDs in a row that may pass: those are runs, and only those."""
    assert case.passing is not None
    for i, (got, want) in enumerate(zip(passing, plain, strict=True)):
        data, records, error, buffered, runs = got
        assert (data, error, buffered) == (want[0], want[2], want[3]), f"chunk {i}"
        expanded = [(value, first + k) for value, first, count in runs for k in range(count)]
        assert all(count > 0 for _, _, count in runs)
        assert all(a[0] is not b[0] for a, b in itertools.pairwise(runs)), "runs not merged"
        passed = len(expanded)
        event(f"passed: {min(passed, 3)}, after: {min(len(records), 2)}")
        assert records == want[1][passed:], f"chunk {i}: records differ"
        on = bool(case.splice is not None and case.fields and i not in case.passing_off)
        for (value, counter), record in zip(expanded, want[1], strict=False):
            assert passes(case, on, record)
            assert value == case.passing[record[6][0]] and value is not None
            assert record[7] == f"{case.prefix}{counter:08x}"
        if passed < len(want[1]):
            assert not passes(case, on, want[1][passed]), f"chunk {i}: a SEND did not pass"


def passes(case: Case, on: bool, record: tuple[Any, ...]) -> bool:
    """The record's frame may pass: a SEND with its first field mapped to a value (not
    None) in ``passing`` and none of the others."""
    assert case.passing is not None
    command, values = record[0], record[6]
    return (
        on
        and command == "SEND"
        and case.passing.get(values[0]) is not None
        and all(v is None for v in values[1:])
    )
