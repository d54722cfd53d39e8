"""Moving a legacy queue's backlog to Amazon MQ, each message acknowledged only once confirmed.

For every message, in this order (the safety argument):
1. legacy delivers it on a ``client-individual`` subscription with
   ``activemq.prefetchSize`` W: at most W messages are delivered and unacknowledged at once;
2. its id is written to the journal (``journal``);
3. it is sent to Amazon MQ with a receipt: headers kept in order, minus the MESSAGE-only
   ones; a message without a trace id gets its legacy message-id as one;
4. only on Amazon MQ's RECEIPT is it ACKed on legacy, with a receipt of its own;
5. legacy's RECEIPT for the ACK makes it moved (``drain_message_moved``).

So legacy never lets go of a message Amazon MQ has not confirmed. A stop anywhere leaves
the unacknowledged messages on legacy, which redelivers them to the next drain; those
between 3 and 5 may already be on Amazon MQ: at most W, named by the journal, reported by
the next drain (``drain_duplicate_possible``) as it moves them again. Nothing is ever
NACKed (ActiveMQ sends a NACKed message to its dead-letter queue).

Counts: ``delivered`` (MESSAGE frames), ``consumed`` (sent to Amazon MQ), ``confirmed``
(Amazon MQ receipts), ``moved`` (legacy ACK receipts), ``returned`` (delivered but not
sent, after ``--max`` or a stop: legacy delivers them again). A clean run ends with
consumed == confirmed == moved.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ..facts import Fact, FactSink
from ..progress import Progress
from ..stomp import Frame, encode_parts
from ..stomp.resend import encode_send
from ..upstream.client import PublishError
from .backlog import message_key
from .brokers import Connection, Target
from .journal import Journal, JournalError

SUBSCRIPTION: Final = "strangler-drain"
# MESSAGE headers that describe the delivery, not the message (ActiveMQ would keep `ack` as
# a property), plus those ``encode_send`` writes itself.
MESSAGE_ONLY_HEADERS: Final = frozenset(
    {
        "destination",
        "receipt",
        "transaction",
        "content-length",
        "message-id",
        "subscription",
        "ack",
        "redelivered",
        "JMSXUserID",
    }
)
IDLE_CHECKS: Final = 3  # idle browses that still find messages before giving up
_SETTLE: Final = 5.0  # seconds to collect receipts in flight after a stop


@dataclass(frozen=True, slots=True)
class DrainSettings:
    prefetch: int = 100  # the in-flight bound, and so the bound on crash duplicates
    rate: float | None = None  # messages per second
    max_messages: int | None = None
    idle: float = 2.0  # seconds without a delivery before legacy is checked for emptiness
    timeout: float = 30.0  # a broker silent this long while answers are due has failed


@dataclass(slots=True)
class Pending:
    key: str  # trace id, else legacy message-id
    message_id: str
    ack_id: str  # the MESSAGE's `ack` header (STOMP 1.2)
    duplicate: bool  # an earlier drain may have sent it already


@dataclass
class DrainResult:
    delivered: int = 0
    consumed: int = 0
    confirmed: int = 0
    moved: int = 0
    returned: int = 0
    possible_duplicates: int = 0
    # Ids an earlier stopped drain may have sent that this one did not meet again on legacy.
    unseen_suspects: list[str] = field(default_factory=list)
    legacy_remaining: int | None = None  # a browse after the drain; None when not known
    stopped: str = ""  # empty | max | not_empty | interrupted | error
    error: str | None = None
    elapsed: float = 0.0  # the whole run, the final checks included
    moving: float = 0.0  # from the start to the last message moved

    @property
    def counts_match(self) -> bool:
        return self.consumed == self.confirmed == self.moved

    @property
    def ok(self) -> bool:
        return self.counts_match and self.stopped in ("empty", "max")

    @property
    def rate(self) -> float:
        """Messages moved per second while moving."""
        return self.moved / self.moving if self.moving > 0 else 0.0

    def as_fields(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "consumed": self.consumed,
            "confirmed": self.confirmed,
            "moved": self.moved,
            "returned": self.returned,
            "possible_duplicates": self.possible_duplicates,
            "unseen_suspects": self.unseen_suspects,
            "legacy_remaining": self.legacy_remaining,
            "counts_match": self.counts_match,
            "stopped": self.stopped,
            "error": self.error,
            "elapsed_s": round(self.elapsed, 3),
            "moving_s": round(self.moving, 3),
            "rate_msg_s": round(self.rate, 1),
        }


class Drain:
    """One run of the move loop (single-threaded: ``run`` owns both connections)."""

    def __init__(
        self,
        target: Target,
        legacy: Connection,
        amazonmq: Connection,
        count_legacy: Callable[[], int],
        journal: Journal,
        facts: FactSink,
        settings: DrainSettings,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.target = target
        self.legacy = legacy
        self.amazonmq = amazonmq
        self._count_legacy = count_legacy  # browses legacy's queue (raises PublishError)
        self.journal = journal
        self.facts = facts
        self.settings = settings
        self.progress = progress
        self.stop = stop if stop is not None else threading.Event()
        self.result = DrainResult()
        self._ready: deque[Frame] = deque()  # delivered, waiting for the rate limit
        self._sent: dict[str, Pending] = {}  # Amazon MQ receipt id -> message
        self._acking: dict[str, Pending] = {}  # legacy receipt id -> message
        self._stopping = ""
        self._failed: set[str] = set()  # brokers that dropped us: no answers to wait for
        self._serial = 0
        self._began = 0.0

    @property
    def in_flight(self) -> int:
        return len(self._ready) + len(self._sent) + len(self._acking)

    def run(self) -> DrainResult:
        result = self.result
        self._began = time.monotonic()
        try:
            self._subscribe()
            self._loop()
        except (PublishError, JournalError) as exc:
            result.stopped, result.error = "error", str(exc)
            self._settle()
        except KeyboardInterrupt:
            result.stopped = "interrupted"
            self._settle()
        finally:
            result.returned += len(self._ready)
            self._ready.clear()
            for connection in (self.legacy, self.amazonmq):
                with contextlib.suppress(Exception):
                    connection.close()
        if result.stopped not in ("empty", "not_empty"):  # else the idle browse counted
            # Unacknowledged messages went back to the queue when the consumer closed.
            with contextlib.suppress(PublishError, KeyboardInterrupt):
                result.legacy_remaining = self._count_legacy()
        if result.legacy_remaining == 0:
            result.unseen_suspects = sorted(self.journal.earlier)
            self.journal.queue_empty()
        with contextlib.suppress(JournalError):
            self.journal.save()
        result.elapsed = time.monotonic() - self._began
        if self.progress is not None:
            self.progress.close()  # the report that follows has the totals
        return result

    # -- the loop ---------------------------------------------------------------------------

    def _subscribe(self) -> None:
        prefetch = self.settings.prefetch
        if self.settings.max_messages is not None:
            prefetch = min(prefetch, self.settings.max_messages)
        self.legacy.send(
            encode_parts(
                "SUBSCRIBE",
                (
                    ("destination", self.target.destination),
                    ("id", SUBSCRIPTION),
                    ("ack", "client-individual"),
                    ("activemq.prefetchSize", str(prefetch)),
                ),
                b"",
                "1.2",
            )
        )

    def _loop(self) -> None:
        last_delivery = time.monotonic()
        last_answer = last_delivery
        idle_checks = 0
        while True:
            if self.stop.is_set() and not self._stopping:
                self._stopping = "interrupted"
            self._send_ready()
            waiting = bool(self._sent or self._acking)
            if self._stopping and not waiting:
                self.result.stopped = self._stopping
                return
            now = time.monotonic()
            if not waiting and not self._ready and now - last_delivery >= self.settings.idle:
                remaining = self._count_legacy()
                self.result.legacy_remaining = remaining
                idle_checks += 1
                if remaining == 0 or idle_checks >= IDLE_CHECKS:
                    self.result.stopped = "empty" if remaining == 0 else "not_empty"
                    return
                last_delivery = now  # messages are there: give legacy another idle period
            if waiting and now - last_answer > self.settings.timeout:
                owing = [
                    c.name
                    for c, due in ((self.amazonmq, self._sent), (self.legacy, self._acking))
                    if due
                ]
                raise PublishError(
                    f"no receipt from {', '.join(owing)} within {self.settings.timeout:g}s"
                )
            delivered, answered = self._pump(self._wait_time(now, last_delivery))
            if delivered:
                last_delivery = time.monotonic()
                idle_checks = 0
            if answered or not waiting:
                last_answer = time.monotonic()
            if self.progress is not None:
                self.progress.update(self.result.moved, note=f", {self.in_flight} in flight")

    def _wait_time(self, now: float, last_delivery: float) -> float:
        if self._ready and not self._stopping:  # held back by the rate limit
            assert self.settings.rate is not None
            due = self._began + self.result.consumed / self.settings.rate
            return max(0.0, min(due - now, 0.5))
        if self._sent or self._acking:
            return 0.5
        return max(0.0, min(last_delivery + self.settings.idle - now, 0.5))

    def _send_ready(self) -> None:
        """Send what the rate limit and ``--max`` allow: journal first, then Amazon MQ."""
        settings, result = self.settings, self.result
        batch: list[Frame] = []
        now = time.monotonic()
        limit = settings.max_messages
        while self._ready and not self._stopping:
            sent = result.consumed + len(batch)
            if limit is not None and sent >= limit:
                break
            if settings.rate is not None and now < self._began + sent / settings.rate:
                break
            batch.append(self._ready.popleft())
        if batch:
            self._send(batch)
        if limit is not None and result.consumed >= limit:
            self._stopping = self._stopping or "max"
        if self._stopping:
            result.returned += len(self._ready)
            self._ready.clear()

    def _send(self, batch: list[Frame]) -> None:
        result = self.result
        trace_header = self.target.trace_header
        pending = [
            Pending(
                key=message_key(frame, trace_header),
                message_id=frame.get("message-id") or "",
                ack_id=frame.get("ack") or "",
                duplicate=False,
            )
            for frame in batch
        ]
        self.journal.add(p.key for p in pending)
        for frame, message in zip(batch, pending, strict=True):
            if not message.ack_id:
                raise PublishError("legacy delivered a MESSAGE without an ack header (STOMP 1.2)")
            message.duplicate = self.journal.is_earlier_suspect(message.key)
            if message.duplicate:
                result.possible_duplicates += 1
                self._emit(
                    Fact.DRAIN_DUPLICATE_POSSIBLE,
                    message,
                    reason="an earlier drain sent it to Amazon MQ and stopped before legacy "
                    "confirmed its ACK",
                )
            self._serial += 1
            receipt = f"drain-{self._serial}"
            self._sent[receipt] = message
            self.amazonmq.send(
                encode_send(
                    frame.headers,
                    frame.body,
                    self.target.amazonmq_destination,
                    receipt,
                    (trace_header, message.key),
                    drop=MESSAGE_ONLY_HEADERS,
                )
            )
            result.consumed += 1

    def _pump(self, wait: float) -> tuple[bool, bool]:
        """Wait up to ``wait`` for either broker; handle what came. (delivered?, answered?)"""
        connections = [c for c in (self.legacy, self.amazonmq) if c.name not in self._failed]
        if connections and not any(c.buffered for c in connections):
            with contextlib.suppress(InterruptedError):
                select.select(connections, [], [], wait)
        delivered = answered = False
        for connection in connections:
            try:
                frames = connection.poll(0.0)
            except PublishError:
                self._failed.add(connection.name)
                raise
            for frame in frames:
                if frame.command == "ERROR":
                    self._failed.add(connection.name)  # STOMP: the broker closes after ERROR
                    raise PublishError(f"{connection.name} refused: {_detail(frame)}")
                if connection is self.amazonmq:
                    answered |= self._on_amazonmq(frame)
                elif frame.command == "MESSAGE":
                    delivered |= self._on_delivery(frame)
                else:
                    answered |= self._on_legacy(frame)
        return delivered, answered

    def _on_delivery(self, frame: Frame) -> bool:
        if frame.get("subscription") != SUBSCRIPTION:
            return False
        self.result.delivered += 1
        if self._stopping:
            self.result.returned += 1  # not acknowledged: legacy keeps it
        else:
            self._ready.append(frame)
        return True

    def _on_amazonmq(self, frame: Frame) -> bool:
        message = self._sent.pop(frame.get("receipt-id") or "", None)
        if frame.command != "RECEIPT" or message is None:
            return False
        self.result.confirmed += 1
        self._ack(message)
        return True

    def _ack(self, message: Pending) -> None:
        """Amazon MQ confirmed ``message``: acknowledge it on legacy (receipt requested)."""
        receipt = f"ack-{message.ack_id}"
        self._acking[receipt] = message
        self.legacy.send(
            encode_parts("ACK", (("id", message.ack_id), ("receipt", receipt)), b"", "1.2")
        )

    def _on_legacy(self, frame: Frame) -> bool:
        message = self._acking.pop(frame.get("receipt-id") or "", None)
        if frame.command != "RECEIPT" or message is None:
            return False
        self.result.moved += 1
        self.result.moving = time.monotonic() - self._began
        self.journal.moved(message.key)
        self._emit(Fact.DRAIN_MESSAGE_MOVED, message, possible_duplicate=message.duplicate)
        return True

    def _emit(self, fact: Fact, message: Pending, **fields: Any) -> None:
        self.facts.emit(
            fact,
            trace_id=message.key,
            **self.target.names,
            message_id=message.message_id,
            **fields,
        )

    def _settle(self) -> None:
        """After a stop or failure: collect the receipts in flight (briefly), send no more."""
        self._stopping = self._stopping or "interrupted"
        deadline = time.monotonic() + min(_SETTLE, self.settings.timeout)
        with contextlib.suppress(PublishError, KeyboardInterrupt, OSError, ValueError):
            while self._answers_due() and time.monotonic() < deadline:
                self._pump(min(0.2, max(0.0, deadline - time.monotonic())))

    def _answers_due(self) -> bool:
        """Receipts still to come from a broker that has not dropped us."""
        return bool(self._sent and self.amazonmq.name not in self._failed) or bool(
            self._acking and self.legacy.name not in self._failed
        )


def _detail(frame: Frame) -> str:
    return frame.get("message") or frame.body.decode("utf-8", "replace")[:200]
