"""Hard limits the parser enforces, so a hostile peer cannot grow our memory.

Defaults follow ActiveMQ Classic's own STOMP limits (``StompWireFormat``:
10 KiB per header line, 1000 headers) except the frame size, which ActiveMQ
puts at 100 MiB; a sidecar holding one such frame per connection would be a
memory hazard, so ours defaults to 16 MiB and is configurable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int = 16 * 1024 * 1024
    max_headers: int = 1000
    max_header_line: int = 10 * 1024

    def __post_init__(self) -> None:
        for name in ("max_frame_bytes", "max_headers", "max_header_line"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


DEFAULT_LIMITS = Limits()
