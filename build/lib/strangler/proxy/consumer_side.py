"""A session's consumers: SUBSCRIBE, MESSAGE, ACK/NACK and UNSUBSCRIBE across two brokers.

For a destination the routes send to Amazon MQ (cutover, split), a SUBSCRIBE
opens the same subscription id on legacy (through the client's own connection)
and on Amazon MQ (through the session's link), and both streams reach the client
as one subscription. Legacy's side of a cutover queue is dropped once legacy's
backlog is empty (fact ``consumer_drained``). Every other destination stays a
plain pass-through to legacy, with nothing tracked.

Invariants:
- an ACK/NACK reaches the broker whose message it names (see ``ConsumerBook``);
- an ACK's RECEIPT reaches the client only when that broker confirmed the ACK;
  an ACK that cannot be delivered is a fact, and, if the client asked for a
  receipt, an ERROR: the broker redelivers the message (at-least-once);
- a message that falls back to legacy opens legacy's side again for the drained
  subscriptions of its route, on every session of the proxy;
- a routes change reaches open subscriptions: one that now reads Amazon MQ too
  gets its Amazon MQ side; one whose route went back (rollback) keeps reading
  Amazon MQ (so nothing moved there is stranded) and gets its legacy side back if
  it had been dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ..facts import Fact
from ..routes import AMAZONMQ, LEGACY, ConsumerDecision, decide_subscribe
from ..stomp import Frame, encode_parts, error_frame
from .consumers import (
    BROWSE_PREFIX,
    ConsumerBook,
    DualSubscription,
    ack_frame_key,
    ack_key,
)

if TYPE_CHECKING:
    from .session import ClientSession

# Legacy-only subscriptions a session remembers so a routes change can reach them.
_MAX_TRACKED = 10_000


class ConsumerSide:
    def __init__(self, session: ClientSession) -> None:
        self._session = session
        self.book = ConsumerBook()
        self._legacy_only: dict[str, Frame] = {}  # id -> SUBSCRIBE, for a later routes change
        self._watcher: asyncio.Task[None] | None = None

    # -- client frames -------------------------------------------------------

    def on_subscribe(self, frame: Frame) -> None:
        session = self._session
        assert frame.raw is not None
        session.write_legacy(frame.raw)  # legacy's side: the client's own subscription
        destination = frame.get("destination")
        sub_id = frame.get("id")
        if destination is None or sub_id is None or sub_id in self.book.subscriptions:
            return  # legacy answers for it (1.0 without an id stays legacy-only)
        decision = self._decide(destination)
        if AMAZONMQ not in decision.sources:
            if len(self._legacy_only) < _MAX_TRACKED:  # beyond: pass-through, never upgraded
                self._legacy_only[sub_id] = frame
            return
        self._open_amazonmq(frame, sub_id, destination, decision)

    def _decide(self, destination: str) -> ConsumerDecision:
        ctx = self._session.ctx
        return decide_subscribe(ctx.routes.table, destination, ctx.settings.dry_run)

    def routes_changed(self) -> None:
        """A new routes table is in force: give open subscriptions the sides it asks for."""
        for sub_id, frame in list(self._legacy_only.items()):
            destination = frame.get("destination")
            assert destination is not None
            decision = self._decide(destination)
            if AMAZONMQ in decision.sources:
                del self._legacy_only[sub_id]
                self._open_amazonmq(frame, sub_id, destination, decision)
        for sub in self.book.subscriptions.values():
            decision = self._decide(sub.destination)
            if AMAZONMQ not in decision.sources:
                # Rolled back: keep reading what was moved to Amazon MQ; never drop legacy.
                decision = dataclasses.replace(
                    decision,
                    sources=sub.decision.sources,
                    amazonmq_destination=sub.decision.amazonmq_destination,
                )
            if not decision.drain_legacy and not sub.legacy_active:
                self._reopen_legacy(sub, decision)
            sub.decision = dataclasses.replace(
                decision, amazonmq_destination=sub.decision.amazonmq_destination
            )
            if decision.drain_legacy:
                self._ensure_watcher()

    def legacy_refilled(self, rule: str) -> None:
        """A message of ``rule`` fell back to legacy: drained subscriptions read legacy
        again (until its queue is empty once more), so the fallback is not stranded."""
        for sub in self.book.subscriptions.values():
            if sub.decision.rule == rule and not sub.legacy_active:
                self._reopen_legacy(sub, sub.decision)

    def _reopen_legacy(self, sub: DualSubscription, decision: ConsumerDecision) -> None:
        headers = tuple((k, v) for k, v in sub.frame.headers if k != "receipt")
        session = self._session
        session.write_legacy(encode_parts("SUBSCRIBE", headers, b"", session.version))
        sub.legacy_active = True
        sub.last_legacy_delivery = time.monotonic()
        self._legacy_side_fact(sub.id, sub.destination, decision)

    def _legacy_side_fact(self, sub_id: str, destination: str, decision: ConsumerDecision) -> None:
        self._session.emit(
            Fact.CONSUMER_SUBSCRIBED,
            subscription=sub_id,
            destination=destination,
            rule=decision.rule,
            mode=decision.mode,
            broker=LEGACY,
            routes_version=decision.routes_version,
        )

    def _ensure_watcher(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_backlogs())

    def _open_amazonmq(
        self, frame: Frame, sub_id: str, destination: str, decision: ConsumerDecision
    ) -> None:
        """Track ``sub_id`` (open on legacy) as reading both brokers; subscribe on Amazon MQ."""
        session = self._session
        sub = DualSubscription(sub_id, destination, decision, frame, frame.get("ack") or "auto")
        sub.last_legacy_delivery = time.monotonic()
        self.book.add(sub)
        self._legacy_side_fact(sub_id, destination, decision)

        def subscribed(failure: str | None) -> None:
            # On a failure the link subscribes again on its next connection.
            lost = failure is not None
            fact = Fact.CONSUMER_SUBSCRIPTION_LOST if lost else Fact.CONSUMER_SUBSCRIBED
            session.emit(
                fact,
                subscription=sub_id,
                destination=decision.amazonmq_destination,
                rule=decision.rule,
                broker=AMAZONMQ,
                reason=failure,
            )

        session.amazonmq().subscribe(
            sub_id, lambda rid: self._subscribe_frame(frame, sub, rid), subscribed
        )
        if decision.drain_legacy:
            self._ensure_watcher()

    def on_unsubscribe(self, frame: Frame) -> None:
        session = self._session
        assert frame.raw is not None
        sub_id = frame.get("id")
        sub = self.book.remove(sub_id) if sub_id is not None else None
        if sub_id is not None:
            self._legacy_only.pop(sub_id, None)
        if sub is None:
            session.write_legacy(frame.raw)
            return
        self._end_browse(sub)
        receipt = frame.get("receipt")
        if sub.legacy_active:
            session.write_legacy(frame.raw)  # legacy answers the client's receipt
            receipt = None

        def done(failure: str | None) -> None:
            if receipt is not None:
                session.write_client(session.receipt(receipt))

        session.amazonmq().unsubscribe(
            sub.id, lambda rid: self._control("UNSUBSCRIBE", (("id", sub.id),), rid), done
        )

    def on_ack(self, frame: Frame) -> None:
        session = self._session
        assert frame.raw is not None
        key = ack_frame_key(frame.get, session.version)
        sub = self.book.subscriptions.get(frame.get("subscription") or "")
        if sub is None and key is not None:
            sub = self.book.find_by_key(key)
        targets = self.book.route_ack(sub, key) if sub is not None and key is not None else []
        if sub is None or not targets:
            session.write_legacy(frame.raw)  # not ours to route: legacy's to answer
            return
        receipt = frame.get("receipt")
        tx_id = frame.get("transaction")
        for target in targets:
            if target.broker == LEGACY:
                if not sub.legacy_active:
                    self._ack_failed(
                        sub, "legacy subscription already drained", receipt, target.named
                    )
                elif target.named:
                    session.write_legacy(frame.raw)  # as sent, receipt and all
                else:
                    session.write_legacy(self._ack(frame.command, target.key, sub, tx_id, None))
                continue
            self._ack_amazonmq(
                frame.command,
                target.key,
                target.generation,
                sub,
                tx_id,
                receipt if target.named else None,
            )

    def _ack_amazonmq(
        self,
        command: str,
        key: str,
        generation: int,
        sub: DualSubscription,
        tx_id: str | None,
        receipt: str | None,
    ) -> None:
        session = self._session
        link = session.amazonmq()
        if generation != link.generation:
            # ACKs cannot cross a reconnect; Amazon MQ redelivers the message instead.
            self._ack_failed(sub, "Amazon MQ connection was replaced", receipt, True)
            return
        tx = session.transactions.get(tx_id)
        if tx is not None:
            session.transactions.begin_on_amazonmq(tx, link)
            tx.amazonmq_acks += 1

        def done(failure: str | None) -> None:
            if failure is None:
                if receipt is not None:
                    session.write_client(session.receipt(receipt))
            else:
                self._ack_failed(sub, failure, receipt, True)

        link.submit(lambda rid: self._ack(command, key, sub, tx_id, rid), done, resendable=False)

    def _ack_failed(
        self, sub: DualSubscription, reason: str, receipt: str | None, named: bool
    ) -> None:
        session = self._session
        session.emit(
            Fact.CONSUMER_ACK_FAILED, subscription=sub.id, rule=sub.decision.rule, reason=reason
        )
        if named and receipt is not None:
            detail = f"acknowledgement not confirmed: {reason}; the message will be redelivered"
            session.abort(f"ack failed: {reason}", error_frame(detail, reason, receipt_id=receipt))

    # -- broker frames ---------------------------------------------------------

    def on_amazonmq_message(self, frame: Frame, generation: int) -> Awaitable[None] | None:
        """A MESSAGE from Amazon MQ: record it for ACK routing, then hand it to the client."""
        session = self._session
        sub = self.book.subscriptions.get(frame.get("subscription") or "")
        raw = frame.raw
        assert raw is not None
        if sub is not None:
            self.book.delivered(
                sub, AMAZONMQ, ack_key(frame.get, session.version), generation, time.monotonic()
            )
            self._delivered_fact(sub, frame, AMAZONMQ)
            if frame.get("destination") != sub.destination:  # renamed by the route: undo
                headers = tuple(
                    (k, sub.destination if k == "destination" else v) for k, v in frame.headers
                )
                raw = encode_parts("MESSAGE", headers, frame.body, session.version)
        # An unknown subscription was just unsubscribed: deliver as the broker would.
        return session.deliver(raw)

    def on_legacy_message(self, frame: Frame) -> bool:
        """A MESSAGE from legacy; False when it is the proxy's own (not the client's)."""
        sub_id = frame.get("subscription") or ""
        if sub_id.startswith(BROWSE_PREFIX):
            browsed = self.book.by_browse(sub_id)
            if browsed is not None:
                if frame.get("browser") == "end":
                    self._browse_finished(browsed)
                else:
                    browsed.browse_found += 1
                    self._end_browse(browsed)  # one message is enough: not empty yet
            return False
        sub = self.book.subscriptions.get(sub_id)
        if sub is not None:
            self.book.delivered(
                sub, LEGACY, ack_key(frame.get, self._session.version), 0, time.monotonic()
            )
            self._delivered_fact(sub, frame, LEGACY)
        return True

    def _delivered_fact(self, sub: DualSubscription, frame: Frame, broker: str) -> None:
        session = self._session
        session.emit(
            Fact.MESSAGE_DELIVERED,
            trace_id=frame.get(session.ctx.routes.table.trace_header),
            subscription=sub.id,
            rule=sub.decision.rule,
            broker=broker,
        )

    # -- legacy's backlog ------------------------------------------------------

    async def _watch_backlogs(self) -> None:
        """Browse legacy's queue when its side has gone quiet; drop that side once empty."""
        interval = self._session.ctx.settings.backlog_check_interval
        while True:
            await asyncio.sleep(interval)  # a period, not a wait for something
            now = time.monotonic()
            for sub in list(self.book.subscriptions.values()):
                if (
                    sub.decision.drain_legacy
                    and sub.legacy_active
                    and sub.browsing is None
                    and sub.legacy_unacked == 0
                    and now - sub.last_legacy_delivery >= interval
                ):
                    self._browse(sub, now)

    def _browse(self, sub: DualSubscription, now: float) -> None:
        sub.browsing = self.book.next_browse_id()
        sub.browse_found = 0
        sub.browse_started = now
        headers = (
            ("id", sub.browsing),
            ("destination", sub.destination),
            ("browser", "true"),
            ("ack", "auto"),
        )
        self._session.write_legacy(encode_parts("SUBSCRIBE", headers, b"", self._session.version))

    def _end_browse(self, sub: DualSubscription) -> None:
        if sub.browsing is not None:
            self._session.write_legacy(self._control("UNSUBSCRIBE", (("id", sub.browsing),)))
            sub.browsing = None

    def _browse_finished(self, sub: DualSubscription) -> None:
        empty = sub.browse_found == 0 and sub.last_legacy_delivery < sub.browse_started
        self._end_browse(sub)
        if not empty or sub.legacy_unacked or not sub.legacy_active:
            return
        sub.legacy_active = False
        session = self._session
        session.write_legacy(self._control("UNSUBSCRIBE", (("id", sub.id),)))
        session.emit(
            Fact.CONSUMER_DRAINED,
            subscription=sub.id,
            destination=sub.destination,
            rule=sub.decision.rule,
            from_legacy=sub.delivered[LEGACY],
            from_amazonmq=sub.delivered[AMAZONMQ],
        )

    # -- frames ----------------------------------------------------------------

    def _subscribe_frame(self, frame: Frame, sub: DualSubscription, receipt_id: str) -> bytes:
        """The client's SUBSCRIBE for Amazon MQ: our receipt id, the route's destination."""
        target = sub.decision.amazonmq_destination or sub.destination
        headers = [("receipt", receipt_id)]
        headers += [
            (k, target if k == "destination" else v) for k, v in frame.headers if k != "receipt"
        ]
        return encode_parts("SUBSCRIBE", tuple(headers), b"", self._session.version)

    def _ack(
        self, command: str, key: str, sub: DualSubscription, tx_id: str | None, receipt: str | None
    ) -> bytes:
        version = self._session.version
        headers: list[tuple[str, str]]
        if version == "1.2":
            headers = [("id", key)]
        elif version == "1.1":
            headers = [("message-id", key), ("subscription", sub.id)]
        else:
            headers = [("message-id", key)]
        if tx_id is not None:
            headers.append(("transaction", tx_id))
        return self._control(command, tuple(headers), receipt)

    def _control(
        self, command: str, headers: tuple[tuple[str, str], ...], receipt: str | None = None
    ) -> bytes:
        if receipt is not None:
            headers += (("receipt", receipt),)
        return encode_parts(command, headers, b"", self._session.version)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
