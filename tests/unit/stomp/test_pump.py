"""The frame pump's contract, example by example, on both builds (pure and compiled)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from pump_builds import BUILDS, pump_class

from strangler.stomp import (
    Frame,
    FrameParser,
    FrameTooLarge,
    Limits,
    MalformedFrame,
    ProtocolError,
    pump,
)

SPLICE = "strangler-trace-id"
FIELDS = ("destination", "receipt", "transaction", "content-length")


def make(build: str, **kwargs: object) -> pump.FramePump:
    options: dict[str, object] = {"version": "1.2", "fields": FIELDS}
    options.update(kwargs)
    return pump_class(build)(**options)  # type: ignore[arg-type]


@pytest.fixture(params=BUILDS)
def build(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_each_send_gets_the_trace_line_right_after_its_command_line(build: str) -> None:
    pumper = make(build, splice=SPLICE, trace_prefix="s1-")
    wire = b"SEND\ndestination:/q/a\n\nhi\0\nSEND\r\ndestination:/q/b\r\n\r\nho\0"
    out = pumper.feed(wire)
    assert out.error is None
    assert out.data == (
        b"SEND\nstrangler-trace-id:s1-00000001\ndestination:/q/a\n\nhi\0\n"
        b"SEND\r\nstrangler-trace-id:s1-00000002\ndestination:/q/b\r\n\r\nho\0"
    )
    first, second = out.frames
    assert (first.trace, second.trace) == ("s1-00000001", "s1-00000002")
    assert out.data[first.splice_at :].startswith(b"strangler-trace-id:s1-00000001\n")
    assert out.data[second.splice_at :].startswith(b"strangler-trace-id:s1-00000002\n")
    assert (first.start, first.end, first.eol_end) == (0, 57, 58)
    assert (second.start, second.end, second.eol_end) == (58, len(out.data), len(out.data))
    assert out.data[first.body_start : first.body_end] == b"hi"
    assert out.data[second.body_start : second.body_end] == b"ho"
    # The spliced header is the first one, so it wins over a producer's own.
    assert second.frame().headers[0] == (SPLICE, "s1-00000002")
    assert second.frame().raw == out.data[second.start : second.end]
    # The counter goes on across feeds.
    assert pumper.feed(b"SEND\n\n\0").frames[0].trace == "s1-00000003"
    assert pumper.sends == 3


def test_without_splice_or_for_other_commands_the_bytes_pass_unchanged(build: str) -> None:
    wire = b"SUBSCRIBE\nid:1\ndestination:/q/a\n\n\0\nSEND\ndestination:/q/a\n\nx\0\n\n"
    plain = make(build).feed(wire)
    assert plain.data == wire
    assert [f.trace for f in plain.frames] == [None, None]
    assert [f.splice_at for f in plain.frames] == [-1, -1]
    spliced = make(build, splice=SPLICE).feed(wire)
    assert spliced.frames[0].trace is None
    assert spliced.frames[1].trace == "00000001"
    assert spliced.data == wire.replace(b"SEND\n", b"SEND\nstrangler-trace-id:00000001\n")


def test_values_are_the_first_of_each_header_unescaped_as_the_parser_does(build: str) -> None:
    wire = (
        b"SEND\ndestination:/q/first\ntransaction:t\\c1\ndestination:/q/second\n"
        b"content-length:2\n\nab\0"
    )
    (frame,) = make(build).feed(wire).frames
    assert frame.values == ("/q/first", None, "t:1", "2")
    (verbatim,) = make(build, version="1.0").feed(wire).frames
    assert verbatim.values == ("/q/first", None, "t\\c1", "2")
    connect = b"CONNECT\nlogin:a\\cb\nhost:/\n\n\0"  # never escaped, in any version
    assert make(build, fields=("login",)).feed(connect).frames[0].values == ("a\\cb",)
    (parsed,) = FrameParser(version="1.2").feed(wire)
    assert isinstance(parsed, Frame)
    assert frame.frame() == parsed


def test_values_come_from_the_frame_as_received_not_the_spliced_header(build: str) -> None:
    pumper = make(build, fields=(SPLICE, "destination"), splice=SPLICE)
    (frame,) = pumper.feed(b"SEND\nstrangler-trace-id:mine\ndestination:/q\n\n\0").frames
    assert frame.values == ("mine", "/q")
    assert frame.frame().get(SPLICE) == "00000001"
    assert frame.frame().headers[1] == (SPLICE, "mine")


@pytest.mark.parametrize(
    ("tail", "eol"),
    [(b"\n", 1), (b"\r\n", 2), (b"", 0), (b"\r", 0), (b"\n\n", 1), (b"SEND\n\n\0", 0)],
)
def test_eol_end_covers_the_one_eol_right_after_the_nul(build: str, tail: bytes, eol: int) -> None:
    frame = make(build).feed(b"SEND\n\nx\0" + tail).frames[0]
    assert frame.end == 8
    assert frame.eol_end == 8 + eol


def test_an_eol_in_the_next_chunk_is_forwarded_there(build: str) -> None:
    pumper = make(build)
    first = pumper.feed(b"SEND\n\nx\0\r")
    assert first.data == b"SEND\n\nx\0"
    assert first.frames[0].eol_end == first.frames[0].end
    assert pumper.buffered == 1  # the CR, until its LF comes
    second = pumper.feed(b"\n")
    assert (second.data, second.frames, pumper.buffered) == (b"\r\n", [], 0)


def test_a_frame_split_over_feeds_comes_whole_with_offsets_in_its_own_chunk(build: str) -> None:
    pumper = make(build, splice=SPLICE)
    wire = b"\nSEND\ndestination:/q/a\ncontent-length:5\n\nhello\0\n"
    got = []
    for i in range(len(wire)):
        got.append(pumper.feed(wire[i : i + 1]))
    datas = b"".join(p.data for p in got)
    assert datas == wire.replace(b"SEND\n", b"SEND\nstrangler-trace-id:00000001\n")
    (done,) = [p for p in got if p.frames]
    (frame,) = done.frames
    assert done.data[frame.start : frame.end] == datas[1:-1]
    assert frame.values == ("/q/a", None, None, "5")
    assert pumper.buffered == 0


def test_frames_before_a_protocol_error_are_returned_then_the_error_every_time(
    build: str,
) -> None:
    pumper = make(build)
    wire = b"SEND\n\na\0\nBOGUS\n\n\0SEND\n\nb\0"
    out = pumper.feed(wire)
    assert [f.command for f in out.frames] == ["SEND"]
    assert out.data == b"SEND\n\na\0\n"
    assert isinstance(out.error, MalformedFrame)
    with pytest.raises(ProtocolError) as raised:
        FrameParser(version="1.2").feed(wire)
    assert (type(out.error), str(out.error)) == (type(raised.value), str(raised.value))
    again = pumper.feed(b"SEND\n\nc\0")
    assert (again.data, again.frames, again.error) == (b"", [], out.error)


def test_limits_are_the_parsers(build: str) -> None:
    limits = Limits(max_frame_bytes=64, max_headers=2, max_header_line=32)
    cases = [
        b"SEND\ncontent-length:100\n\n",  # refused before the body arrives
        b"SEND\na:1\nb:2\nc:3\n\n\0",
        b"SEND\n" + b"x" * 40,
        b"SEND\n\n" + b"y" * 70,
    ]
    for wire in cases:
        out = pump_class(build)(limits).feed(wire)
        with pytest.raises(ProtocolError) as raised:
            FrameParser(limits).feed(wire)
        assert out.error is not None, wire
        assert (type(out.error), str(out.error)) == (type(raised.value), str(raised.value))
    assert isinstance(pump_class(build)(limits).feed(cases[0]).error, FrameTooLarge)


@pytest.mark.parametrize("size", [63, 64, 65])
def test_a_frame_one_byte_over_the_limit_is_refused_before_its_body_arrives(
    build: str, size: int
) -> None:
    limits = Limits(max_frame_bytes=64)
    head = b"SEND\ncontent-length:%d\n\n"
    body = size - len(head % 10) - 1  # command line through NUL: size bytes
    wire = (head % body) + b"b" * body + b"\0"
    assert len(wire) == size
    pumper = pump_class(build)(limits)
    first = pumper.feed(wire[:-5])  # headers complete, body not
    if size <= 64:
        assert first.error is None
        assert pumper.feed(wire[-5:]).frames[0].end == size
    else:
        assert isinstance(first.error, FrameTooLarge)
        assert str(first.error) == "incomplete frame larger than 64 bytes"


def test_version_set_after_connected_applies_to_the_next_frames(build: str) -> None:
    pumper = make(build, version="1.0", fields=("destination",))
    wire = b"SEND\ndestination:a\\cb\n\n\0"
    assert pumper.feed(wire).frames[0].values == ("a\\cb",)
    pumper.version = "1.2"
    assert pumper.version == "1.2"
    assert pumper.feed(wire).frames[0].values == ("a:b",)
    with pytest.raises(ValueError, match="version"):
        pumper.version = "2.0"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("splice", "a:b"),
        ("splice", ""),
        ("splice", "a\\b"),
        ("trace_prefix", "x\n"),
        ("version", "1.3"),
    ],
)
def test_a_splice_or_prefix_that_would_need_escaping_is_refused(
    build: str, option: str, value: str
) -> None:
    with pytest.raises(ValueError):
        make(build, **{option: value})


def test_plain_frames_take_the_compiled_fast_path_and_the_rest_the_reference() -> None:
    pumper = make("compiled", splice=SPLICE)
    pumper.feed(b"SEND\ndestination:/q\n\nx\0\nSEND\ndestination:/q\ncontent-length:1\n\ny\0")
    assert pumper.slow_frames == 0
    pumper.feed(b"SEND\r\ndestination:/q\r\n\r\nx\0SEND\ndestination:a\\cb\n\n\0")
    assert pumper.slow_frames == 2
    pure = make("pure")
    pure.feed(b"SEND\n\n\0")
    assert pure.slow_frames == 1


def test_the_buffer_gives_memory_back_after_a_large_frame(build: str) -> None:
    pumper = make(build, limits=Limits(max_frame_bytes=4 << 20))
    big = b"SEND\ndestination:/q\n\n" + b"z" * (2 << 20) + b"\0"
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(0, len(big), 65536):
            out = pumper.feed(big[i : i + 65536])
        assert out.frames and out.frames[0].body_end - out.frames[0].body_start == 2 << 20
        del out
        pumper.feed(b"SEND\n\n\0SEND\ndestination:")  # small frames after it, one incomplete
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert pumper.buffered == len(b"SEND\ndestination:")
    assert held < 64 * 1024, f"{held} bytes still held"
