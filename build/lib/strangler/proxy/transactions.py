"""A session's transactions: BEGIN, COMMIT and ABORT across two brokers.

A transaction follows the routes in force at its BEGIN. It is always begun on
legacy, and on Amazon MQ when its first frame goes there (a moved SEND, a mirror
copy, a consumer ACK).

Invariants:
- Amazon MQ's part is committed first, legacy's after it; that legacy COMMIT's
  receipt is watched, so a legacy failure after Amazon MQ committed is a fact
  (``transaction_partial_commit``);
- until the COMMIT is confirmed, every moved SEND is kept (``MovedMessage``): if
  Amazon MQ loses its part, they go into legacy's side of the same transaction
  (``on_failure: legacy``) or the client gets an ERROR (``reject``); nothing is
  stored on Amazon MQ before its COMMIT, so the fallback adds no duplicate;
- a transaction's frames are never resent on a new Amazon MQ connection.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..facts import Fact
from ..routes import AMAZONMQ, LEGACY, Decision, OnFailure, RouteTable
from ..stomp import Frame, FrameParser, MalformedFrame, encode_parts, error_frame, insert_header
from ..upstream import BrokerLink

if TYPE_CHECKING:
    from .session import ClientSession

# Receipts the proxy asks legacy for (never the client's own ids).
_INTERNAL_PREFIX = "strangler-legacy-"


@dataclass(slots=True)
class MovedMessage:
    """A transactional SEND whose responsible broker is Amazon MQ, kept until COMMIT.

    Amazon MQ rolls a transaction back when its connection drops, so until the
    commit is confirmed these bytes are the only copy the proxy can fall back with.
    """

    trace: str
    raw: bytes  # as sent by the client, trace header spliced in
    receipt: str | None
    decision: Decision
    receipted: bool = False  # the client already has its receipt
    settled: bool = False  # fell back or rejected: later outcomes are ignored


@dataclass(slots=True)
class Transaction:
    """A client transaction, possibly spanning both brokers."""

    id: str
    table: RouteTable  # routes in force at BEGIN: the whole transaction follows them
    amazonmq_generation: int | None = None  # link generation in which BEGIN reached Amazon MQ
    moved: list[MovedMessage] = field(default_factory=list)
    # trace -> rule of the mirror copies whose failure is not a fact yet (one fact each)
    mirror_traces: dict[str, str] = field(default_factory=dict)
    amazonmq_acks: int = 0  # consumer ACKs inside the transaction, on Amazon MQ
    closed: bool = False  # committed or aborted by the client


class TransactionSide:
    def __init__(self, session: ClientSession) -> None:
        self._session = session
        self._tx: dict[str, Transaction] = {}
        self._commit_receipts: dict[str, str] = {}  # receipt id on a legacy COMMIT -> tx id
        self._internal_seq = itertools.count(1)

    def get(self, tx_id: str | None) -> Transaction | None:
        return self._tx.get(tx_id) if tx_id is not None else None

    # -- client frames -------------------------------------------------------

    def on_begin(self, frame: Frame) -> None:
        tx_id = frame.get("transaction")
        if tx_id is None:
            raise MalformedFrame("BEGIN frame has no transaction header")
        self._tx[tx_id] = Transaction(tx_id, self._session.ctx.routes.table)
        assert frame.raw is not None
        self._session.write_legacy(frame.raw)

    def on_commit(self, frame: Frame) -> Awaitable[None] | None:
        tx_id = frame.get("transaction")
        if tx_id is None:
            raise MalformedFrame("COMMIT frame has no transaction header")
        tx = self._tx.pop(tx_id, None)
        if tx is None or tx.amazonmq_generation is None:
            self._forward_commit(frame, tx_id, None)
            if tx is not None:
                tx.closed = True
            return None
        return self._commit_both(frame, tx)

    def on_abort(self, frame: Frame) -> None:
        session = self._session
        tx_id = frame.get("transaction")
        if tx_id is None:
            raise MalformedFrame("ABORT frame has no transaction header")
        tx = self._tx.pop(tx_id, None)
        assert frame.raw is not None
        session.write_legacy(frame.raw)
        if tx is None:
            return
        tx.closed = True
        link = session.link
        if link is not None and tx.amazonmq_generation == link.generation:
            link.submit(
                lambda rid: self._control("ABORT", tx_id, rid),
                lambda failure: None,
                resendable=False,
            )
        session.emit(
            Fact.TRANSACTION_ABORTED,
            transaction=tx_id,
            reason="client ABORT",
            traces=[m.trace for m in tx.moved],
        )

    # -- Amazon MQ's part ------------------------------------------------------

    def begin_on_amazonmq(self, tx: Transaction, link: BrokerLink) -> None:
        self._check_transaction(tx, link)
        if tx.amazonmq_generation is None:
            tx.amazonmq_generation = link.generation

            def done(failure: str | None) -> None:
                if failure is not None:
                    self.lost_amazonmq(tx, failure)

            link.submit(lambda rid: self._control("BEGIN", tx.id, rid), done, resendable=False)

    def send_moved(
        self,
        frame: Frame,
        raw: bytes,
        trace: str,
        decision: Decision,
        receipt: str | None,
        tx: Transaction,
        link: BrokerLink,
    ) -> None:
        """A SEND inside ``tx`` for which Amazon MQ is responsible: kept until COMMIT."""
        session = self._session
        self.begin_on_amazonmq(tx, link)
        moved = MovedMessage(trace, raw, receipt, decision)
        tx.moved.append(moved)
        started = time.monotonic()

        def done(failure: str | None) -> None:
            if moved.settled:
                return
            if failure is None:
                moved.receipted = True
                session.amazonmq_confirmed(
                    trace, decision.rule, "primary", started, receipt, transaction=tx.id
                )
            else:
                self.lost_amazonmq(tx, failure)

        link.submit(
            lambda rid: session.amazonmq_frame(frame, trace, decision, rid), done, resendable=False
        )

    def _check_transaction(self, tx: Transaction, link: BrokerLink) -> None:
        """Amazon MQ's part of ``tx`` is gone if the link failed since BEGIN reached it."""
        if tx.amazonmq_generation is not None and tx.amazonmq_generation != link.generation:
            self.lost_amazonmq(tx, link.last_failure or "connection lost")

    def lost_amazonmq(self, tx: Transaction, reason: str) -> None:
        """Amazon MQ rolled back its part of ``tx``: move that part to legacy, or reject.

        Nothing of a transaction is stored on Amazon MQ before its COMMIT, so the
        fallback adds no duplicate: every moved message goes into legacy's side
        of the same transaction, and the client's COMMIT then covers it there.
        """
        if tx.closed:
            return
        session = self._session
        tx.amazonmq_generation = None
        if tx.amazonmq_acks:  # Amazon MQ redelivers those messages: at-least-once
            session.emit(
                Fact.CONSUMER_ACK_FAILED, transaction=tx.id, acks=tx.amazonmq_acks, reason=reason
            )
            tx.amazonmq_acks = 0
        for trace, rule in tx.mirror_traces.items():
            session.emit(Fact.MESSAGE_MIRROR_FAILED, trace_id=trace, rule=rule, reason=reason)
        tx.mirror_traces.clear()
        moved, tx.moved = tx.moved, []
        for message in moved:
            message.settled = True
        # A closed session cannot fall back (as in _fail_primary): the messages are rejected.
        if session.closed or any(m.decision.on_failure is not OnFailure.LEGACY for m in moved):
            for message in moved:
                session.emit(
                    Fact.MESSAGE_REJECTED,
                    trace_id=message.trace,
                    rule=message.decision.rule,
                    reason=reason,
                    transaction=tx.id,
                )
            pending = next((m.receipt for m in moved if not m.receipted), None)
            detail = f"transaction {tx.id}: {AMAZONMQ} unavailable"
            session.abort(f"rejected: {reason}", error_frame(detail, reason, receipt_id=pending))
            return
        for message in moved:
            session.emit(
                Fact.MESSAGE_FELL_BACK,
                trace_id=message.trace,
                rule=message.decision.rule,
                reason=reason,
                to=LEGACY,
                transaction=tx.id,
            )
            session.fell_back(message.decision.rule)
            raw = message.raw
            if message.receipted and message.receipt is not None:
                raw = _without_receipt(raw, session.version)
            session.send_legacy(
                raw,
                message.trace,
                message.decision.rule,
                None if message.receipted else message.receipt,
            )

    # -- COMMIT ------------------------------------------------------------------

    async def _commit_both(self, frame: Frame, tx: Transaction) -> None:
        session = self._session
        link = session.amazonmq()
        self._check_transaction(tx, link)
        if tx.amazonmq_generation is not None and not tx.moved and not tx.amazonmq_acks:
            # Mirror copies only: legacy is primary, the copy's commit is not awaited.
            link.submit(
                lambda rid: self._control("COMMIT", tx.id, rid),
                lambda failure: self._mirror_commit_failed(tx, failure),
                resendable=False,
            )
        elif tx.amazonmq_generation is not None:
            outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

            def settle(failure: str | None) -> None:
                if not outcome.done():
                    outcome.set_result(failure)

            link.submit(lambda rid: self._control("COMMIT", tx.id, rid), settle, resendable=False)
            failure = await outcome
            if failure is not None:
                # Unconfirmed COMMIT: Amazon MQ may or may not have committed (the fact says).
                self.lost_amazonmq(tx, f"COMMIT not confirmed: {failure}")
        spans_both = tx.amazonmq_generation is not None and (bool(tx.moved) or tx.amazonmq_acks > 0)
        if session.closed:
            if spans_both:  # Amazon MQ committed its part; legacy will never see the COMMIT
                session.emit(
                    Fact.TRANSACTION_PARTIAL_COMMIT,
                    transaction=tx.id,
                    committed=(AMAZONMQ,),
                    failed=(LEGACY,),
                    reason="session closed before the COMMIT reached legacy: "
                    f"{session.close_reason}",
                )
            return
        tx.closed = True
        self._forward_commit(frame, tx.id, tx if spans_both else None)

    def _mirror_commit_failed(self, tx: Transaction, failure: str | None) -> None:
        if failure is not None:
            for trace, rule in tx.mirror_traces.items():
                self._session.emit(
                    Fact.MESSAGE_MIRROR_FAILED, trace_id=trace, rule=rule, reason=failure
                )
            tx.mirror_traces.clear()

    def _forward_commit(self, frame: Frame, tx_id: str, tx: Transaction | None) -> None:
        """COMMIT on legacy, watching its receipt so a half-done commit is a fact."""
        assert frame.raw is not None
        raw = frame.raw
        if tx is not None:  # Amazon MQ already committed its part
            receipt = frame.get("receipt")
            if receipt is None:
                receipt = f"{_INTERNAL_PREFIX}{next(self._internal_seq)}"
                raw = insert_header(raw, "receipt", receipt, self._session.version)
            self._commit_receipts[receipt] = tx_id
        self._session.write_legacy(raw)

    def _control(self, command: str, tx_id: str, receipt_id: str) -> bytes:
        return encode_parts(
            command, (("transaction", tx_id), ("receipt", receipt_id)), b"", self._session.version
        )

    # -- legacy's answers to a watched COMMIT -------------------------------------

    def on_legacy_receipt(self, receipt: str) -> bool:
        """A RECEIPT from legacy; False when it is the proxy's own (a watched COMMIT's)."""
        tx_id = self._commit_receipts.pop(receipt, None)
        if tx_id is None:
            return True
        self._session.emit(
            Fact.TRANSACTION_COMMITTED, transaction=tx_id, brokers=(AMAZONMQ, LEGACY)
        )
        return not receipt.startswith(_INTERNAL_PREFIX)

    def legacy_failed(self, reason: str | None) -> None:
        """Legacy failed (ERROR, closed) before confirming the watched COMMITs."""
        for tx_id in self._commit_receipts.values():
            self._session.emit(
                Fact.TRANSACTION_PARTIAL_COMMIT,
                transaction=tx_id,
                committed=(AMAZONMQ,),
                failed=(LEGACY,),
                reason=reason,
            )
        self._commit_receipts.clear()


def _without_receipt(raw: bytes, version: str) -> bytes:
    """``raw`` minus its receipt header (the client already has that receipt)."""
    parsed = FrameParser(version=version).feed(raw)
    frame = parsed[0]
    assert isinstance(frame, Frame)
    headers = tuple((k, v) for k, v in frame.headers if k != "receipt")
    return encode_parts(frame.command, headers, frame.body, version)
