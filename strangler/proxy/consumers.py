"""Subscriptions that read from both brokers, and where each ACK/NACK goes.

No I/O: the session feeds it what was delivered and asks where an ACK belongs.

Invariants:
- a subscription keeps the client's id on both brokers, so a MESSAGE's
  ``subscription`` header needs no rewrite in either direction;
- an ACK/NACK goes to the broker that delivered the message it names; in
  ``client`` (cumulative) mode it also acknowledges, on the other broker, the
  newest message that broker delivered before it, so cumulative acks keep
  their meaning across the two streams;
- memory is bounded by what the client holds unacknowledged (the brokers'
  prefetch); ``auto`` subscriptions track nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..routes import AMAZONMQ, LEGACY, ConsumerDecision

# Subscription ids the proxy itself opens on legacy (queue browsers): never the client's.
BROWSE_PREFIX = "strangler-browse-"
Header = Callable[[str], str | None]  # a Frame's ``get``


@dataclass(slots=True)
class Delivery:
    seq: int  # delivery order within the subscription
    broker: str
    key: str  # what the client's ACK names: ``ack`` (1.2) or ``message-id``
    generation: int  # the Amazon MQ link's generation (an ACK cannot cross a reconnect)


@dataclass(slots=True)
class DualSubscription:
    id: str  # the client's id on both brokers (the proxy's own for a 1.0 id-less one)
    destination: str  # the destination MESSAGEs name on legacy (a renamed one goes back)
    decision: ConsumerDecision
    legacy_raw: bytes  # the SUBSCRIBE as legacy got it (to open that side again)
    ack_mode: str  # auto | client | client-individual
    legacy_active: bool = True
    unacked: dict[str, Delivery] = field(default_factory=dict)
    order: deque[Delivery] = field(default_factory=deque)  # cumulative mode only
    delivered: dict[str, int] = field(default_factory=lambda: {LEGACY: 0, AMAZONMQ: 0})
    legacy_unacked: int = 0
    last_legacy_delivery: float = 0.0
    browsing: str | None = None  # id of the legacy browse checking the backlog
    browse_found: int = 0
    browse_started: float = 0.0
    seq: int = 0

    @property
    def tracks_acks(self) -> bool:
        return self.ack_mode != "auto"


@dataclass(frozen=True, slots=True)
class AckTarget:
    """One ACK/NACK to write: to ``broker``, naming ``key``."""

    broker: str
    key: str
    generation: int
    named: bool  # the message the client's frame named (its receipt follows this one)


def ack_key(get: Header, version: str) -> str | None:
    """What a client's ACK will name for a MESSAGE whose headers ``get`` reads."""
    if version == "1.2":
        value = get("ack")
        return value if value is not None else get("message-id")
    return get("message-id")


def ack_frame_key(get: Header, version: str) -> str | None:
    """The message an ACK/NACK frame names."""
    return get("id") if version == "1.2" else get("message-id")


class ConsumerBook:
    """The session's subscriptions that read from both brokers."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, DualSubscription] = {}
        self._browse_seq = 0

    def __bool__(self) -> bool:
        return bool(self.subscriptions)

    def add(self, sub: DualSubscription) -> None:
        self.subscriptions[sub.id] = sub

    def remove(self, sub_id: str) -> DualSubscription | None:
        return self.subscriptions.pop(sub_id, None)

    def delivered(
        self, sub: DualSubscription, broker: str, key: str | None, generation: int, now: float
    ) -> None:
        sub.delivered[broker] += 1
        if broker == LEGACY:
            sub.last_legacy_delivery = now
        if not sub.tracks_acks or key is None:
            return
        sub.seq += 1
        delivery = Delivery(sub.seq, broker, key, generation)
        sub.unacked[key] = delivery
        if broker == LEGACY:
            sub.legacy_unacked += 1
        if sub.ack_mode == "client":
            sub.order.append(delivery)

    def route_ack(
        self, sub: DualSubscription, key: str, forgotten: list[Delivery] | None = None
    ) -> list[AckTarget]:
        """Where an ACK/NACK naming ``key`` goes; empty if the message is unknown. The
        deliveries it acknowledges are forgotten (and listed in ``forgotten``: an ACK in
        a transaction that is aborted gives them back, ``restore``)."""
        named = sub.unacked.get(key)
        if named is None:
            return []
        if sub.ack_mode != "client":
            self._forget(sub, named, forgotten)
            return [AckTarget(named.broker, key, named.generation, True)]
        newest: dict[str, Delivery] = {}
        while sub.order and sub.order[0].seq <= named.seq:
            delivery = sub.order.popleft()
            self._forget(sub, delivery, forgotten)
            newest[delivery.broker] = delivery
        return [
            AckTarget(d.broker, d.key, d.generation, d is named)
            for d in sorted(newest.values(), key=lambda d: d is named)
        ]

    def _forget(
        self, sub: DualSubscription, delivery: Delivery, forgotten: list[Delivery] | None
    ) -> None:
        if sub.unacked.pop(delivery.key, None) is not None:
            if delivery.broker == LEGACY:
                sub.legacy_unacked -= 1
            if forgotten is not None:
                forgotten.append(delivery)

    def restore(self, sub: DualSubscription, deliveries: list[Delivery]) -> None:
        """Deliveries an aborted transaction's ACKs had acknowledged are unacknowledged
        again, in delivery order (the broker will expect them acknowledged later)."""
        for delivery in deliveries:
            sub.unacked[delivery.key] = delivery
            if delivery.broker == LEGACY:
                sub.legacy_unacked += 1
        if sub.ack_mode == "client":
            sub.order = deque(sorted((*sub.order, *deliveries), key=lambda d: d.seq))

    def find_by_key(self, key: str) -> DualSubscription | None:
        """1.2 ACKs name no subscription: find the one that delivered ``key``."""
        for sub in self.subscriptions.values():
            if key in sub.unacked:
                return sub
        return None

    def next_browse_id(self) -> str:
        self._browse_seq += 1
        return f"{BROWSE_PREFIX}{self._browse_seq}"

    def by_browse(self, browse_id: str) -> DualSubscription | None:
        for sub in self.subscriptions.values():
            if sub.browsing == browse_id:
                return sub
        return None
