"""The promise, checked: what producers were told against what the brokers hold.

The promise (README, "What the proxy promises"): a RECEIPT to a producer means
the responsible broker has the message; nothing a producer sent is silently
dropped (it is delivered, or the producer gets an ERROR, or the connection
closes without a receipt). For transactions: a COMMIT that got its RECEIPT
means every message of the transaction is on its responsible broker(s);
nothing of a transaction that was never committed is stored anywhere.

``check`` compares three records of one run and lists every way they disagree:

- what the producers saw (``Sent``): each attempt of each SEND with its outcome,
  each transaction attempt with how it ended, every ERROR frame;
- what the brokers hold (``found``: copies per trace id, per broker);
- what the proxy says (its facts: ``message_routed`` per trace, and the facts
  that explain a copy elsewhere or twice: ``message_fell_back``,
  ``message_resent``, ``message_rejected``, ``message_mirror_failed``,
  ``transaction_partial_commit``, ``transaction_committed``).

A transaction whose COMMIT was written but never answered (the connection
closed first) is *in doubt*: the broker may have committed it, as with any
STOMP broker. Its messages may then be present, on legacy all or none of them;
on Amazon MQ (the proxy's own transaction) only with a fact that says its
COMMIT went through there.

Pure Python, no pytest, no broker: the fault matrix and ``bench/soak.py`` use it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

LEGACY, AMAZONMQ = "legacy", "amazonmq"
BROKERS = (LEGACY, AMAZONMQ)

# SEND outcomes as the producer saw them; "silent" = no answer on an open connection.
RECEIPT, ERROR, CLOSED, SILENT, PENDING = "receipt", "error", "closed", "silent", "pending"
# Transaction outcomes.
COMMITTED, ABORTED = "committed", "aborted"


@dataclass
class Attempt:
    """One SEND as written by a producer (a resend is a new attempt, a new trace)."""

    trace: str  # trace id header, also the receipt id
    message: str  # the logical message: every attempt of it shares this
    conn: int  # the producer connection it went out on
    outcome: str = PENDING
    tx: str | None = None  # the transaction attempt it was sent in


@dataclass
class TxAttempt:
    """One BEGIN .. COMMIT/ABORT; a failed transaction is retried as a new one."""

    id: str  # the transaction header: unique per attempt
    group: str  # the logical transaction: every attempt of it shares this
    plan: str  # "commit" or "abort": what the producer meant to end it with
    conn: int
    traces: list[str] = field(default_factory=list)
    end_sent: bool = False  # COMMIT / ABORT written
    outcome: str = PENDING  # committed | aborted | error | closed | silent | pending

    @property
    def in_doubt(self) -> bool:
        """COMMIT written, never answered: the brokers may or may not have committed."""
        return self.plan == "commit" and self.end_sent and self.outcome != COMMITTED


@dataclass
class Sent:
    """Everything one or more producers saw."""

    attempts: list[Attempt] = field(default_factory=list)
    transactions: list[TxAttempt] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (receipt-id, message)

    def extend(self, other: Sent) -> None:
        self.attempts += other.attempts
        self.transactions += other.transactions
        self.errors += other.errors


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    messages: int = 0  # logical messages meant to be stored (aborted transactions excluded)
    attempts: int = 0
    receipted: int = 0  # logical messages the producer was told are stored
    on: dict[str, int] = field(default_factory=dict)  # copies per broker
    duplicates: int = 0  # copies beyond one per broker a message belongs on
    explained: Counter[str] = field(default_factory=Counter)  # duplicates, by explanation
    tx: Counter[str] = field(default_factory=Counter)  # transaction attempts by outcome
    facts_lost: int = 0  # copies whose facts died with a SIGKILLed proxy
    lost: int = 0  # receipted messages (and messages of committed transactions) on no broker


class Facts:
    """The facts of a run, indexed by trace id and transaction id."""

    def __init__(self, facts: Iterable[dict[str, Any]]) -> None:
        self.routed: dict[str, dict[str, Any]] = {}
        self.by_event: dict[str, set[str]] = {}
        self.tx_by_event: dict[str, set[str]] = {}
        self.refused = False
        for f in facts:
            event = f["event"]
            if event == "message_routed":
                self.routed[str(f["trace_id"])] = f
            elif event == "client_refused":
                self.refused = True
            if f.get("trace_id") is not None:
                self.by_event.setdefault(event, set()).add(str(f["trace_id"]))
            if f.get("transaction") is not None:
                self.tx_by_event.setdefault(event, set()).add(str(f["transaction"]))

    def traces(self, event: str) -> set[str]:
        return self.by_event.get(event, set())

    def transactions(self, event: str) -> set[str]:
        return self.tx_by_event.get(event, set())


def check(
    sent: Sent,
    found: dict[str, Counter[str]],
    facts: Iterable[dict[str, Any]],
    *,
    lost_with_proxy: Callable[[int], bool] = lambda conn: False,
) -> Verdict:
    """Every way ``found`` and the facts break the promise made to ``sent``.

    ``lost_with_proxy(conn)``: attempts on that producer connection went to a proxy
    that was SIGKILLed, whose last facts (written every 50 ms) may be lost.
    """
    f = Facts(facts)
    v = Verdict()
    out = v.violations
    fell_back, resent = f.traces("message_fell_back"), f.traces("message_resent")
    rejected, mirror_failed = f.traces("message_rejected"), f.traces("message_mirror_failed")
    copy_failed = mirror_failed | fell_back  # a mirror copy that need not be on Amazon MQ
    gave_up = fell_back | rejected  # Amazon MQ's confirmation was not waited for
    by_trace = {a.trace: a for a in sent.attempts}
    txs = {t.id: t for t in sent.transactions}
    v.attempts = len(by_trace)
    v.on = {b: sum(found[b].values()) for b in BROKERS}
    v.tx = Counter(
        "in doubt" if t.in_doubt else t.outcome if t.outcome != PENDING else "unfinished"
        for t in sent.transactions
    )

    def lost(trace: str) -> bool:
        a = by_trace.get(trace)
        return a is not None and lost_with_proxy(a.conn)

    def targets(trace: str) -> tuple[str, ...]:
        fact = f.routed.get(trace)
        return tuple(fact["targets"]) if fact is not None else ()

    # 1. nothing silently dropped: every answer came, every message got stored in the end
    silent = [a.trace for a in by_trace.values() if a.outcome in (SILENT, PENDING)]
    silent += [t.id for t in txs.values() if t.outcome in (SILENT, PENDING)]
    if silent:
        out.append(f"{len(silent)} SENDs/COMMITs never answered, e.g. {silent[:3]}")
    plain: dict[str, list[Attempt]] = {}
    for a in by_trace.values():
        if a.tx is None:
            plain.setdefault(a.message, []).append(a)
    groups: dict[str, list[TxAttempt]] = {}
    for t in txs.values():
        groups.setdefault(t.group, []).append(t)
    unreceipted = [m for m, ats in plain.items() if not any(a.outcome == RECEIPT for a in ats)]
    uncommitted = [
        g
        for g, ts in groups.items()
        if ts[0].plan == "commit" and not any(t.outcome == COMMITTED for t in ts)
    ]
    if unreceipted:
        out.append(f"{len(unreceipted)} messages never receipted, e.g. {unreceipted[:3]}")
    if uncommitted:
        out.append(f"{len(uncommitted)} transactions never committed, e.g. {uncommitted[:3]}")
    committed_msgs = sum(
        len(next(t for t in ts if t.outcome == COMMITTED).traces)
        for g, ts in groups.items()
        if g not in uncommitted and ts[0].plan == "commit"
    )
    v.messages = len(plain) + sum(
        max(len(t.traces) for t in ts) for ts in groups.values() if ts[0].plan == "commit"
    )
    v.receipted = len(plain) - len(unreceipted) + committed_msgs

    # 2. a receipt (a committed COMMIT's receipt) means the responsible broker has it
    for a in by_trace.values():
        tx = txs.get(a.tx) if a.tx is not None else None
        if (a.outcome != RECEIPT) if tx is None else (tx.outcome != COMMITTED):
            continue
        fact = f.routed.get(a.trace)
        if fact is None:
            if not lost(a.trace):
                out.append(f"stored {a.trace} has no message_routed fact")
            elif not any(found[b][a.trace] for b in BROKERS):
                v.lost += 1
                out.append(f"receipted {a.trace} is on no broker")
            continue
        where = LEGACY if a.trace in fell_back else str(fact["primary"])
        if not found[where][a.trace]:
            v.lost += 1
            what = f"committed (transaction {tx.id})" if tx else "receipted"
            out.append(f"{what} {a.trace} is not on {where}")
        mirror_copy = len(fact["targets"]) == 2
        unexplained = a.trace not in copy_failed and not lost(a.trace)
        if mirror_copy and unexplained and not found[AMAZONMQ][a.trace]:
            out.append(f"mirror copy of {a.trace} is not on amazonmq, no message_mirror_failed")

    # 3. every copy is explained
    for broker in BROKERS:
        for trace, n in found[broker].items():
            copy_of = by_trace.get(trace)
            if copy_of is None:
                out.append(f"{broker} holds {trace!r}, which no producer sent")
                continue
            if trace not in f.routed:
                if lost(trace):
                    v.facts_lost += n
                else:
                    out.append(f"{trace} on {broker} has no message_routed fact")
                continue
            if broker not in targets(trace) and not (broker == LEGACY and trace in fell_back):
                out.append(f"{trace} on {broker}, routed to {targets(trace)} and not fallen back")
            if n > 1 and (copy_of.tx is not None or trace not in resent):
                why = " (a transaction's frame is never resent)" if copy_of.tx else ", not resent"
                out.append(f"{trace} is {n} times on {broker}{why}")
    for trace in set(found[LEGACY]) & set(found[AMAZONMQ]):
        if len(targets(trace)) == 1 and trace not in fell_back:
            out.append(f"{trace} is on both brokers, routed to {targets(trace)} only")

    # 3b. transactions: nothing of one that was never committed; an in-doubt one whole
    for t in txs.values():
        present = {b: [tr for tr in t.traces if found[b][tr]] for b in BROKERS}
        if t.plan == "abort" or not t.end_sent:
            for b in BROKERS:
                if present[b]:
                    why = "ABORTed" if t.plan == "abort" else "never sent its COMMIT"
                    out.append(f"transaction {t.id} {why}, yet {present[b][:2]} are on {b}")
            continue
        if not t.in_doubt:
            continue
        legacy_side = [tr for tr in t.traces if LEGACY in targets(tr) or tr in fell_back]
        if 0 < len(present[LEGACY]) < len(legacy_side):
            out.append(
                f"in-doubt transaction {t.id}: {len(present[LEGACY])} of its"
                f" {len(legacy_side)} legacy messages are on legacy (not all or none)"
            )
        said = t.id in (
            f.transactions("transaction_partial_commit") | f.transactions("transaction_committed")
        )
        for tr in present[AMAZONMQ]:
            if LEGACY in targets(tr) or said or lost(tr) or tr in gave_up:
                continue
            out.append(
                f"in-doubt transaction {t.id}: {tr} is on amazonmq and no fact says"
                " Amazon MQ committed it"
            )

    # duplicates of a logical message, each with its explanation
    def copies(traces: list[str]) -> int:
        """Copies beyond one per broker the message belongs on (both for a mirror)."""
        per_broker = [sum(found[b][tr] for tr in traces) for b in BROKERS]
        extra = sum(max(0, n - 1) for n in per_broker)
        # A copy on each broker is right for a mirror, and cannot be judged for a message
        # whose routing fact died with a SIGKILLed proxy (as in 3. above).
        both_ok = any(len(targets(tr)) == 2 or (tr not in f.routed and lost(tr)) for tr in traces)
        return extra + (1 if all(per_broker) and not both_ok else 0)

    for message, ats in plain.items():
        traces = [a.trace for a in ats]
        extra = copies(traces)
        if not extra:
            continue
        v.duplicates += extra
        if any(tr in resent for tr in traces):
            v.explained["message_resent"] += extra
        elif any(tr in fell_back for tr in traces):
            v.explained["message_fell_back"] += extra
        elif any(a.outcome != RECEIPT for a in ats):
            v.explained["resent by the producer"] += extra
        else:
            out.append(f"{message} has {extra} extra copies, all attempts receipted, no fact")
    for group, ts in groups.items():
        for i in range(max(len(t.traces) for t in ts)):
            traces = [t.traces[i] for t in ts if i < len(t.traces)]
            extra = copies(traces)
            if not extra:
                continue
            v.duplicates += extra
            if any(tr in fell_back for tr in traces):
                v.explained["message_fell_back"] += extra
            elif any(t.in_doubt for t in ts):
                v.explained["retried after an in-doubt COMMIT"] += extra
            else:
                out.append(f"{group}[{i}] has {extra} extra copies and no explanation")

    # every ERROR is a rejection the facts name, or a refused connection
    rejected_tx = f.transactions("message_rejected")
    for receipt, message in sent.errors:
        if receipt and receipt not in rejected:
            out.append(f"ERROR for {receipt} without message_rejected: {message}")
        if not receipt and not (f.refused or rejected_tx):
            out.append(f"ERROR without receipt-id, no client_refused: {message}")
    return v
