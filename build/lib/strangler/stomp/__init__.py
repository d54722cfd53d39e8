"""Sans-I/O STOMP 1.0/1.1/1.2 codec: no sockets, no asyncio (see the h11 pattern)."""

from .errors import FrameTooLarge, HeaderLineTooLong, MalformedFrame, ProtocolError, TooManyHeaders
from .frame import HEARTBEAT, Event, Frame, Headers, Heartbeat
from .limits import DEFAULT_LIMITS, Limits
from .parser import FrameParser
from .serializer import encode, encode_parts, error_frame, insert_header

__all__ = [
    "DEFAULT_LIMITS",
    "HEARTBEAT",
    "Event",
    "Frame",
    "FrameParser",
    "FrameTooLarge",
    "HeaderLineTooLong",
    "Headers",
    "Heartbeat",
    "Limits",
    "MalformedFrame",
    "ProtocolError",
    "TooManyHeaders",
    "encode",
    "encode_parts",
    "error_frame",
    "insert_header",
]
