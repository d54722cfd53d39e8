"""How ActiveMQ Classic (5.17, and Amazon MQ, which runs it) reads a header value.

The proxy forwards the client's bytes untouched, so whatever it *decides* on must be
the value the broker will use, not the value as written. ActiveMQ's ``StompWireFormat``
(checked against the real 5.17 broker, see tests/integration/test_activemq_reading.py):

- decodes ``\\n``, ``\\c`` and ``\\\\`` in every header value, in every version, CONNECT
  included; any other backslash sequence is kept as written (no error);
- in STOMP 1.0 trims every value as Java's ``String.trim`` does (every char <= U+0020
  at both ends). CONNECT and STOMP frames are always read as 1.0, since the version is
  only negotiated by them: so ``login: producer-a\\t`` authenticates as ``producer-a``;
- keeps the first of repeated headers (as STOMP 1.2 says, in every version).

Our parser (``FrameParser``) follows the spec instead: no decoding in 1.0 and in
CONNECT, spec escapes in 1.1/1.2 (an undefined escape is an error, and 1.2 adds
``\\r``). ``broker_value`` maps a value the parser gave to the one ActiveMQ uses.
"""

from __future__ import annotations

from typing import Final

from .frame import UNESCAPED_COMMANDS

_DECODE: Final = {"n": "\n", "c": ":", "\\": "\\"}


def java_trim(value: str) -> str:
    """``value`` without leading and trailing chars <= U+0020 (Java ``String.trim``)."""
    start, end = 0, len(value)
    while start < end and value[start] <= " ":
        start += 1
    while end > start and value[end - 1] <= " ":
        end -= 1
    return value[start:end] if start or end != len(value) else value


def activemq_decode(value: str) -> str:
    """ActiveMQ's ``decodeHeader``: ``\\n``, ``\\c``, ``\\\\`` decoded, anything else kept."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i, size = 0, len(value)
    while i < size:
        char = value[i]
        if char == "\\" and i + 1 < size and value[i + 1] in _DECODE:
            out.append(_DECODE[value[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def broker_value(value: str | None, version: str, command: str) -> str | None:
    """The value ActiveMQ uses for a header the parser read as ``value``.

    For 1.1/1.2 frames other than CONNECT the parser already decoded it the way the
    broker does (the two differ only in escapes the spec forbids or ``\\r``, which the
    parser refuses or decodes; neither can move a message to another destination)."""
    if value is None:
        return None
    if version == "1.0" or command in UNESCAPED_COMMANDS:
        return java_trim(activemq_decode(value))
    return value
