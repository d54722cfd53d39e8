"""FrameParser: framing, heart-beats, escaping, malformed input and limits."""

from __future__ import annotations

import pytest

from strangler.stomp import (
    HEARTBEAT,
    Event,
    Frame,
    FrameParser,
    FrameTooLarge,
    HeaderLineTooLong,
    Heartbeat,
    Limits,
    MalformedFrame,
    ProtocolError,
    TooManyHeaders,
)


def feed_whole(data: bytes, version: str = "1.2", limits: Limits | None = None) -> list[Event]:
    parser = FrameParser(limits or Limits(), version)
    return parser.feed(data)


def feed_bytewise(data: bytes, version: str = "1.2", limits: Limits | None = None) -> list[Event]:
    parser = FrameParser(limits or Limits(), version)
    events: list[Event] = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
    return events


def only_frame(data: bytes, version: str = "1.2") -> Frame:
    events = feed_whole(data, version)
    assert len(events) == 1
    frame = events[0]
    assert isinstance(frame, Frame)
    return frame


REPRESENTATIVE = {
    "send-no-length": b"SEND\ndestination:/queue/a\n\nhello\0",
    "send-binary-length": b"SEND\ndestination:/queue/a\ncontent-length:5\n\na\0b\0c\0",
    "crlf-lines": b"SEND\r\ndestination:/queue/a\r\nreceipt:r-1\r\n\r\nbody\0",
    "no-headers-no-body": b"DISCONNECT\n\n\0",
    "escaped-1.2": b"MESSAGE\nk\\cey:v\\na\\\\l\\r\n\n\0",
    "heartbeats-around": b"\n\r\nSUBSCRIBE\nid:1\ndestination:/q\n\n\0\n\r\n",
    "two-frames": b"BEGIN\ntransaction:t\n\n\0COMMIT\ntransaction:t\n\n\0",
    "connect-verbatim": b"CONNECT\naccept-version:1.2\nlogin:a\\b\n\n\0",
}


@pytest.mark.parametrize("data", REPRESENTATIVE.values(), ids=REPRESENTATIVE.keys())
def test_byte_by_byte_feed_yields_same_events_as_one_feed(data: bytes) -> None:
    whole = feed_whole(data)
    assert whole, "a representative input must yield events"
    assert feed_bytewise(data) == whole
    assert [e.raw for e in feed_bytewise(data) if isinstance(e, Frame)] == [
        e.raw for e in whole if isinstance(e, Frame)
    ]


@pytest.mark.parametrize("data", REPRESENTATIVE.values(), ids=REPRESENTATIVE.keys())
def test_every_two_chunk_split_yields_same_events_as_one_feed(data: bytes) -> None:
    whole = feed_whole(data)
    for cut in range(len(data) + 1):
        parser = FrameParser(Limits(), "1.2")
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == whole, cut
        assert parser.buffered == 0


def test_lf_and_crlf_heartbeats_before_and_between_frames() -> None:
    data = b"\n\r\n\nSEND\ndestination:/q\n\nx\0\r\n\nSEND\ndestination:/q\n\ny\0"
    events = feed_whole(data)
    kinds = [e if isinstance(e, Heartbeat) else e.body for e in events]
    assert kinds == [HEARTBEAT, HEARTBEAT, HEARTBEAT, b"x", HEARTBEAT, HEARTBEAT, b"y"]


def test_lone_cr_at_end_of_feed_waits_for_its_lf() -> None:
    parser = FrameParser()
    assert parser.feed(b"\r") == []
    assert parser.buffered == 1
    assert parser.feed(b"\n") == [HEARTBEAT]
    assert parser.buffered == 0


def test_crlf_header_lines_do_not_leave_cr_in_command_or_values() -> None:
    frame = only_frame(b"SEND\r\ndestination:/queue/a\r\nx:y\r\n\r\nbody\0")
    assert frame.command == "SEND"
    assert frame.headers == (("destination", "/queue/a"), ("x", "y"))
    assert frame.body == b"body"


def test_content_length_reads_body_holding_nul() -> None:
    frame = only_frame(b"SEND\ncontent-length:7\n\n\0ab\0cd\0\0")
    assert frame.body == b"\0ab\0cd\0"


def test_content_length_with_surrounding_spaces_is_accepted() -> None:
    frame = only_frame(b"SEND\ncontent-length: 2 \n\nab\0", version="1.0")
    assert frame.body == b"ab"


def test_body_without_content_length_ends_at_first_nul() -> None:
    events = feed_whole(b"SEND\n\nabc\0\n")
    assert isinstance(events[0], Frame)
    assert events[0].body == b"abc"
    assert events[1:] == [HEARTBEAT]


def test_incomplete_frame_yields_nothing_and_stays_buffered() -> None:
    parser = FrameParser()
    data = b"SEND\ncontent-length:3\n\nab"
    assert parser.feed(data) == []
    assert parser.buffered == len(data)
    (frame,) = parser.feed(b"c\0")
    assert isinstance(frame, Frame)
    assert frame.body == b"abc"
    assert parser.buffered == 0


def test_repeated_header_first_wins_via_get_and_all_are_kept() -> None:
    frame = only_frame(b"MESSAGE\nfoo:1\nbar:x\nfoo:2\nfoo:3\n\n\0")
    assert frame.get("foo") == "1"
    assert "foo" in frame
    assert "missing" not in frame
    assert frame.get("missing", "d") == "d"
    assert frame.headers == (("foo", "1"), ("bar", "x"), ("foo", "2"), ("foo", "3"))


def test_raw_is_exact_input_bytes_of_each_frame() -> None:
    first = b"SEND\r\ndestination:/q\\c1\r\nfoo:1\nfoo:2\n\nA\0"
    second = b"SEND\ncontent-length:3\n\n\0\0\0\0"
    events = feed_whole(b"\r\n" + first + b"\n" + second + b"\n")
    frames = [e for e in events if isinstance(e, Frame)]
    assert [f.raw for f in frames] == [first, second]


def test_raw_is_exact_even_when_fed_byte_by_byte() -> None:
    data = b"SEND\ndestination:/q\r\n\r\nbody\0"
    (frame,) = feed_bytewise(data)
    assert isinstance(frame, Frame)
    assert frame.raw == data


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_11_and_12_decode_lf_colon_and_backslash_escapes(version: str) -> None:
    frame = only_frame(b"SEND\na\\cb:x\\ny\\\\z\\c\n\n\0", version)
    assert frame.headers == (("a:b", "x\ny\\z:"),)


def test_12_decodes_carriage_return_escape() -> None:
    frame = only_frame(b"SEND\nk:a\\rb\n\n\0", "1.2")
    assert frame.get("k") == "a\rb"


def test_11_refuses_carriage_return_escape_as_undefined() -> None:
    with pytest.raises(MalformedFrame, match="escape"):
        feed_whole(b"SEND\nk:a\\rb\n\n\0", "1.1")


def test_10_does_not_unescape() -> None:
    frame = only_frame(b"SEND\nk:a\\nb\\cc\\\\d\\t\n\n\0", "1.0")
    assert frame.get("k") == "a\\nb\\cc\\\\d\\t"


@pytest.mark.parametrize("command", ["CONNECT", "STOMP", "CONNECTED"])
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_connect_and_connected_headers_are_never_unescaped(command: str, version: str) -> None:
    data = command.encode() + b"\npasscode:p\\na\\ss\\c\\r\n\n\0"
    frame = only_frame(data, version)
    assert frame.get("passcode") == "p\\na\\ss\\c\\r"


@pytest.mark.parametrize("sequence", [b"\\t", b"\\x", b"\\ ", b"\\"])
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_undefined_escape_sequence_is_malformed(sequence: bytes, version: str) -> None:
    with pytest.raises(MalformedFrame, match="escape"):
        feed_whole(b"SEND\nk:a" + sequence + b"\n\n\0", version)


def test_undefined_escape_in_header_name_is_malformed() -> None:
    with pytest.raises(MalformedFrame, match="escape"):
        feed_whole(b"SEND\nk\\q:v\n\n\0", "1.2")


MALFORMED = {
    "unknown-command": (b"FOO\n\n\0", "unknown command"),
    "lowercase-command": (b"send\n\n\0", "unknown command"),
    "non-ascii-command": (b"S\xc3\x89ND\n\n\0", "command"),
    "header-without-colon": (b"SEND\ndestination\n\n\0", "without ':'"),
    "non-utf8-header": (b"SEND\nk:\xff\xfe\n\n\0", "UTF-8"),
    "content-length-letters": (b"SEND\ncontent-length:abc\n\nabc\0", "content-length"),
    "content-length-negative": (b"SEND\ncontent-length:-1\n\n\0", "content-length"),
    "content-length-empty": (b"SEND\ncontent-length:\n\n\0", "content-length"),
    "content-length-non-ascii-digit": (
        "SEND\ncontent-length:\u00b2\n\nab\0".encode(),
        "content-length",
    ),
    "content-length-arabic-digits": (
        "SEND\ncontent-length:\u0661\n\na\0".encode(),
        "content-length",
    ),
    "body-longer-than-content-length": (b"SEND\ncontent-length:2\n\nabc\0", "content-length"),
    "cr-without-lf-heartbeat": (b"\rSEND\n\n\0", "CR"),
}


@pytest.mark.parametrize(("data", "reason"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_raises_malformed_frame_naming_the_problem(
    data: bytes, reason: str
) -> None:
    with pytest.raises(MalformedFrame) as whole:
        feed_whole(data)
    assert reason in whole.value.reason
    assert str(whole.value) == whole.value.reason
    with pytest.raises(MalformedFrame) as bytewise:
        feed_bytewise(data)
    assert bytewise.value.reason == whole.value.reason


def test_frames_before_a_malformed_one_are_lost_with_the_exception_but_consumed() -> None:
    parser = FrameParser()
    with pytest.raises(MalformedFrame):
        parser.feed(b"SEND\n\nok\0FOO\n\n\0")
    # The good frame was consumed; only the bad frame stays buffered.
    assert parser.buffered == len(b"FOO\n\n\0")


def test_content_length_with_thousands_of_digits_raises_protocol_error_not_value_error() -> None:
    with pytest.raises(FrameTooLarge):
        feed_whole(b"SEND\ncontent-length:" + b"9" * 5000 + b"\n\n")


def test_content_length_with_many_leading_zeros_is_its_value() -> None:
    frame = only_frame(b"SEND\ncontent-length:" + b"0" * 40 + b"2\n\nab\0")
    assert frame.body == b"ab"


# -- limits -----------------------------------------------------------------


def test_announced_content_length_over_limit_raises_before_body_arrives() -> None:
    parser = FrameParser(Limits(max_frame_bytes=100))
    with pytest.raises(FrameTooLarge):
        parser.feed(b"SEND\ncontent-length:1000\n\n")


def test_announced_frame_one_byte_over_limit_counting_nul_raises_before_body() -> None:
    header = b"SEND\ncontent-length:7\n\n"
    limits = Limits(max_frame_bytes=len(header) + 7)  # no room for the NUL
    with pytest.raises(FrameTooLarge):
        FrameParser(limits).feed(header)


def test_frame_exactly_at_size_limit_is_accepted() -> None:
    data = b"SEND\ncontent-length:6\n\nabcdef\0"
    limits = Limits(max_frame_bytes=len(data))
    assert feed_whole(data, limits=limits) == feed_bytewise(data, limits=limits)
    (frame,) = feed_whole(data, limits=limits)
    assert isinstance(frame, Frame)
    assert frame.body == b"abcdef"
    with pytest.raises(FrameTooLarge):
        feed_whole(data, limits=Limits(max_frame_bytes=len(data) - 1))


def test_body_without_nul_growing_forever_raises_frame_too_large() -> None:
    parser = FrameParser(Limits(max_frame_bytes=1000))
    parser.feed(b"SEND\n\n")
    with pytest.raises(FrameTooLarge):
        for _ in range(1000):
            parser.feed(b"x" * 10)
            assert parser.buffered <= 1000


def test_complete_frame_without_content_length_over_limit_raises() -> None:
    with pytest.raises(FrameTooLarge):
        feed_whole(b"SEND\n\n" + b"x" * 200 + b"\0", limits=Limits(max_frame_bytes=100))


def test_header_block_over_frame_limit_raises_frame_too_large() -> None:
    limits = Limits(max_frame_bytes=100, max_headers=1000, max_header_line=1000)
    data = b"SEND\n" + b"h:" + b"v" * 60 + b"\n" + b"h:" + b"v" * 60 + b"\n"
    with pytest.raises(FrameTooLarge):
        feed_whole(data, limits=limits)


def test_too_many_headers_raises_too_many_headers() -> None:
    limits = Limits(max_headers=3)
    ok = b"SEND\na:1\nb:2\nc:3\n\n\0"
    assert len(feed_whole(ok, limits=limits)) == 1
    with pytest.raises(TooManyHeaders):
        feed_whole(b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0", limits=limits)


def test_too_many_headers_raises_before_the_header_block_ends() -> None:
    parser = FrameParser(Limits(max_headers=3))
    with pytest.raises(TooManyHeaders):
        parser.feed(b"SEND\na:1\nb:2\nc:3\nd:4\n")


def test_endless_header_line_raises_as_soon_as_it_exceeds_the_limit() -> None:
    parser = FrameParser(Limits(max_header_line=50))
    parser.feed(b"SEND\nk:")
    parser.feed(b"v" * 48)  # 50 bytes: at the limit, still waiting
    with pytest.raises(HeaderLineTooLong):
        parser.feed(b"v")  # 51 bytes, no newline yet


def test_endless_command_line_raises_header_line_too_long() -> None:
    parser = FrameParser(Limits(max_header_line=20))
    with pytest.raises(HeaderLineTooLong):
        parser.feed(b"S" * 21)


def test_header_line_at_limit_with_crlf_is_accepted_in_any_chunking() -> None:
    limits = Limits(max_header_line=10)
    data = b"SEND\nabcd:fghij\r\n\r\n\0"  # the header line is exactly 10 bytes
    whole = feed_whole(data, limits=limits)
    assert len(whole) == 1
    assert feed_bytewise(data, limits=limits) == whole


def test_complete_header_line_over_limit_raises() -> None:
    with pytest.raises(HeaderLineTooLong):
        feed_whole(b"SEND\nabcd:fghijk\n\n\0", limits=Limits(max_header_line=10))


def test_limits_refuse_non_positive_values() -> None:
    for name in ("max_frame_bytes", "max_headers", "max_header_line"):
        with pytest.raises(ValueError, match=name):
            Limits(**{name: 0})


# -- after an error ---------------------------------------------------------

BAD_INPUTS = [
    (b"FOO\n\n\0", Limits()),
    (b"SEND\nk:\\q\n\n\0", Limits()),
    (b"SEND\ncontent-length:1000\n\n", Limits(max_frame_bytes=100)),
    (b"SEND\n" + b"k" * 100, Limits(max_header_line=50)),
    (b"SEND\na:1\nb:2\n", Limits(max_headers=1)),
    (b"\rX", Limits()),
]


@pytest.mark.parametrize(("bad", "limits"), BAD_INPUTS)
def test_feeding_after_an_error_only_ever_raises_protocol_errors(
    bad: bytes, limits: Limits
) -> None:
    parser = FrameParser(limits, "1.2")
    with pytest.raises(ProtocolError) as first:
        parser.feed(bad)
    for more in (b"", b"\n", b"SEND\n\nx\0", b"\0" * 10, b"\xff" * 10):
        # The bad frame is still at the head of the buffer: the same kind of
        # error is raised again, never a frame parsed from the middle of it.
        with pytest.raises(ProtocolError) as again:
            parser.feed(more)
        assert type(again.value) is type(first.value)


# -- buffer bound -----------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 500])
def test_buffered_never_exceeds_frame_limit_plus_last_chunk(chunk_size: int) -> None:
    limits = Limits(max_frame_bytes=200, max_header_line=150, max_headers=20)
    streams = [
        b"SEND\n\n" + b"x" * 1000,
        b"SEND\n" + b"h:" + b"v" * 140 + b"\n" + b"h:" + b"v" * 140 + b"\n",
        b"SEND\ncontent-length:150\n\n" + b"y" * 1000,
        (b"SEND\n\nbody\0\n" * 50) + b"SEND\n\n" + b"z" * 1000,
    ]
    for data in streams:
        parser = FrameParser(limits)
        try:
            for i in range(0, len(data), chunk_size):
                chunk = data[i : i + chunk_size]
                try:
                    parser.feed(chunk)
                finally:
                    assert parser.buffered <= limits.max_frame_bytes + len(chunk)
        except ProtocolError:
            pass
        else:
            pytest.fail("every stream must end in a protocol error")
