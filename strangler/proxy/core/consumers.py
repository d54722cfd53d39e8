"""A session's consumers: SUBSCRIBE, MESSAGE, ACK/NACK and UNSUBSCRIBE across two brokers.

For a destination the routes send to Amazon MQ (cutover, split), a SUBSCRIBE opens the
same subscription id on legacy (through the client's own connection) and on Amazon MQ
(through the session's link), and both streams reach the client as one subscription.
Legacy's side of a cutover queue is dropped once legacy's backlog is empty (fact
``consumer_drained``). Every other destination stays a pass-through to legacy.

Invariants:
- a STOMP 1.0 SUBSCRIBE without an ``id`` gets the proxy's own id on both brokers
  (``strangler-sub-N``), and MESSAGEs reach the client without it, as the broker sends
  them for an id-less subscription; its UNSUBSCRIBE (by destination) is mapped back;
- a MESSAGE's ``destination`` is changed only to undo the route's own rename
  (``target_destination``): a wildcard's messages keep the names the broker gave them;
- an ACK/NACK reaches the broker whose message it names (``ConsumerBook``); its RECEIPT
  reaches the client only when that broker confirmed it; an ACK that cannot be
  delivered is a fact, and, if the client asked for a receipt, an ERROR: the broker
  redelivers the message (at-least-once);
- a message that fell back to legacy opens legacy's side again for the drained
  subscriptions of its route, on every session of the proxy;
- a routes change reaches open subscriptions: one that now reads Amazon MQ too gets its
  Amazon MQ side; one whose route went back keeps reading Amazon MQ (so nothing moved
  there is stranded) and gets its legacy side back if it had been dropped.
"""

from __future__ import annotations

import dataclasses

from ...facts import Fact
from ...routes import ConsumerDecision, decide_subscribe
from ...routes.destinations import IllegalDestination, broker_destinations
from ...stomp import (
    Frame,
    encode_parts,
    error_frame,
    insert_header,
    remove_header,
    replace_header,
)
from ...stomp.activemq import broker_value
from ..consumers import BROWSE_PREFIX, Delivery, DualSubscription, ack_frame_key, ack_key
from .commands import (
    CloseClient,
    StartTimer,
    SubscribeAmazonMQ,
    ToAmazonMQ,
    UnsubscribeAmazonMQ,
)
from .state import AMAZONMQ, LEGACY, Kind, Pending, SessionState
from .transactions import begin_on_amazonmq

INTERNAL_SUB = "strangler-sub-"
# Legacy-only subscriptions a session remembers so a routes change can reach them.
MAX_TRACKED = 10_000


def on_subscribe(s: SessionState, frame: Frame) -> None:
    s.subscribed = True
    version = s.version
    written = frame.get("destination") or ""
    destination = broker_value(written, version, "SUBSCRIBE") or ""
    sub_id = broker_value(frame.get("id"), version, "SUBSCRIBE")
    raw = frame.raw
    if sub_id is None:  # 1.0 without an id: the proxy's own, on both brokers
        s.sub_seq += 1
        sub_id = f"{INTERNAL_SUB}{s.sub_seq}"
        raw = insert_header(raw, "id", sub_id, version)
        s.idless[destination] = sub_id
    s.to_legacy(raw)  # legacy's side: the client's own subscription
    if sub_id in s.consumers.subscriptions:
        return  # a duplicate id: legacy answers for it
    decision = _decide(s, destination)
    ack_mode = broker_value(frame.get("ack"), version, "SUBSCRIBE") or "auto"
    sub = DualSubscription(sub_id, _named(destination), decision, raw, ack_mode)
    if AMAZONMQ not in decision.sources:
        if len(s.legacy_only) < MAX_TRACKED:  # beyond: pass-through, never upgraded
            s.legacy_only[sub_id] = sub
        return
    receipt = broker_value(frame.get("receipt"), version, "SUBSCRIBE")
    if receipt is not None:  # the client's RECEIPT waits for both brokers' subscriptions
        s.sub_receipts[sub_id] = s.receipts.expect(receipt, LEGACY, AMAZONMQ)
    _open_amazonmq(s, sub, written)


def _named(destination: str) -> str:
    """The name a MESSAGE carries for a one-destination subscription (a renamed one goes
    back to it); the value as given for anything else."""
    try:
        leaves = broker_destinations(destination)
    except IllegalDestination:
        return destination
    return leaves[0].stomp if len(leaves) == 1 else destination


def _decide(s: SessionState, destination: str) -> ConsumerDecision:
    return decide_subscribe(s.table, destination, s.ctx.settings.dry_run)


def _open_amazonmq(s: SessionState, sub: DualSubscription, written: str) -> None:
    """Track ``sub`` (open on legacy) as reading both brokers; subscribe on Amazon MQ."""
    s.amq_used = True
    sub.last_legacy_delivery = s.clock()
    s.consumers.add(sub)
    _side_fact(s, sub, LEGACY)
    data = remove_header(sub.legacy_raw, "receipt")
    target = sub.decision.amazonmq_destination
    if target is not None and target != written:
        data = replace_header(data, "destination", target, s.version)
    s.out.append(SubscribeAmazonMQ(sub.id, data))
    if sub.decision.drain_legacy:
        _ensure_backlog_timer(s)


def _side_fact(s: SessionState, sub: DualSubscription, broker: str) -> None:
    s.emit(
        Fact.CONSUMER_SUBSCRIBED,
        subscription=sub.id,
        destination=sub.destination if broker == LEGACY else sub.decision.amazonmq_destination,
        rule=sub.decision.rule,
        mode=sub.decision.mode,
        broker=broker,
        routes_version=sub.decision.routes_version,
    )


def subscribed_outcome(s: SessionState, sub_id: str, failure: str | None) -> None:
    """Amazon MQ answered a standing SUBSCRIBE (the link subscribes again after a loss)."""
    seq = s.sub_receipts.pop(sub_id, 0)
    if seq:  # the first answer, whatever it says: legacy's side works either way
        s.give_receipts(s.receipts.answered(seq, AMAZONMQ))
    sub = s.consumers.subscriptions.get(sub_id)
    if sub is None:
        return
    if failure is None:
        _side_fact(s, sub, AMAZONMQ)
        return
    s.emit(
        Fact.CONSUMER_SUBSCRIPTION_LOST,
        subscription=sub_id,
        destination=sub.decision.amazonmq_destination,
        rule=sub.decision.rule,
        broker=AMAZONMQ,
        reason=failure,
    )


def routes_changed(s: SessionState) -> None:
    """A new routes table is in force: give open subscriptions the sides it asks for."""
    for sub_id, sub in list(s.legacy_only.items()):
        decision = _decide(s, sub.destination)
        if AMAZONMQ in decision.sources:
            del s.legacy_only[sub_id]
            sub.decision = decision
            _open_amazonmq(s, sub, sub.destination)
    for sub in s.consumers.subscriptions.values():
        decision = _decide(s, sub.destination)
        if AMAZONMQ not in decision.sources:
            # Rolled back: keep reading what was moved to Amazon MQ; never drop legacy.
            decision = dataclasses.replace(
                decision,
                sources=sub.decision.sources,
                amazonmq_destination=sub.decision.amazonmq_destination,
                renamed=sub.decision.renamed,
            )
        if not decision.drain_legacy and not sub.legacy_active:
            _reopen_legacy(s, sub)
        sub.decision = dataclasses.replace(
            decision,
            amazonmq_destination=sub.decision.amazonmq_destination,
            renamed=sub.decision.renamed,
        )
        if decision.drain_legacy:
            _ensure_backlog_timer(s)


def legacy_refilled(s: SessionState, rule: str) -> None:
    """A message of ``rule`` fell back to legacy: drained subscriptions read legacy again
    (until its queue is empty once more), so the fallback is not stranded."""
    for sub in s.consumers.subscriptions.values():
        if sub.decision.rule == rule and not sub.legacy_active:
            _reopen_legacy(s, sub)


def _reopen_legacy(s: SessionState, sub: DualSubscription) -> None:
    s.to_legacy(remove_header(sub.legacy_raw, "receipt"))
    sub.legacy_active = True
    sub.last_legacy_delivery = s.clock()
    _side_fact(s, sub, LEGACY)


def on_unsubscribe(s: SessionState, frame: Frame) -> None:
    version = s.version
    raw = frame.raw
    sub_id = broker_value(frame.get("id"), version, "UNSUBSCRIBE")
    if sub_id is None:  # 1.0 by destination: an id-less subscription has our id
        destination = broker_value(frame.get("destination"), version, "UNSUBSCRIBE") or ""
        sub_id = s.idless.pop(destination, None)
        if sub_id is None:
            s.to_legacy(raw)
            return
        raw = insert_header(raw, "id", sub_id, version)
    sub = s.consumers.remove(sub_id)
    s.legacy_only.pop(sub_id, None)
    if sub is None:
        s.to_legacy(raw)
        return
    _end_browse(s, sub)
    receipt = broker_value(frame.get("receipt"), version, "UNSUBSCRIBE")
    if sub.legacy_active:
        s.to_legacy(raw)  # legacy answers the client's receipt
        receipt = None
    token = s.add_pending(
        Pending(
            Kind.UNSUBSCRIBE,
            *s.confirm_window(),
            receipt=receipt,
            subscription=sub.id,
            seq=s.receipts.expect(receipt, AMAZONMQ) if receipt is not None else 0,
        )
    )
    data = encode_parts("UNSUBSCRIBE", (("id", sub.id),), b"", version)
    s.out.append(UnsubscribeAmazonMQ(sub.id, token, data))


def unsubscribe_outcome(s: SessionState, pending: Pending) -> None:
    if pending.receipt is not None:
        frame = s.receipt_frame(pending.receipt)
        s.give_receipts(s.receipts.answered(pending.seq, AMAZONMQ, frame))


def on_ack(s: SessionState, frame: Frame) -> None:
    version = s.version
    book = s.consumers
    key = broker_value(ack_frame_key(frame.get, version), version, frame.command)
    sub = book.subscriptions.get(broker_value(frame.get("subscription"), version, "ACK") or "")
    if sub is None and key is not None:
        sub = book.find_by_key(key)
    tx_id = broker_value(frame.get("transaction"), version, "ACK")
    tx = s.transactions.get(tx_id) if tx_id is not None else None
    forgotten: list[Delivery] = []
    targets = book.route_ack(sub, key, forgotten) if sub is not None and key is not None else []
    if sub is None or not targets:
        s.to_legacy(frame.raw)  # not ours to route: legacy's to answer
        return
    if tx is not None:
        tx.acked.append((sub, forgotten))
    receipt = broker_value(frame.get("receipt"), version, "ACK")
    for target in targets:
        if target.broker == LEGACY:
            if not sub.legacy_active:
                _ack_failed(s, sub, "legacy subscription already drained", receipt, target.named)
            elif target.named:
                s.to_legacy(frame.raw)  # as sent, receipt and all
            else:
                s.to_legacy(_ack(s, frame.command, target.key, sub, tx_id))
            continue
        if target.generation != s.amq_generation:
            # ACKs cannot cross a reconnect; Amazon MQ redelivers the message instead.
            _ack_failed(
                s, sub, "Amazon MQ connection was replaced", receipt if target.named else None, True
            )
            continue
        if tx is not None:
            begin_on_amazonmq(s, tx)
            tx.amazonmq_acks += 1
        named_receipt = receipt if target.named else None
        token = s.add_pending(
            Pending(
                Kind.ACK,
                *s.confirm_window(),
                receipt=named_receipt,
                subscription=sub.id,
                seq=s.receipts.expect(named_receipt, AMAZONMQ) if named_receipt else 0,
            )
        )
        data = _ack(s, frame.command, target.key, sub, tx_id)
        s.out.append(ToAmazonMQ(token, data, resendable=False))


def ack_outcome(s: SessionState, pending: Pending, failure: str | None) -> None:
    if failure is None:
        if pending.receipt is not None:
            frame = s.receipt_frame(pending.receipt)
            s.give_receipts(s.receipts.answered(pending.seq, AMAZONMQ, frame))
        return
    if pending.seq:
        s.give_receipts(s.receipts.drop(pending.seq))
    sub = s.consumers.subscriptions.get(pending.subscription or "")
    rule = sub.decision.rule if sub is not None else ""
    _ack_failed_fact(s, pending.subscription or "", rule, failure, pending.receipt, True)


def _ack_failed(
    s: SessionState, sub: DualSubscription, reason: str, receipt: str | None, named: bool
) -> None:
    _ack_failed_fact(s, sub.id, sub.decision.rule, reason, receipt, named)


def _ack_failed_fact(
    s: SessionState, sub_id: str, rule: str, reason: str, receipt: str | None, named: bool
) -> None:
    s.emit(Fact.CONSUMER_ACK_FAILED, subscription=sub_id, rule=rule, reason=reason)
    if named and receipt is not None and s.client_open and not s.error_sent:
        detail = f"acknowledgement not confirmed: {reason}; the message will be redelivered"
        s.to_client(error_frame(detail, reason, receipt_id=receipt))
        s.error_sent = True
        s.client_open = False
        s.close_reason = f"ack failed: {reason}"
        s.out.append(CloseClient(after_error=True))


# -- broker frames ------------------------------------------------------------------------


def on_amazonmq_message(s: SessionState, frame: Frame) -> None:
    """A MESSAGE from Amazon MQ: recorded for ACK routing, then the client's."""
    version = s.version
    sub_id = frame.get("subscription") or ""
    raw = frame.raw
    sub = s.consumers.subscriptions.get(sub_id)
    if sub is not None:
        s.consumers.delivered(
            sub, AMAZONMQ, ack_key(frame.get, version), s.amq_generation, s.clock()
        )
        _delivered_fact(s, sub, frame, AMAZONMQ)
        decision = sub.decision
        if decision.renamed and frame.get("destination") == decision.amazonmq_destination:
            raw = replace_header(raw, "destination", sub.destination, version)
    if sub_id.startswith(INTERNAL_SUB):
        raw = remove_header(raw, "subscription")
    # An unknown subscription was just unsubscribed: deliver as the broker would.
    s.to_client(raw + s.frame_eol)


def on_legacy_message(s: SessionState, frame: Frame) -> bytes | None:
    """A MESSAGE from legacy: the bytes the client gets, or None for the proxy's own."""
    sub_id = frame.get("subscription") or ""
    if sub_id.startswith(BROWSE_PREFIX):
        browsed = s.consumers.by_browse(sub_id)
        if browsed is not None:
            if frame.get("browser") == "end":
                _browse_finished(s, browsed)
            else:
                browsed.browse_found += 1
                _end_browse(s, browsed)  # one message is enough: not empty yet
        return None
    sub = s.consumers.subscriptions.get(sub_id)
    if sub is not None:
        s.consumers.delivered(sub, LEGACY, ack_key(frame.get, s.version), 0, s.clock())
        _delivered_fact(s, sub, frame, LEGACY)
    if sub_id.startswith(INTERNAL_SUB):
        return remove_header(frame.raw, "subscription")
    return frame.raw


def _delivered_fact(s: SessionState, sub: DualSubscription, frame: Frame, broker: str) -> None:
    s.emit(
        Fact.MESSAGE_DELIVERED,
        trace_id=frame.get(s.table.trace_header),
        subscription=sub.id,
        rule=sub.decision.rule,
        broker=broker,
    )


# -- legacy's backlog ---------------------------------------------------------------------


def _ensure_backlog_timer(s: SessionState) -> None:
    if not s.backlog_timer:
        s.backlog_timer = True
        s.out.append(StartTimer("backlog", s.ctx.settings.backlog_check_interval))


def check_backlogs(s: SessionState) -> None:
    """The backlog timer: browse legacy's queue where its side has gone quiet."""
    s.backlog_timer = False
    interval = s.ctx.settings.backlog_check_interval
    now = s.clock()
    watching = False
    for sub in list(s.consumers.subscriptions.values()):
        if not (sub.decision.drain_legacy and sub.legacy_active):
            continue
        watching = True
        if (
            sub.browsing is None
            and sub.legacy_unacked == 0
            and now - sub.last_legacy_delivery >= interval
        ):
            _browse(s, sub, now)
    if watching:
        _ensure_backlog_timer(s)


def _browse(s: SessionState, sub: DualSubscription, now: float) -> None:
    sub.browsing = s.consumers.next_browse_id()
    sub.browse_found = 0
    sub.browse_started = now
    headers = (
        ("id", sub.browsing),
        ("destination", sub.destination),
        ("browser", "true"),
        ("ack", "auto"),
    )
    s.to_legacy(encode_parts("SUBSCRIBE", headers, b"", s.version))


def _end_browse(s: SessionState, sub: DualSubscription) -> None:
    if sub.browsing is not None:
        s.to_legacy(encode_parts("UNSUBSCRIBE", (("id", sub.browsing),), b"", s.version))
        sub.browsing = None


def _browse_finished(s: SessionState, sub: DualSubscription) -> None:
    empty = sub.browse_found == 0 and sub.last_legacy_delivery < sub.browse_started
    _end_browse(s, sub)
    if not empty or sub.legacy_unacked or not sub.legacy_active:
        return
    sub.legacy_active = False
    s.to_legacy(encode_parts("UNSUBSCRIBE", (("id", sub.id),), b"", s.version))
    s.emit(
        Fact.CONSUMER_DRAINED,
        subscription=sub.id,
        destination=sub.destination,
        rule=sub.decision.rule,
        from_legacy=sub.delivered[LEGACY],
        from_amazonmq=sub.delivered[AMAZONMQ],
    )


def _ack(
    s: SessionState, command: str, key: str, sub: DualSubscription, tx_id: str | None
) -> bytes:
    headers: list[tuple[str, str]]
    if s.version == "1.2":
        headers = [("id", key)]
    elif s.version == "1.1":
        headers = [("message-id", key), ("subscription", sub.id)]
    else:
        headers = [("message-id", key)]
    if tx_id is not None:
        headers.append(("transaction", tx_id))
    return encode_parts(command, tuple(headers), b"", s.version)
