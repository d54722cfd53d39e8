"""The producer path: each SEND decided and sent where its route says, each outcome kept.

Invariants (the receipt promise, tested row by row in tests/unit/proxy/test_core_*):
- a SEND is decided on the destination the broker will use (``routes.destinations``)
  and the transaction and receipt the broker will read (``stomp.activemq``);
- legacy's part is the client's own bytes (trace header spliced in) on the client's
  own connection, so legacy answers the client's receipt itself;
- an Amazon MQ primary's receipt reaches the client only once Amazon MQ confirmed it;
  a failure applies the route's ``on_failure``: legacy gets the same bytes (and answers
  the receipt), or the client gets an ERROR naming the receipt; a failure after the
  frame was written is marked ``possibly_stored`` (it may be on Amazon MQ too);
- a mirror copy never delays the client: beyond the window it waits in a backlog with a
  shared byte budget; a full budget, or a failure, is a ``message_mirror_failed`` fact;
- every Amazon MQ frame has a deadline (``confirm_timeout``): when it passes, the
  connection is taken as hung and dropped, so every frame on it gets its outcome now.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...facts import Fact, plain_json_string
from ...routes import Decision, Mode, OnFailure, RouteTable
from ...routes.decide import choose
from ...stomp import error_frame, insert_header
from ...stomp.activemq import broker_value
from ...stomp.native import PumpedFrame
from .commands import CloseClient, DropAmazonMQ, PauseClient, StartTimer, ToAmazonMQ
from .state import (
    AMAZONMQ,
    BLOCKED_WINDOW,
    DESTINATION,
    LEGACY,
    MAX_TRACKED_RECEIPTS,
    OWN_TRACE,
    RECEIPT,
    TRACEPARENT,
    TRANSACTION,
    Kind,
    LegacyReceipt,
    MirrorCopy,
    Pending,
    SessionState,
)
from .transactions import begin_on_amazonmq, moved_send

# What a queued copy costs besides its bytes: counted too, so the budget bounds memory.
_COPY_OVERHEAD = 256
_LEGACY_ONLY = (LEGACY,)
# Pass-through decisions a session keeps (SessionState.passing); emptied when full.
PASSING_LIMIT = 1024


def on_send(s: SessionState, rec: PumpedFrame, data: bytes) -> bytes | bool:
    """Decide and send the SEND ``rec`` (its bytes are ``data[rec.start:rec.end]``, our
    trace header spliced first by the pump); return what legacy gets of it, for the caller
    to queue in order: True, exactly those bytes (left in place: the common case costs no
    copy); other bytes; or False, nothing (Amazon MQ is responsible, or it was refused)."""
    version = s.version
    values = rec.values
    raw_destination = values[DESTINATION] or ""
    receipt = values[RECEIPT]
    tx_id = values[TRANSACTION]
    if version == "1.0":  # the broker trims and decodes 1.0 values: decide on what it reads
        destination = broker_value(raw_destination, version, "SEND") or ""
        receipt = broker_value(receipt, version, "SEND")
        tx_id = broker_value(tx_id, version, "SEND")
    else:
        destination = raw_destination
    tx = s.transactions.get(tx_id) if tx_id is not None else None
    table = tx.table if tx is not None else s.table
    trace = rec.trace
    assert trace is not None  # the client pump splices every SEND
    in_place = True  # legacy's bytes are the frame as it stands in ``data``
    own = values[OWN_TRACE]
    producer_trace = None
    if own is not None:
        if table.trace_header == s.trace_header and s.traces.accept(own):
            trace = own  # well-formed and new: the producer's id goes on, ours comes off
            in_place = False
        else:
            producer_trace = own[:200]
    if table.trace_header != s.trace_header:  # routes.yaml renamed it since CONNECT
        in_place = False
    resolution = table.resolve(destination)
    route = resolution.route
    if resolution.weight is None:
        decision = resolution.hit
    else:
        sticky_header = route.sticky_header if route is not None else None
        sticky = rec.frame().get(sticky_header) if sticky_header is not None else None
        decision = choose(resolution, sticky, trace)
    dry_run = decision.dry_run or s.ctx.settings.dry_run
    refused = decision.refusal is not None
    to_amazonmq = AMAZONMQ in decision.targets and not dry_run and not refused
    s.sent += 1
    fields = {
        "session": s.id,
        "trace_id": trace,
        "destination": raw_destination,
        "rule": decision.rule,
        "mode": decision.mode,
        "targets": decision.targets if to_amazonmq else (() if refused else _LEGACY_ONLY),
        "primary": decision.primary if to_amazonmq else (None if refused else LEGACY),
        "would_target": decision.targets if dry_run else None,
        "dry_run": dry_run,
        "routes_version": decision.routes_version,
        "transaction": tx_id,
        "receipt": receipt is not None,
    }
    if resolution.destinations and resolution.destinations != (raw_destination,):
        fields["destinations"] = resolution.destinations
    if producer_trace is not None:
        fields["producer_trace_id"] = producer_trace
    traceparent = values[TRACEPARENT]
    if traceparent is not None:
        fields["traceparent"] = traceparent[:128]
    s.ctx.facts.record(Fact.MESSAGE_ROUTED, fields)
    if (
        in_place  # neither the producer's own trace id nor a renamed trace header
        and not to_amazonmq
        and not refused
        and tx_id is None
        and traceparent is None
        and resolution.weight is None  # not a split's per-message choice
        # 1.0: the broker trims and decodes; the hot path reads values as they came
        and (version != "1.0" or (receipt is None and destination == raw_destination))
        and plain_json_string(trace)
    ):
        remember_pass_through(s, raw_destination, fields, receipt is not None)
    if refused:
        assert decision.refusal is not None
        reject(s, trace, decision.rule, decision.refusal, receipt, False, why=decision.refusal)
        return False
    if not to_amazonmq or decision.mode is Mode.MIRROR:
        if receipt is not None:
            owe_legacy_receipt(s, receipt, trace, decision.rule)
        raw = data[rec.start : rec.end] if in_place else _legacy_bytes(s, rec, data, trace, table)
        if to_amazonmq:
            mirror(
                s, amazonmq_bytes(s, raw, raw_destination, decision), trace, decision.rule, tx_id
            )
        return True if in_place else raw
    raw = data[rec.start : rec.end] if in_place else _legacy_bytes(s, rec, data, trace, table)
    copy = amazonmq_bytes(s, raw, raw_destination, decision)
    if tx is not None:
        moved_send(s, tx, copy, raw, trace, decision, receipt)
    else:
        submit_primary(s, copy, raw, trace, decision, receipt)
    if s.window_full() and s.blocked is None:
        s.blocked = BLOCKED_WINDOW
        s.out.append(PauseClient())
    return False


def remember_pass_through(
    s: SessionState, destination: str, fields: Mapping[str, object], receipt: bool
) -> None:
    """A SEND to ``destination`` went to legacy alone with nothing else to watch (no
    transaction or trace of the producer's own; a decision that does not depend on the
    message): the next ones (with a receipt, or without, as this one) take the core's hot
    path, which forwards them in place, owes their receipt to legacy, and records this
    same fact with their own trace id, without deciding again.

    The first such SEND to a destination is only noted (None): the template is made at
    the second, so a session that sends once (1,000 of them in bench C) keeps no template
    of its one message (about 1 KiB each)."""
    passing = s.pass_through(receipt)  # no transaction: decided under the routes in force
    if destination not in passing:
        if len(passing) >= PASSING_LIMIT:
            passing.clear()
        passing[destination] = None
        return
    passing[destination] = s.ctx.facts.template(Fact.MESSAGE_ROUTED, fields)


def owe_legacy_receipt(s: SessionState, receipt: str, trace: str, rule: str) -> None:
    """Legacy answers ``receipt``: in order behind any Amazon MQ receipt owed, and its
    answer is the message's ``message_confirmed``."""
    s.receipts.note_legacy(receipt)
    if len(s.legacy_receipts) < MAX_TRACKED_RECEIPTS:
        s.legacy_receipts[receipt] = LegacyReceipt(trace, rule, s.clock())


def _legacy_bytes(
    s: SessionState, rec: PumpedFrame, data: bytes, trace: str, table: RouteTable
) -> bytes:
    """The SEND as legacy (and a fallback) gets it, trace header ``trace_header: trace``
    first: the pump's bytes, unless the trace is the producer's own (our line comes out)
    or routes.yaml renamed the header since the pump was made (the new one goes in)."""
    raw = data[rec.start : rec.end]
    if table.trace_header != s.trace_header:
        return insert_header(raw, table.trace_header, trace, s.version)
    if trace != rec.trace:  # the producer's own id: the frame as it sent it
        at, line_end = rec.splice_at - rec.start, raw.index(b"\n", rec.splice_at - rec.start)
        return raw[:at] + raw[line_end + 1 :]
    return raw


def amazonmq_bytes(s: SessionState, raw: bytes, raw_destination: str, decision: Decision) -> bytes:
    """The SEND for Amazon MQ: the client's bytes, the route's destination put first when
    it differs (the broker keeps the first of repeated headers; the link puts its own
    receipt before everything)."""
    target = decision.amazonmq_destination
    if target is None or target == raw_destination:
        return raw
    return insert_header(raw, "destination", target, s.version)


def send_legacy(s: SessionState, raw: bytes, trace: str, rule: str, receipt: str | None) -> None:
    if not s.legacy_open:
        return
    if receipt is not None and len(s.legacy_receipts) < MAX_TRACKED_RECEIPTS:
        s.legacy_receipts[receipt] = LegacyReceipt(trace, rule, s.clock())
    s.to_legacy(raw)


def submit_primary(
    s: SessionState, data: bytes, raw: bytes, trace: str, decision: Decision, receipt: str | None
) -> None:
    s.amq_used = True
    token = s.add_pending(
        Pending(
            Kind.PRIMARY,
            *s.confirm_window(),
            trace=trace,
            rule=decision.rule,
            decision=decision,
            receipt=receipt,
            raw=raw,
            seq=s.receipts.expect(receipt, AMAZONMQ) if receipt is not None else 0,
        )
    )
    s.out.append(ToAmazonMQ(token, data, resendable=True, label=trace, batch=receipt is None))


def mirror(s: SessionState, data: bytes, trace: str, rule: str, tx_id: str | None) -> None:
    """A copy for Amazon MQ that never delays the client: failures are facts only."""
    s.amq_used = True
    tx = s.transactions.get(tx_id) if tx_id is not None else None
    if tx is None and (s.mirror_backlog or s.window_full()):
        size = len(data) + _COPY_OVERHEAD
        if s.ctx.mirror_budget.take(size):
            s.mirror_backlog.append(MirrorCopy(data, trace, rule, size))
        else:
            mirror_failed(s, trace, rule, "mirror backlog full", possibly_stored=False)
        return
    if tx is not None and s.window_full():  # a transaction's copy must go before COMMIT
        mirror_failed(s, trace, rule, "mirror backlog full", possibly_stored=False)
        return
    submit_mirror(s, data, trace, rule, tx_id)


def submit_mirror(s: SessionState, data: bytes, trace: str, rule: str, tx_id: str | None) -> None:
    tx = s.transactions.get(tx_id) if tx_id is not None else None
    if tx is not None:
        begin_on_amazonmq(s, tx)
        tx.mirror_traces[trace] = rule
    token = s.add_pending(Pending(Kind.MIRROR, *s.confirm_window(), trace=trace, rule=rule, tx=tx))
    s.out.append(ToAmazonMQ(token, data, resendable=tx is None, label=trace, batch=tx is None))


def mirror_failed(
    s: SessionState, trace: str, rule: str, reason: str, *, possibly_stored: bool
) -> None:
    s.emit(
        Fact.MESSAGE_MIRROR_FAILED,
        trace_id=trace,
        rule=rule,
        reason=reason,
        possibly_stored=possibly_stored,
    )


def release_backlog(s: SessionState) -> None:
    """Copies waiting for room go out, in order, while the window has room."""
    backlog = s.mirror_backlog
    while backlog and not s.window_full():
        copy = backlog.popleft()
        s.ctx.mirror_budget.give(copy.size)
        submit_mirror(s, copy.data, copy.trace, copy.rule, None)


def drop_backlog(s: SessionState, reason: str) -> None:
    while s.mirror_backlog:
        copy = s.mirror_backlog.popleft()
        s.ctx.mirror_budget.give(copy.size)
        mirror_failed(s, copy.trace, copy.rule, reason, possibly_stored=False)


# -- outcomes ---------------------------------------------------------------------------


def confirmed(s: SessionState, pending: Pending, role: str, **extra: object) -> None:
    s.emit(
        Fact.MESSAGE_CONFIRMED,
        trace_id=pending.trace,
        rule=pending.rule,
        broker=AMAZONMQ,
        role=role,
        latency_ms=s.ms_since(pending.started),
        **extra,
    )


def primary_outcome(
    s: SessionState, pending: Pending, failure: str | None, possibly_stored: bool
) -> None:
    if failure is None:
        confirmed(s, pending, "primary")
        if pending.receipt is not None:
            frame = s.receipt_frame(pending.receipt)
            s.give_receipts(s.receipts.answered(pending.seq, AMAZONMQ, frame))
        return
    fail_primary(s, pending, failure, possibly_stored)


def fail_primary(s: SessionState, pending: Pending, reason: str, possibly_stored: bool) -> None:
    decision = pending.decision
    assert decision is not None and pending.trace is not None
    if decision.on_failure is OnFailure.LEGACY and s.legacy_open:
        s.emit(
            Fact.MESSAGE_FELL_BACK,
            trace_id=pending.trace,
            rule=decision.rule,
            reason=reason,
            to=LEGACY,
            possibly_stored=possibly_stored,
            receipt=pending.receipt is not None,
        )
        if pending.seq:
            s.receipts.to_legacy(pending.seq)  # legacy answers it now, in its place
        send_legacy(s, pending.raw, pending.trace, decision.rule, pending.receipt)
        s.fell_back.add(decision.rule)
        return
    if pending.seq:
        s.give_receipts(s.receipts.drop(pending.seq))
    reject(s, pending.trace, decision.rule, reason, pending.receipt, possibly_stored)


def reject(
    s: SessionState,
    trace: str,
    rule: str,
    reason: str,
    receipt: str | None,
    possibly_stored: bool,
    *,
    why: str = f"{AMAZONMQ} unavailable",
) -> None:
    """The message is refused: a fact, and an ERROR naming its receipt; the session ends."""
    s.emit(
        Fact.MESSAGE_REJECTED,
        trace_id=trace,
        rule=rule,
        reason=reason,
        possibly_stored=possibly_stored,
    )
    if s.client_open and not s.error_sent:
        message = f"message {trace} not accepted: {why}"
        s.to_client(error_frame(message, reason, receipt_id=receipt))
        s.error_sent = True
        s.close_reason = f"rejected: {reason}"
        s.out.append(CloseClient(after_error=True))
        s.client_open = False


def mirror_outcome(
    s: SessionState, pending: Pending, failure: str | None, possibly_stored: bool
) -> None:
    assert pending.trace is not None
    tx = pending.tx
    if failure is None:
        confirmed(s, pending, "mirror")
    elif tx is None or tx.mirror_traces.pop(pending.trace, None) is not None:
        mirror_failed(s, pending.trace, pending.rule, failure, possibly_stored=possibly_stored)


def expire(s: SessionState) -> None:
    """The confirm timer fired: a frame past its deadline means the connection is hung."""
    s.confirm_timer = False
    if not s.pending:
        return
    now = s.clock()
    first = next(iter(s.pending.values()))
    if first.deadline <= now:
        timeout = s.ctx.settings.confirm_timeout
        s.out.append(DropAmazonMQ(f"no receipt from {AMAZONMQ} within {timeout:g} seconds"))
        # Outcomes arrive as the link drops; re-arm for whatever remains after them.
        delay = timeout
    else:
        delay = first.deadline - now
    s.confirm_timer = True
    s.out.append(StartTimer("confirm", max(delay, 0.001)))
