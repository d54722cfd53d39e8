"""What the session core asks the driver to do (mitmproxy's ``commands``).

The core never performs I/O: every handler returns a list of these, in order, and the
asyncio driver (``proxy/driver.py``) carries them out. Plain slotted classes, compared
by value so Playbook tests can write the expected list down.

Amazon MQ frames carry a ``token`` (the core's name for the frame) and no ``receipt``
header: the link adds its own receipt id in front and reports the frame's outcome with
the token (``SessionCore.amazonmq_outcome``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ToClient:
    data: bytes


@dataclass(frozen=True, slots=True)
class ToLegacy:
    data: bytes


@dataclass(frozen=True, slots=True)
class OpenLegacy:
    """Connect to legacy (its endpoints in order); answer ``legacy_opened``/``legacy_failed``."""


@dataclass(frozen=True, slots=True)
class ToAmazonMQ:
    token: str
    data: bytes  # a complete frame without a receipt header
    resendable: bool  # may be written again after a failover (not part of a transaction)
    label: str | None = None  # the trace id, for the message_resent fact


@dataclass(frozen=True, slots=True)
class DropAmazonMQ:
    """The Amazon MQ connection is hung: drop it now (its frames fail, back-off starts)."""

    reason: str


@dataclass(frozen=True, slots=True)
class SubscribeAmazonMQ:
    """Keep ``sub_id`` subscribed on every Amazon MQ connection (``data``: the SUBSCRIBE
    without a receipt); outcomes come back as ``amazonmq_subscribed``."""

    sub_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UnsubscribeAmazonMQ:
    """End standing subscription ``sub_id``; ``data`` (UNSUBSCRIBE) is sent as ``token``."""

    sub_id: str
    token: str
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseAmazonMQ:
    graceful: bool  # DISCONNECT first


@dataclass(frozen=True, slots=True)
class StartTimer:
    name: str
    delay: float  # seconds; replaces a timer of the same name


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class PauseClient:
    """Stop reading the client until ``ResumeClient`` (the core holds what it has)."""


@dataclass(frozen=True, slots=True)
class ResumeClient:
    pass


@dataclass(frozen=True, slots=True)
class CloseLegacy:
    pass


@dataclass(frozen=True, slots=True)
class CloseClient:
    """Close the client. ``after_error``: an ERROR went out; half-close and let the client
    read it (closing with unread input resets the connection and can destroy it)."""

    after_error: bool


@dataclass(frozen=True, slots=True)
class AnnounceFallback:
    """A message of ``rule`` fell back to legacy: every session's drained consumers of
    that route read legacy again (``SessionCore.legacy_refilled``)."""

    rule: str


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """Nothing more will happen: release the session."""


Command = (
    ToClient
    | ToLegacy
    | OpenLegacy
    | ToAmazonMQ
    | DropAmazonMQ
    | SubscribeAmazonMQ
    | UnsubscribeAmazonMQ
    | CloseAmazonMQ
    | StartTimer
    | CancelTimer
    | PauseClient
    | ResumeClient
    | CloseLegacy
    | CloseClient
    | AnnounceFallback
    | SessionEnded
)
