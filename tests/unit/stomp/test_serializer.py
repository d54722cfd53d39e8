"""encode / encode_parts / insert_header / error_frame."""

from __future__ import annotations

import pytest

from strangler.stomp import (
    Frame,
    FrameParser,
    encode,
    encode_parts,
    error_frame,
    insert_header,
    remove_header,
)


def parse_one(data: bytes, version: str) -> Frame:
    events = FrameParser(version=version).feed(data)
    assert len(events) == 1, events
    frame = events[0]
    assert isinstance(frame, Frame)
    assert frame.raw == data
    return frame


# Values each version can carry; 1.0 has no escaping, so no LF/CR; 1.1 cannot
# carry a CR right before the line end (it would read as CRLF), only inside.
TRICKY = {
    "1.0": [("destination", "/queue/a:b"), ("k", "back\\slash"), ("k2", "x:y:z")],
    "1.1": [
        ("dest:ination", "/queue/a:b"),
        ("k", "line\nbreak"),
        ("back\\slash", "a\\b\\\\c"),
        ("cr", "a\rb"),
        ("all", ":\n\\\r:"),
    ],
    "1.2": [
        ("dest:ination", "/queue/a:b"),
        ("k", "line\nbreak"),
        ("back\\slash", "a\\b\\\\c"),
        ("cr", "a\rb\r"),
        ("all", "\r\n:\\\\n\\c"),
        ("unicode", "h\u00e9llo \u2603 \U0001f600"),
    ],
}


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
@pytest.mark.parametrize("command", ["SEND", "MESSAGE", "ERROR", "ACK"])
def test_encode_then_parse_round_trips_headers_and_body(command: str, version: str) -> None:
    frame = Frame(command, tuple(TRICKY[version]), b"payload")
    back = parse_one(encode(frame, version), version)
    assert back == frame
    assert back.headers == frame.headers
    assert back.body == b"payload"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_escaped_values_leave_no_raw_lf_colon_or_backslash_sequences(version: str) -> None:
    data = encode_parts("SEND", (("a:b", "c\nd\\e"),), b"", version)
    assert data == b"SEND\na\\cb:c\\nd\\\\e\n\n\0"


def test_12_escapes_carriage_return_and_11_does_not() -> None:
    assert b"k:a\\rb\n" in encode_parts("SEND", (("k", "a\rb"),), b"", "1.2")
    assert b"k:a\rb\n" in encode_parts("SEND", (("k", "a\rb"),), b"", "1.1")


def test_10_encodes_values_verbatim() -> None:
    data = encode_parts("SEND", (("k", "a\\b:c"),), b"", "1.0")
    assert data == b"SEND\nk:a\\b:c\n\n\0"


@pytest.mark.parametrize("command", ["CONNECT", "STOMP", "CONNECTED"])
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_connect_frames_are_encoded_verbatim_in_every_version(command: str, version: str) -> None:
    frame = Frame(command, (("passcode", "p\\w"), ("host", "h")))
    data = encode(frame, version)
    assert b"\npasscode:p\\w\n" in data
    assert parse_one(data, version) == frame


def test_encode_adds_content_length_when_body_has_nul() -> None:
    body = b"a\0b\0"
    data = encode(Frame("SEND", (("destination", "/q"),), body), "1.2")
    frame = parse_one(data, "1.2")
    assert frame.get("content-length") == "4"
    assert frame.body == body


def test_encode_adds_no_content_length_when_body_has_no_nul() -> None:
    data = encode(Frame("SEND", (("destination", "/q"),), b"plain"), "1.2")
    assert b"content-length" not in data
    assert data == b"SEND\ndestination:/q\n\nplain\0"


def test_encode_keeps_a_given_content_length_and_adds_no_second_one() -> None:
    frame = Frame("SEND", (("content-length", "2"),), b"\0\0")
    data = encode(frame, "1.2")
    assert data.count(b"content-length") == 1
    assert parse_one(data, "1.2").body == b"\0\0"


def test_encode_of_parsed_frame_reproduces_raw_bytes() -> None:
    raw = b"SEND\ndestination:/q\\c1\nfoo:1\nfoo:2\ncontent-length:3\n\na\0b\0"
    frame = parse_one(raw, "1.2")
    assert encode(frame, "1.2") == raw


# -- insert_header ----------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_insert_header_becomes_first_header_and_wins_over_later_one(version: str) -> None:
    raw = b"SEND\ndestination:/q\nreceipt:client-r\n\nbody\0"
    out = insert_header(raw, "receipt", "proxy-r", version)
    frame = parse_one(out, version)
    assert frame.headers[0] == ("receipt", "proxy-r")
    assert frame.get("receipt") == "proxy-r"
    assert ("receipt", "client-r") in frame.headers
    assert frame.body == b"body"


def test_insert_header_leaves_every_other_byte_untouched() -> None:
    raw = b"SEND\r\ndestination:/q\\c\r\nx:\xc3\xa9\r\ncontent-length:2\r\n\r\n\0\0\0"
    out = insert_header(raw, "trace", "t-1", "1.2")
    command_line = b"SEND\r\n"
    inserted = b"trace:t-1\n"
    assert out == command_line + inserted + raw[len(command_line) :]


def test_insert_header_escapes_per_version() -> None:
    raw = b"SEND\n\n\0"
    assert insert_header(raw, "k", "a:b\nc", "1.2") == b"SEND\nk:a\\cb\\nc\n\n\0"
    frame = parse_one(insert_header(raw, "k", "a:b\nc\\", "1.1"), "1.1")
    assert frame.get("k") == "a:b\nc\\"


# -- error_frame ------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_error_frame_parses_back_with_message_and_detail_body(version: str) -> None:
    frame = parse_one(error_frame("route refused", "no route for /queue/x"), version)
    assert frame.command == "ERROR"
    assert frame.get("message") == "route refused"
    assert frame.body == b"no route for /queue/x"
    assert frame.get("content-length") == str(len(frame.body))
    assert "receipt-id" not in frame


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_error_frame_carries_receipt_id_when_given(version: str) -> None:
    frame = parse_one(error_frame("tx failed", "", receipt_id="r-42"), version)
    assert frame.get("receipt-id") == "r-42"
    assert frame.get("message") == "tx failed"


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_error_frame_message_with_newline_stays_one_header(version: str) -> None:
    frame = parse_one(error_frame("first line\nsecond: line\r\nthird"), version)
    assert [name for name, _ in frame.headers] == ["message", "content-type", "content-length"]
    message = frame.get("message")
    assert message is not None
    assert "\n" not in message
    assert "first line" in message
    assert "third" in message


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_error_frame_with_backslash_in_message_parses_in_escaping_versions(version: str) -> None:
    # Parser reasons use repr(), which can hold backslashes (e.g. 'SEN\\tD').
    frame = parse_one(error_frame("unknown command 'SEN\\tD'"), version)
    assert (frame.get("message") or "").startswith("unknown command")


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_error_frame_receipt_id_cannot_inject_headers(version: str) -> None:
    frame = parse_one(error_frame("bad", "detail", receipt_id="r\ncontent-length:0"), version)
    assert frame.body == b"detail"
    assert [name for name, _ in frame.headers] == [
        "message",
        "receipt-id",
        "content-type",
        "content-length",
    ]


def test_error_frame_detail_may_hold_nul_and_newlines() -> None:
    frame = parse_one(error_frame("m", "a\0b\nc"), "1.2")
    assert frame.body == b"a\0b\nc"


def test_error_frame_message_is_truncated() -> None:
    frame = parse_one(error_frame("x" * 5000), "1.2")
    assert frame.get("message") == "x" * 512


def test_remove_header_keeps_crlf_lines_whole() -> None:
    # A CRLF SUBSCRIBE lost its last line's LF: ack:client-individual\r\r\n reached Amazon
    # MQ, which read an unknown ack mode (auto) (#20.10).
    raw = b"SUBSCRIBE\r\nid:1\r\nack:client-individual\r\nreceipt:x\r\n\r\n\0"
    assert remove_header(raw, "receipt") == b"SUBSCRIBE\r\nid:1\r\nack:client-individual\r\n\r\n\0"


def test_remove_header_never_touches_the_body() -> None:
    raw = b"SEND\nreceipt:x\ndestination:/q\n\nreceipt:y\n\n\0"
    assert remove_header(raw, "receipt") == b"SEND\ndestination:/q\n\nreceipt:y\n\n\0"
