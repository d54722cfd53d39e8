"""ACK routing across two brokers' deliveries (``ConsumerBook``)."""

from __future__ import annotations

from strangler.proxy.consumers import AckTarget, ConsumerBook, Delivery, DualSubscription
from strangler.routes import AMAZONMQ, LEGACY, ConsumerDecision, Mode

DECISION = ConsumerDecision("moved", Mode.CUTOVER, (LEGACY, AMAZONMQ), "/queue/q", True, "v1")
SUBSCRIBE = b"SUBSCRIBE\nid:s\ndestination:/queue/q\n\n\0"


def book_with(
    ack_mode: str, deliveries: list[tuple[str, str]]
) -> tuple[ConsumerBook, DualSubscription]:
    book = ConsumerBook()
    sub = DualSubscription("s", "/queue/q", DECISION, SUBSCRIBE, ack_mode)
    book.add(sub)
    for broker, key in deliveries:
        book.delivered(sub, broker, key, 7 if broker == AMAZONMQ else 0, now=1.0)
    return book, sub


def test_individual_ack_goes_to_the_delivering_broker_only() -> None:
    book, sub = book_with("client-individual", [(LEGACY, "l1"), (AMAZONMQ, "a1"), (LEGACY, "l2")])
    assert book.route_ack(sub, "a1") == [AckTarget(AMAZONMQ, "a1", 7, True)]
    assert book.route_ack(sub, "a1") == []  # already acknowledged
    assert book.route_ack(sub, "l2") == [AckTarget(LEGACY, "l2", 0, True)]
    assert sub.legacy_unacked == 1 and set(sub.unacked) == {"l1"}


def test_cumulative_ack_acks_the_newest_earlier_delivery_on_the_other_broker() -> None:
    book, sub = book_with(
        "client",
        [(LEGACY, "l1"), (AMAZONMQ, "a1"), (LEGACY, "l2"), (AMAZONMQ, "a2"), (LEGACY, "l3")],
    )
    targets = book.route_ack(sub, "a2")
    assert targets == [AckTarget(LEGACY, "l2", 0, False), AckTarget(AMAZONMQ, "a2", 7, True)]
    assert set(sub.unacked) == {"l3"} and sub.legacy_unacked == 1
    assert book.route_ack(sub, "l3") == [AckTarget(LEGACY, "l3", 0, True)]
    assert not sub.unacked and not sub.order


def test_auto_subscriptions_track_nothing_and_find_by_key_locates_the_subscription() -> None:
    book, sub = book_with("auto", [(LEGACY, "l1"), (AMAZONMQ, "a1")])
    assert not sub.unacked and sub.delivered == {LEGACY: 1, AMAZONMQ: 1}
    other = DualSubscription("t", "/queue/q", DECISION, SUBSCRIBE, "client-individual")
    book.add(other)
    book.delivered(other, AMAZONMQ, "a9", 1, now=2.0)
    assert book.find_by_key("a9") is other and book.find_by_key("l1") is None


def test_restore_gives_back_what_an_aborted_cumulative_ack_took_in_order() -> None:
    book, sub = book_with("client", [(LEGACY, "l1"), (AMAZONMQ, "a1"), (LEGACY, "l2")])
    forgotten: list[Delivery] = []
    book.route_ack(sub, "a1", forgotten)
    assert [d.key for d in forgotten] == ["l1", "a1"] and set(sub.unacked) == {"l2"}
    book.restore(sub, forgotten)
    assert [d.key for d in sub.order] == ["l1", "a1", "l2"] and sub.legacy_unacked == 2
    assert book.route_ack(sub, "a1") == [
        AckTarget(LEGACY, "l1", 0, False),
        AckTarget(AMAZONMQ, "a1", 7, True),
    ]
