"""A transactional producer for the fault matrix (stomp.py, on its own thread).

Each transaction is BEGIN, ``size`` SENDs in two halves (each SEND with a
receipt; the producer waits for a half's receipts before going on), then COMMIT
with a receipt, or ABORT for every ``abort_every``-th transaction. On an ERROR,
a lost connection or silence, it reconnects and runs the whole transaction
again under a new transaction id with new trace ids (what a producer does with
a transaction it does not know the fate of); a transaction meant to be aborted
is not retried.

Trace ids are chosen so that under a 50% split the even-numbered messages go to
Amazon MQ and the odd ones to legacy: every transaction, and each of its halves,
spans both brokers. ``hold_next("half")`` stops the next transaction between its halves
(first half receipted, BEGIN open on both brokers) until ``release``: the fault
lands mid-transaction; ``hold_next("end")`` stops it with every SEND receipted,
right before its COMMIT. Everything seen goes to ``sent`` (see promise.py).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from stomp.utils import Frame as StompFrame

from strangler.routes.decide import split_bucket

from .producer_thread import ProducerThread
from .promise import (
    ABORTED,
    CLOSED,
    COMMITTED,
    ERROR,
    PENDING,
    RECEIPT,
    SILENT,
    Attempt,
    Sent,
    TxAttempt,
)

TRACE = "strangler-trace-id"


@dataclass
class Group:
    """A logical transaction; ``attempts`` are its tries."""

    id: str
    plan: str  # commit | abort
    phase: str
    attempts: list[TxAttempt] = field(default_factory=list)
    done: bool = False

    @property
    def committed(self) -> bool:
        return any(t.outcome == COMMITTED for t in self.attempts)


class TxProducer(ProducerThread):
    def __init__(
        self,
        address: tuple[str, int],
        dest: str,
        login: str,
        passcode: str,
        *,
        size: int = 4,
        abort_every: int = 4,
        pace: float = 0.1,
        receipt_timeout: float = 15.0,
        retry: float = 0.2,
        deadline: float = 90.0,
    ) -> None:
        super().__init__("fault-matrix-tx-producer", address, login, passcode, receipt_timeout)
        self.dest = dest
        self.size, self.abort_every, self.pace_every = size, abort_every, pace
        self.retry, self.deadline = retry, deadline
        self.tag = uuid.uuid4().hex[:6]
        self.sent = Sent()
        self.groups: list[Group] = []
        self.todo: deque[Group] = deque()
        self.paced: str | None = None
        self.finishing = False
        self.hold_at: str | None = None  # "half" | "end": where the next transaction stops
        self.held = False
        self.gave_up: str | None = None
        self.lost = 0  # connections that ended without our DISCONNECT
        self._begun: dict[str, float] = {}  # transaction attempt -> when it began

    # -- control (test thread) ----------------------------------------------------

    def add(self, n: int, phase: str) -> None:
        with self.cond:
            for _ in range(n):
                self.todo.append(self._new(phase))
            self.cond.notify_all()

    def pace(self, phase: str | None) -> None:
        with self.cond:
            self.paced = phase
            self.cond.notify_all()

    def hold_next(self, at: str = "half") -> None:
        with self.cond:
            self.hold_at = at

    def release(self) -> None:
        with self.cond:
            self.hold_at = None
            self.held = False
            self.cond.notify_all()

    def finish(self, timeout: float | None = None) -> None:
        with self.cond:
            self.paced = None
            self.finishing = True
            self.cond.notify_all()
        self.join(self.deadline if timeout is None else timeout)

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self.hold_at = None
            self.held = False
            self.cond.notify_all()
        self.join(30)

    def wait(self, predicate: Callable[[TxProducer], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self) or self.done, timeout) and (
                predicate(self)
            )

    def finished(self, phase: str | None = None) -> int:
        """Transactions done (committed, aborted, or given up as meant to be aborted)."""
        with self.cond:
            return sum(1 for g in self.groups if g.done and (phase is None or g.phase == phase))

    def attempts_since(self, when: float) -> int:
        """Transaction attempts begun at or after ``when`` (time.monotonic)."""
        with self.cond:
            return sum(1 for started in self._begun.values() if started >= when)

    # -- events (stomp.py's thread) -------------------------------------------------

    def _record_error(self, conn: int, frame: StompFrame) -> None:
        self.sent.errors.append(
            (frame.headers.get("receipt-id", ""), frame.headers.get("message", ""))
        )

    # -- the loop (this thread) -----------------------------------------------------

    def _new(self, phase: str) -> Group:
        n = len(self.groups)
        plan = "abort" if (n + 1) % self.abort_every == 0 else "commit"
        group = Group(f"{self.tag}-{n:03d}", plan, phase)
        self.groups.append(group)
        return group

    def _next(self, until: float) -> Group | None:
        """The next transaction to run; None when finished, aborted or out of time."""
        with self.cond:
            while True:
                if self.aborted:
                    return None
                if time.monotonic() >= until:
                    self.gave_up = f"gave up after {self.deadline:g} s"
                    return None
                if self.todo:
                    return self.todo.popleft()
                if self.paced is not None:
                    return self._new(self.paced)
                if self.finishing:
                    return None
                self.cond.wait(0.5)

    def _loop(self) -> None:
        until = time.monotonic() + self.deadline
        while (group := self._next(until)) is not None:
            if self.paced is not None and group.phase == self.paced:
                with self.cond:  # paced: one transaction every pace_every seconds
                    self.cond.wait_for(lambda: self.aborted, self.pace_every)
            while not self.aborted and time.monotonic() < until:
                if self._conn is None:
                    if self.lost or self.connect_failures:  # pause before reconnecting
                        with self.cond:
                            self.cond.wait_for(lambda: self.aborted, self.retry)
                    if not self._connect():
                        continue
                if self._attempt(group) or group.plan == "abort":
                    break
            with self.cond:
                group.done = True
                self.cond.notify_all()
        if self.aborted or self.gave_up:
            self._drop()
        else:
            self._disconnect()

    def _trace(self, group: Group, attempt: int, i: int) -> str:
        """A trace id that a 50% split sends to Amazon MQ iff ``i`` is even."""
        base = f"{group.id}.{attempt}-{i}"
        trace, k = base, 0
        while (split_bucket(trace) < 50) != (i % 2 == 0):
            k += 1
            trace = f"{base}~{k}"
        return trace

    def _attempt(self, group: Group) -> bool:
        """One try of ``group`` on the current connection; False if it must be retried."""
        n = len(group.attempts) + 1
        tx = TxAttempt(f"{group.id}.{n}", group.id, group.plan, self._conn_no)
        with self.cond:
            group.attempts.append(tx)
            self.sent.transactions.append(tx)
            self._begun[tx.id] = time.monotonic()
        conn = self._conn
        half = self.size // 2
        try:
            conn.begin(transaction=tx.id)
            for part in (range(half), range(half, self.size)):
                sends = []
                for i in part:
                    trace = self._trace(group, n, i)
                    a = Attempt(trace, f"{group.id}[{i}]", self._conn_no, tx=tx.id)
                    with self.cond:
                        tx.traces.append(trace)
                        self.sent.attempts.append(a)
                    sends.append(a)
                    conn.send(
                        self.dest,
                        a.message.encode(),
                        headers={
                            "receipt": trace,
                            TRACE: trace,
                            "persistent": "true",
                            "transaction": tx.id,
                        },
                    )
                outcome = self._await([a.trace for a in sends])
                for a in sends:
                    a.outcome = RECEIPT if a.trace in self._state["receipts"] else outcome
                if outcome != RECEIPT:
                    tx.outcome = outcome
                    self._lose()
                    return False
                self._hold("half" if part.start == 0 else "end")
            end = f"{tx.id}.end"
            if group.plan == "commit":
                conn.commit(transaction=tx.id, headers={"receipt": end})
            else:
                conn.abort(transaction=tx.id, headers={"receipt": end})
            tx.end_sent = True
        except Exception:  # stomp.py: not connected any more
            with self.cond:
                # The proxy may have sent an ERROR and closed before this send failed: let
                # stomp.py's reader get to the end of the connection, then say which it was.
                self.cond.wait_for(lambda: self._state["closed"], 5.0)
                ended = ERROR if self._state["error"] else CLOSED
                tx.outcome = ended
                for a in self.sent.attempts[-self.size :]:
                    if a.tx == tx.id and a.outcome == PENDING:
                        a.outcome = ended
            self._lose()
            return False
        outcome = self._await([end])
        if outcome != RECEIPT:
            tx.outcome = outcome
            self._lose()
            return False
        tx.outcome = COMMITTED if group.plan == "commit" else ABORTED
        return True

    def _hold(self, point: str) -> None:
        with self.cond:
            if self.hold_at != point:
                return
            self.held = True
            self.cond.notify_all()
            self.cond.wait_for(lambda: not self.held or self.aborted)

    def _await(self, receipts: list[str]) -> str:
        """RECEIPT when all came; else ERROR, CLOSED, or SILENT after the timeout."""
        wanted = set(receipts)
        with self.cond:
            state = self._state
            self.cond.wait_for(
                lambda: wanted <= state["receipts"] or state["error"] or state["closed"],
                self.receipt_timeout,
            )
            if wanted <= state["receipts"]:
                return RECEIPT
            return ERROR if state["error"] else CLOSED if state["closed"] else SILENT

    def _lose(self) -> None:
        with self.cond:
            self.lost += 1
        self._drop()
