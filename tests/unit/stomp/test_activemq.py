"""How ActiveMQ reads a header value (checked against the real broker in
tests/integration/test_activemq_reading.py)."""

from __future__ import annotations

import pytest

from strangler.stomp.activemq import activemq_decode, broker_value, java_trim


@pytest.mark.parametrize(
    ("value", "trimmed"),
    [("a", "a"), (" a ", "a"), ("\ta\r\n", "a"), ("\x00a\x1f", "a"), ("\xa0a", "\xa0a"), ("", "")],
)
def test_java_trim_removes_every_char_up_to_space_and_nothing_else(
    value: str, trimmed: str
) -> None:
    assert java_trim(value) == trimmed


def test_activemq_decodes_three_escapes_and_keeps_any_other_backslash() -> None:
    assert activemq_decode(r"a\cb\nc\\d\re\x") == "a:b\nc\\d\\re\\x"
    assert activemq_decode("trailing\\") == "trailing\\"


@pytest.mark.parametrize("command", ["CONNECT", "STOMP"])
def test_connect_values_are_decoded_and_trimmed_whatever_the_version(command: str) -> None:
    assert broker_value(" producer-a\t", "1.2", command) == "producer-a"
    assert broker_value(r"pro\cducer", "1.2", command) == "pro:ducer"


def test_1_0_values_are_decoded_and_trimmed_later_versions_taken_as_parsed() -> None:
    assert broker_value(r" /queue/a\cb ", "1.0", "SEND") == "/queue/a:b"
    assert broker_value(" tx-1 ", "1.2", "SEND") == " tx-1 "
    assert broker_value(None, "1.0", "SEND") is None
