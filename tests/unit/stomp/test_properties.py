"""Property tests for the STOMP codec: any input, any chunking, only events or ProtocolError."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strangler.stomp import (
    Event,
    Frame,
    FrameParser,
    Limits,
    ProtocolError,
    encode,
)
from strangler.stomp.frame import CLIENT_COMMANDS, SERVER_COMMANDS, UNESCAPED_COMMANDS

# A fixed budget in CI (the profile in tests/conftest.py fixes the seed); more with
# STRANGLER_FUZZ=N.
SETTINGS = settings(
    max_examples=int(os.environ.get("STRANGLER_FUZZ", "0") or 0) or 200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
VERSIONS = ("1.0", "1.1", "1.2")
SMALL_LIMITS = Limits(max_frame_bytes=300, max_headers=8, max_header_line=80)
ROOMY_LIMITS = Limits(max_frame_bytes=20_000, max_headers=100, max_header_line=8_000)
ESCAPED_COMMANDS = sorted((CLIENT_COMMANDS | SERVER_COMMANDS) - UNESCAPED_COMMANDS)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at the given offsets (taken modulo its length, sorted)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


def feed_checked(parser: FrameParser, chunks: list[bytes]) -> list[Event]:
    """Feed ``chunks``; only ProtocolError may escape, and the buffer stays bounded."""
    events: list[Event] = []
    for chunk in chunks:
        try:
            events += parser.feed(chunk)
        finally:
            assert parser.buffered <= parser.limits.max_frame_bytes + len(chunk)
    return events


def feed_tolerating_protocol_errors(parser: FrameParser, chunks: list[bytes]) -> None:
    try:
        events = feed_checked(parser, chunks)
    except ProtocolError as exc:
        assert isinstance(exc.reason, str)
        assert exc.reason
        # Once broken, the parser keeps refusing: more input only yields ProtocolError.
        with pytest.raises(ProtocolError):
            parser.feed(b"SEND\n\nx\0")
    else:
        for event in events:
            if isinstance(event, Frame):
                assert event.raw is not None
                assert event.raw.endswith(b"\0")
                assert len(event.raw) <= parser.limits.max_frame_bytes


# -- (a) arbitrary bytes ----------------------------------------------------

# Bytes biased toward the grammar's significant octets, so the parser gets deep.
stomp_ish_bytes = st.lists(
    st.one_of(
        st.binary(max_size=8),
        st.sampled_from(
            [
                b"\n",
                b"\r\n",
                b"\r",
                b"\0",
                b":",
                b"\\",
                b"\\n",
                b"\\c",
                b"\\r",
                b"SEND\n",
                b"MESSAGE\n",
                b"CONNECT\n",
                b"content-length:",
                b"content-length:3\n",
                b"content-length:\xc2\xb2\n",  # a unicode digit, not an ASCII one
                b"\n\n",
                b"\xff",
            ]
        ),
    ),
    max_size=40,
).map(b"".join)


@SETTINGS
@given(
    data=st.one_of(st.binary(max_size=600), stomp_ish_bytes),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    version=st.sampled_from(VERSIONS),
)
def test_arbitrary_bytes_in_any_chunking_yield_events_or_protocol_error(
    data: bytes, cuts: list[int], version: str
) -> None:
    for limits in (SMALL_LIMITS, ROOMY_LIMITS):
        feed_tolerating_protocol_errors(FrameParser(limits, version), chunked(data, cuts))


# -- (b) round trip ---------------------------------------------------------

# Printable unicode; the grammar-significant characters are mixed in per version below.
printable = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":\\")


def text_with(specials: str) -> st.SearchStrategy[str]:
    """Printable unicode text mixed with the given grammar-significant characters."""
    return st.lists(st.one_of(printable, st.sampled_from(specials)), max_size=12).map("".join)


def no_trailing_cr(text: str) -> str:
    # 1.1 has no CR escape, so a CR right before the EOL would read as CRLF.
    return text + "." if text.endswith("\r") else text


# Per version: (header names, header values) it can carry.
HEADER_TEXT = {
    # No escaping in 1.0: a name cannot hold ':' and nothing may hold LF or CR.
    "1.0": (text_with("\\ "), text_with(":\\ ")),
    "1.1": (text_with(":\n\r\\ ").map(no_trailing_cr), text_with(":\n\r\\ ").map(no_trailing_cr)),
    "1.2": (text_with(":\n\r\\ "), text_with(":\n\r\\ ")),
}


@st.composite
def valid_frames(draw: st.DrawFn, version: str) -> Frame:
    command = draw(st.sampled_from(ESCAPED_COMMANDS))
    names, values = HEADER_TEXT[version]
    headers = draw(st.lists(st.tuples(names, values), max_size=6))
    headers = [(n, v) for n, v in headers if n != "content-length"]
    body = draw(st.binary(max_size=64))
    headers.append(("content-length", str(len(body))))
    order = draw(st.permutations(headers))
    return Frame(command, tuple(order), body)


@SETTINGS
@given(data=st.data(), version=st.sampled_from(VERSIONS))
def test_encoded_valid_frames_parse_back_equal_in_random_chunks(
    data: st.DataObject, version: str
) -> None:
    frames = data.draw(st.lists(valid_frames(version), min_size=1, max_size=3))
    wire_parts = [encode(f, version) for f in frames]
    wire = b"\n".join(wire_parts)  # heart-beats between frames
    cuts = data.draw(st.lists(st.integers(min_value=0), max_size=10))
    events = feed_checked(FrameParser(Limits(), version), chunked(wire, cuts))
    parsed = [e for e in events if isinstance(e, Frame)]
    assert parsed == frames
    for frame, original in zip(parsed, frames, strict=True):
        assert frame.command == original.command
        assert frame.headers == original.headers
        assert frame.body == original.body
    assert [f.raw for f in parsed] == wire_parts
    assert len(events) == len(frames) + len(frames) - 1


@SETTINGS
@given(
    command=st.sampled_from(sorted(UNESCAPED_COMMANDS)),
    # Never escaped: a name cannot hold ':'; values keep ':' and '\\' verbatim.
    headers=st.lists(st.tuples(text_with("\\ "), text_with(":\\ ")), max_size=6),
    version=st.sampled_from(VERSIONS),
)
def test_connect_frames_round_trip_verbatim_in_every_version(
    command: str, headers: list[tuple[str, str]], version: str
) -> None:
    frame = Frame(command, tuple(headers))
    (back,) = FrameParser(Limits(), version).feed(encode(frame, version))
    assert back == frame


# -- (c) mutations ----------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, str]:
    version = draw(st.sampled_from(VERSIONS))
    frames = draw(st.lists(valid_frames(version), min_size=1, max_size=2))
    data = bytearray(b"".join(encode(f, version) for f in frames))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "replace"]))
        pos = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "insert":
            data.insert(pos, draw(st.sampled_from([0, 0x0A, 0x0D, 0x3A, 0x5C, 0xFF, 0x41])))
        elif kind == "delete" and data:
            del data[pos]
        elif data:
            data[pos] = draw(st.integers(min_value=0, max_value=255))
    return bytes(data), version


@SETTINGS
@given(case=mutated(), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_mutated_valid_frames_yield_frames_or_protocol_error(
    case: tuple[bytes, str], cuts: list[int]
) -> None:
    data, version = case
    feed_tolerating_protocol_errors(FrameParser(SMALL_LIMITS, version), chunked(data, cuts))
    feed_tolerating_protocol_errors(FrameParser(Limits(), version), chunked(data, cuts))


def outcome(chunks: list[bytes], version: str) -> tuple[str, list[Event], int]:
    parser = FrameParser(SMALL_LIMITS, version)
    events: list[Event] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
    except ProtocolError:
        return "error", [], 0
    return "ok", events, parser.buffered


@SETTINGS
@given(case=mutated(), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_chunking_does_not_change_whether_input_is_accepted_or_what_it_yields(
    case: tuple[bytes, str], cuts: list[int]
) -> None:
    data, version = case
    assert outcome(chunked(data, cuts), version) == outcome([data], version)
