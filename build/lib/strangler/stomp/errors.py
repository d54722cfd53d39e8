"""Typed STOMP protocol errors.

Every error raised by the codec is a :class:`ProtocolError`: the peer broke the
protocol (h11's "remote" error). The proxy answers it with :func:`error_frame`
and closes the connection; it never lets another exception type escape.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid STOMP frame within our limits."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedFrame(ProtocolError):
    """The bytes do not follow the STOMP frame grammar (spec: "Augmented BNF")."""


class FrameTooLarge(ProtocolError):
    """A frame (headers plus body) is larger than ``Limits.max_frame_bytes``."""


class TooManyHeaders(ProtocolError):
    """A frame has more header lines than ``Limits.max_headers``."""


class HeaderLineTooLong(ProtocolError):
    """A single header line is longer than ``Limits.max_header_line``."""
