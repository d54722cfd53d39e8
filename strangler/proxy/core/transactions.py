"""A session's transactions: BEGIN, COMMIT and ABORT across two brokers.

A transaction follows the routes in force at its BEGIN. It is always begun on legacy,
and on Amazon MQ when its first frame goes there (a moved SEND, a mirror copy, a
consumer ACK).

Invariants:
- Amazon MQ's part is committed first, legacy's after it (the client is held
  meanwhile); that legacy COMMIT's receipt is watched, so a legacy failure after Amazon
  MQ committed is a fact (``transaction_partial_commit``);
- until the COMMIT is confirmed, every moved SEND is kept (``MovedMessage``): if Amazon
  MQ loses its part, they go into legacy's side of the same transaction
  (``on_failure: legacy``) or the client gets an ERROR (``reject``); nothing is stored
  on Amazon MQ before its COMMIT, so the fallback adds no duplicate, except when the
  COMMIT itself went unanswered (then the facts say ``possibly_stored``);
- a transaction's frames are never resent on a new Amazon MQ connection.
"""

from __future__ import annotations

from ...facts import Fact
from ...routes import Decision, OnFailure
from ...stomp import Frame, encode_parts, error_frame, insert_header, remove_header
from ...stomp.activemq import broker_value
from ...stomp.serializer import header_end
from .commands import CloseClient, PauseClient, ToAmazonMQ
from .state import (
    AMAZONMQ,
    BLOCKED_COMMIT,
    LEGACY,
    MAX_TRACKED_RECEIPTS,
    Kind,
    LegacyReceipt,
    MovedMessage,
    Pending,
    SessionState,
    Transaction,
)

# Receipts the proxy asks legacy for (never the client's own ids).
INTERNAL_PREFIX = "strangler-legacy-"


def tx_id_of(s: SessionState, frame: Frame) -> str:
    return broker_value(frame.get("transaction"), s.version, frame.command) or ""


def on_begin(s: SessionState, frame: Frame) -> None:
    tx_id = tx_id_of(s, frame)
    s.transactions[tx_id] = Transaction(tx_id, s.table)
    s.to_legacy(frame.raw)


def on_abort(s: SessionState, frame: Frame) -> None:
    tx_id = tx_id_of(s, frame)
    tx = s.transactions.pop(tx_id, None)
    s.to_legacy(frame.raw)
    if tx is None:
        return
    tx.closed = True
    for sub, deliveries in tx.acked:  # not acknowledged after all: the client may ACK again
        s.consumers.restore(sub, deliveries)
    if tx.amazonmq_generation == s.amq_generation:
        submit_control(s, Kind.TX_ABORT, "ABORT", tx)
    s.emit(
        Fact.TRANSACTION_ABORTED,
        transaction=tx_id,
        reason="client ABORT",
        traces=[m.trace for m in tx.moved],
    )


def on_commit(s: SessionState, frame: Frame) -> None:
    tx_id = tx_id_of(s, frame)
    tx = s.transactions.pop(tx_id, None)
    if tx is None or tx.amazonmq_generation is None:
        if tx is not None:
            tx.closed = True
        s.to_legacy(frame.raw)
        return
    check_generation(s, tx)
    if tx.amazonmq_generation is not None and not tx.moved and not tx.amazonmq_acks:
        # Mirror copies only: legacy is primary, the copy's commit is not awaited.
        submit_control(s, Kind.TX_MIRROR_COMMIT, "COMMIT", tx)
        tx.closed = True
        s.to_legacy(frame.raw)
        return
    if tx.amazonmq_generation is None:  # lost since: its moved messages went to legacy
        tx.closed = True
        s.to_legacy(frame.raw)
        return
    # Amazon MQ commits first; the client waits (and is not read) until it answered.
    submit_control(s, Kind.TX_COMMIT, "COMMIT", tx, raw=frame.raw)
    s.blocked = BLOCKED_COMMIT
    s.out.append(PauseClient())


def commit_outcome(s: SessionState, pending: Pending, failure: str | None, stored: bool) -> None:
    tx = pending.tx
    assert tx is not None
    if failure is not None:
        lost_amazonmq(s, tx, f"COMMIT not confirmed: {failure}", possibly_stored=stored)
    spans_both = tx.amazonmq_generation is not None and (bool(tx.moved) or tx.amazonmq_acks > 0)
    tx.closed = True
    if not s.legacy_open or s.error_sent:
        if spans_both:  # Amazon MQ committed its part; legacy will never see the COMMIT
            s.emit(
                Fact.TRANSACTION_PARTIAL_COMMIT,
                transaction=tx.id,
                committed=(AMAZONMQ,),
                failed=(LEGACY,),
                reason=f"session closed before the COMMIT reached legacy: {s.close_reason}",
            )
        return
    forward_commit(s, pending.raw, tx.id, watched=spans_both)


def fail_mirror_copies(
    s: SessionState, tx: Transaction, reason: str, *, possibly_stored: bool
) -> None:
    """The mirror copies sent inside ``tx``: Amazon MQ's part of it will not commit."""
    for trace, rule in tx.mirror_traces.items():
        s.emit(
            Fact.MESSAGE_MIRROR_FAILED,
            trace_id=trace,
            rule=rule,
            reason=reason,
            possibly_stored=possibly_stored,
        )
    tx.mirror_traces.clear()


def mirror_commit_outcome(s: SessionState, pending: Pending, failure: str | None) -> None:
    tx = pending.tx
    if failure is not None and tx is not None:
        fail_mirror_copies(s, tx, failure, possibly_stored=True)


def forward_commit(s: SessionState, raw: bytes, tx_id: str, *, watched: bool) -> None:
    """COMMIT on legacy, watching its receipt when Amazon MQ already committed its part."""
    if watched:
        frame_receipt = _receipt_of(s, raw)
        receipt = frame_receipt
        if receipt is None:
            s.internal_seq += 1
            receipt = f"{INTERNAL_PREFIX}{s.internal_seq}"
            raw = insert_header(raw, "receipt", receipt, s.version)
        s.commit_receipts[receipt] = tx_id
    s.to_legacy(raw)


def _receipt_of(s: SessionState, raw: bytes) -> str | None:
    for line in raw[: header_end(raw)].split(b"\n")[1:]:
        if line.startswith(b"receipt:"):
            value = line[len(b"receipt:") :].rstrip(b"\r").decode("utf-8", "replace")
            return broker_value(value, s.version, "COMMIT")
    return None


def begin_on_amazonmq(s: SessionState, tx: Transaction) -> None:
    check_generation(s, tx)
    if tx.amazonmq_generation is None:
        tx.amazonmq_generation = s.amq_generation
        submit_control(s, Kind.TX_BEGIN, "BEGIN", tx)


def check_generation(s: SessionState, tx: Transaction) -> None:
    """Amazon MQ's part of ``tx`` is gone if its connection was lost since BEGIN."""
    if tx.amazonmq_generation is not None and tx.amazonmq_generation != s.amq_generation:
        lost_amazonmq(s, tx, "Amazon MQ connection lost", possibly_stored=False)


def submit_control(
    s: SessionState, kind: Kind, command: str, tx: Transaction, raw: bytes = b""
) -> None:
    s.amq_used = True
    token = s.add_pending(Pending(kind, *s.confirm_window(), tx=tx, raw=raw))
    data = encode_parts(command, (("transaction", tx.id),), b"", s.version)
    s.out.append(ToAmazonMQ(token, data, resendable=False))


def moved_send(
    s: SessionState,
    tx: Transaction,
    data: bytes,
    raw: bytes,
    trace: str,
    decision: Decision,
    receipt: str | None,
) -> None:
    """A SEND inside ``tx`` for which Amazon MQ is responsible: kept until COMMIT."""
    begin_on_amazonmq(s, tx)
    seq = s.receipts.expect(receipt, AMAZONMQ) if receipt is not None else 0
    moved = MovedMessage(trace, raw, receipt, decision, seq=seq)
    tx.moved.append(moved)
    token = s.add_pending(
        Pending(
            Kind.MOVED,
            *s.confirm_window(),
            trace=trace,
            rule=decision.rule,
            decision=decision,
            receipt=receipt,
            raw=raw,
            tx=tx,
        )
    )
    s.out.append(ToAmazonMQ(token, data, resendable=False, label=trace))


def moved_outcome(s: SessionState, pending: Pending, failure: str | None, stored: bool) -> None:
    tx = pending.tx
    assert tx is not None
    moved = next((m for m in tx.moved if m.trace == pending.trace), None)
    if moved is None or moved.settled:
        return
    if failure is None:
        moved.receipted = True
        s.emit(
            Fact.MESSAGE_CONFIRMED,
            trace_id=pending.trace,
            rule=pending.rule,
            broker=AMAZONMQ,
            role="primary",
            latency_ms=s.ms_since(pending.started),
            transaction=tx.id,
        )
        if moved.receipt is not None:
            frame = s.receipt_frame(moved.receipt)
            s.give_receipts(s.receipts.answered(moved.seq, AMAZONMQ, frame))
        return
    # Nothing of a transaction is stored before its COMMIT: a lost SEND is not in doubt.
    lost_amazonmq(s, tx, failure, possibly_stored=False)


def begin_outcome(s: SessionState, pending: Pending, failure: str | None) -> None:
    if failure is not None and pending.tx is not None:
        lost_amazonmq(s, pending.tx, failure, possibly_stored=False)


def amazonmq_lost(s: SessionState, reason: str) -> None:
    """The Amazon MQ connection is gone: every transaction begun on it is rolled back."""
    for tx in list(s.transactions.values()):
        if tx.amazonmq_generation is not None and tx.amazonmq_generation < s.amq_generation:
            lost_amazonmq(s, tx, reason, possibly_stored=False)


def lost_amazonmq(s: SessionState, tx: Transaction, reason: str, *, possibly_stored: bool) -> None:
    """Amazon MQ rolled back (or may have committed) its part of ``tx``: move that part
    to legacy's side of the same transaction, or reject."""
    if tx.closed and not possibly_stored:
        return
    tx.amazonmq_generation = None
    if tx.amazonmq_acks:  # Amazon MQ redelivers those messages: at-least-once
        s.emit(Fact.CONSUMER_ACK_FAILED, transaction=tx.id, acks=tx.amazonmq_acks, reason=reason)
        tx.amazonmq_acks = 0
    fail_mirror_copies(s, tx, reason, possibly_stored=possibly_stored)
    moved, tx.moved = tx.moved, []
    for message in moved:
        message.settled = True
    if not moved:
        return
    closed = not s.legacy_open
    if closed or any(m.decision.on_failure is not OnFailure.LEGACY for m in moved):
        for message in moved:
            if message.seq and not message.receipted:
                s.give_receipts(s.receipts.drop(message.seq))
            s.emit(
                Fact.MESSAGE_REJECTED,
                trace_id=message.trace,
                rule=message.decision.rule,
                reason=reason,
                transaction=tx.id,
                possibly_stored=possibly_stored,
            )
        if s.client_open and not s.error_sent:
            pending = next((m.receipt for m in moved if not m.receipted), None)
            detail = f"transaction {tx.id}: {AMAZONMQ} unavailable"
            s.to_client(error_frame(detail, reason, receipt_id=pending))
            s.error_sent = True
            s.close_reason = f"rejected: {reason}"
            s.out.append(CloseClient(after_error=True))
            s.client_open = False
        return
    for message in moved:
        s.emit(
            Fact.MESSAGE_FELL_BACK,
            trace_id=message.trace,
            rule=message.decision.rule,
            reason=reason,
            to=LEGACY,
            transaction=tx.id,
            possibly_stored=possibly_stored,
            receipt=message.receipt is not None and not message.receipted,
        )
        s.fell_back.add(message.decision.rule)
        raw = message.raw
        receipt = message.receipt
        if message.receipted and receipt is not None:
            raw = remove_header(raw, "receipt")  # the client already has that receipt
            receipt = None
        elif message.seq:
            s.receipts.to_legacy(message.seq)  # legacy answers it now, in its place
        if receipt is not None and len(s.legacy_receipts) < MAX_TRACKED_RECEIPTS:
            s.legacy_receipts[receipt] = LegacyReceipt(
                message.trace, message.decision.rule, s.clock()
            )
        s.to_legacy(raw)


# -- legacy's answers to a watched COMMIT -------------------------------------------------


def on_legacy_receipt(s: SessionState, receipt: str) -> bool:
    """A RECEIPT from legacy; False when it is the proxy's own (a watched COMMIT's)."""
    tx_id = s.commit_receipts.pop(receipt, None)
    if tx_id is None:
        return True
    s.emit(Fact.TRANSACTION_COMMITTED, transaction=tx_id, brokers=(AMAZONMQ, LEGACY))
    return not receipt.startswith(INTERNAL_PREFIX)


def legacy_refused(s: SessionState, receipt: str, reason: str | None) -> None:
    """Legacy answered a watched COMMIT with an ERROR: Amazon MQ's part stays committed."""
    tx_id = s.commit_receipts.pop(receipt, None)
    if tx_id is not None:
        s.emit(
            Fact.TRANSACTION_PARTIAL_COMMIT,
            transaction=tx_id,
            committed=(AMAZONMQ,),
            failed=(LEGACY,),
            reason=reason,
        )


def legacy_failed(s: SessionState, reason: str | None) -> None:
    """Legacy failed (ERROR, closed) before confirming the watched COMMITs."""
    for tx_id in s.commit_receipts.values():
        s.emit(
            Fact.TRANSACTION_PARTIAL_COMMIT,
            transaction=tx_id,
            committed=(AMAZONMQ,),
            failed=(LEGACY,),
            reason=reason,
        )
    s.commit_receipts.clear()
