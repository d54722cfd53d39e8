"""The fault matrix: every route mode against every fault, against real brokers.

The promise under test (README, "What the proxy promises"):

- a RECEIPT to a producer means the responsible broker has the message;
- nothing a producer sent is silently dropped: it is delivered, or the producer
  gets an ERROR, or the connection closes without a receipt (and the producer,
  as producers do, reconnects and sends it again).

Each cell runs one producer (stomp.py, persistent messages, a receipt for each,
at most ``WINDOW`` unconfirmed) through a proxy routing one queue in one mode; the
receipt-less section's producer asks a receipt for its last message only.
The producer sends ``FIRST`` messages, then keeps sending at a steady pace while
the fault is injected, held until the facts show its effect, and healed; it goes
on at that pace until every broker the proxy reported unavailable is reported
recovered, then sends ``LAST`` more. Then both brokers are drained and every
copy found is checked against what the producer was told and what the facts say.

A cell's row goes to ``docs/reliability.md`` when the suite runs with
``STRANGLER_WRITE_RELIABILITY=1`` (and the whole matrix ran); otherwise nothing
in the tree is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from stomp.utils import Frame as StompFrame

from . import brokers, promise
from .brokers import REPO_DIR, BrokerInfo, free_port
from .faults import Relay
from .harness import RunningProxy, connect, drain, start_proxy, unique_queue
from .producer_thread import ProducerThread, drop_socket
from .txproducer import TxProducer

pytestmark = pytest.mark.integration

# -- the shape of a cell ----------------------------------------------------------

WINDOW = 10  # receipts a producer waits for at most (bounds what a fault can catch in flight)
FIRST = 20  # messages before the fault
LAST = 20  # messages after every broker recovered
PACE = 0.08  # during the fault and until recovery: one new message every PACE seconds
DURING = 8  # a fault is held at least until this many messages were sent under it
SLOW = 0.1  # "Amazon MQ slow": seconds each chunk is held, each way
LEGACY_STALL = 2.0  # the proxy has no liveness check on legacy: a stall is pure delay
HOLD = 15.0  # the longest a fault waits for its effect to show in the facts
RECOVERY = 40.0  # the longest a healed fault waits for broker_recovered
RETRY = 0.2  # the producer's pause before reconnecting
RECEIPT_TIMEOUT = 15.0  # no receipt, no ERROR, connection open this long: a silent drop
DEADLINE = 90.0  # a producer gives up after this long
HEARTBEAT_MS = 1000  # proxy <-> Amazon MQ: a stalled link is noticed after ~3 s
HUNG_HEARTBEAT_MS = 30_000  # amq_hung: heart-beats far too slow to notice a hang
HUNG_DEADLINE = 2.0  # amq_hung: the proxy's confirm_timeout
SIGTERM_SLOW = 0.3  # proxy_sigterm: seconds each chunk to and from Amazon MQ is held

TRACE = "strangler-trace-id"
AMQ_USER_ENV = "STRANGLER_FM_AMQ_USER"
AMQ_PASSWORD_ENV = "STRANGLER_FM_AMQ_PASSWORD"
LEGACY, AMAZONMQ = "legacy", "amazonmq"

MODES: dict[str, str] = {
    "legacy": "mode: legacy",
    "mirror": "mode: mirror",
    "split-legacy": "mode: split, weight: 50, on_failure: legacy",
    "split-reject": "mode: split, weight: 50, on_failure: reject",
    "cutover-legacy": "mode: cutover, on_failure: legacy",
    "cutover-reject": "mode: cutover, on_failure: reject",
}

FAULTS: dict[str, str] = {
    "none": "no fault (the baseline: the same producer, nothing injected)",
    "amq_killed": "Amazon MQ SIGKILLed mid-stream, then restarted (it keeps what it confirmed)",
    "amq_slow": f"every chunk to and from Amazon MQ held {SLOW:g} s (relay)",
    "amq_login_refused": "Amazon MQ's password rotated under the proxy and its connection dropped:"
    " every new login is refused until the password is right again",
    "amq_stall": "the network to Amazon MQ stops forwarding (connection kept) until the proxy"
    " reports Amazon MQ unavailable (heart-beats), then flows again (relay)",
    "legacy_killed": "legacy SIGKILLed mid-stream, then restarted",
    "legacy_restarted": "legacy stopped gracefully mid-stream, then started again",
    "legacy_stall": f"the network to legacy stops forwarding for {LEGACY_STALL:g} s (relay)",
    "proxy_killed": "the proxy (a `strangler run` process) SIGKILLed mid-stream and started"
    " again on the same port; the producer reconnects and resends what had no receipt",
    "amq_hung": f"Amazon MQ stops answering (the network stalls, connections kept) where"
    f" heart-beats ({HUNG_HEARTBEAT_MS // 1000} s) would notice late: the proxy's"
    f" confirmation deadline (`confirm_timeout: {HUNG_DEADLINE:g}`) settles what is in"
    " flight, in doubt (`possibly_stored`), then the stall ends (relay)",
    "proxy_sigterm": "the proxy (`strangler run`) gets SIGTERM under full load, with Amazon MQ"
    f" slowed ({SIGTERM_SLOW:g} s a chunk) so frames are in flight, then is started again",
    "padded_destination": "no fault: the producer names the queue with a space before it and"
    " a tab after it (ActiveMQ trims them: the route must still apply)",
    "composite_destination": "no fault: the producer names the queue twice as an ActiveMQ"
    " composite, `q,q ` (one queue: the route must still apply; `q, q` would be two, the"
    " second named `/queue/q` literally, and the proxy refuses it when their routes differ)",
}
# The modes a fault runs in (every mode when not listed).
FAULT_MODES: dict[str, tuple[str, ...]] = {
    "amq_hung": ("mirror", "split-legacy", "cutover-legacy", "cutover-reject"),
    "proxy_sigterm": ("mirror", "cutover-legacy", "cutover-reject"),
}
# Faults that name the queue in another form than the one drained.
SEND_FORM: dict[str, Callable[[str], str]] = {
    "padded_destination": lambda dest: f" {dest}\t",
    "composite_destination": lambda dest: f"{dest},{dest} ",
}
NO_FAULT = ("none", "padded_destination", "composite_destination")

# Cells known to fail a check because of a proxy bug: cell id -> reason (xfail, strict).
# The matrix found both (fixed in strangler/upstream/link.py: a cancelled reader no
# longer drops the connection a second time); kept as the story of the cells they hit.
KNOWN_BUGS: dict[str, str] = {}


def _cells() -> list[Any]:
    cells = []
    for fault in FAULTS:
        for mode in FAULT_MODES.get(fault, tuple(MODES)):
            cell = f"{mode}-{fault}"
            marks = []
            if cell in KNOWN_BUGS:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[cell]))
            cells.append(pytest.param(mode, fault, id=cell, marks=marks))
    return cells


# -- the test bed: one pair of brokers of our own, shared by every cell -------------


@dataclass
class Bed:
    legacy: BrokerInfo
    amazonmq: BrokerInfo

    def ensure_up(self) -> None:
        """Start whichever broker a previous cell left down (a no-op when both run)."""
        for broker in (self.legacy, self.amazonmq):
            running = brokers.info(broker.name).pid
            if not (brokers.pid_is_broker(running, broker.name) and brokers.port_open(broker.port)):
                brokers.start_one(broker.name, broker.kind, broker.port)


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    prefix = f"fm-{uuid.uuid4().hex[:6]}"
    legacy, amazonmq = brokers.start_pair(prefix)
    saved = {k: os.environ.get(k) for k in (AMQ_USER_ENV, AMQ_PASSWORD_ENV)}
    try:
        os.environ[AMQ_USER_ENV] = amazonmq.username
        os.environ[AMQ_PASSWORD_ENV] = amazonmq.password
        yield Bed(legacy, amazonmq)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        brokers.remove_pair(prefix)


def _routes(
    dest: str,
    mode: str,
    *,
    legacy_port: int,
    amazonmq_port: int,
    ca_file: str,
    match: str = "exact",
    heartbeat_ms: int = HEARTBEAT_MS,
) -> str:
    return (
        "brokers:\n"
        "  legacy:\n"
        f"    url: stomp://127.0.0.1:{legacy_port}\n"
        "  amazonmq:\n"
        f"    url: stomp+ssl://127.0.0.1:{amazonmq_port}\n"
        f"    ca_file: {ca_file}\n"
        "    credentials:\n"
        f"      username_env: {AMQ_USER_ENV}\n"
        f"      password_env: {AMQ_PASSWORD_ENV}\n"
        f"    heartbeat_ms: {heartbeat_ms}\n"
        "routes:\n"
        f"  - {{name: cell, match: {{{match}: '{dest}'}}, {MODES[mode]}}}\n"
    )


def _write_routes(
    bed: Bed,
    tmp_path: Path,
    dest: str,
    mode: str,
    *,
    to_legacy: Relay | None = None,
    to_amazonmq: Relay | None = None,
    match: str = "exact",
    heartbeat_ms: int = HEARTBEAT_MS,
) -> Path:
    """``tmp_path/routes.yaml`` for one route, reaching each broker through its relay
    when there is one."""
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(
        _routes(
            dest,
            mode,
            legacy_port=to_legacy.port if to_legacy else bed.legacy.port,
            amazonmq_port=to_amazonmq.port if to_amazonmq else bed.amazonmq.port,
            ca_file=str(bed.amazonmq.ca_file),
            match=match,
            heartbeat_ms=heartbeat_ms,
        )
    )
    return routes_file


# -- the proxy under test: in-process, or a process we can SIGKILL -------------------


class Proxy(Protocol):
    address: tuple[str, int]

    def facts(self) -> list[dict[str, Any]]: ...

    def stop(self) -> None: ...


class InProcessProxy:
    def __init__(
        self, routes_file: Path, facts_path: Path, *, watch: bool = False, **settings: Any
    ) -> None:
        self.running: RunningProxy = start_proxy(routes_file, facts_path, watch=watch, **settings)
        self.stopped = False
        self.address = (self.running.host, self.running.port)

    def facts(self) -> list[dict[str, Any]]:
        """While running, what was emitted (no flush needed); once stopped, what was written."""
        if self.stopped:
            return [json.loads(line) for line in self.running.facts_path.read_text().splitlines()]
        with self.running.changed:
            emitted = list(self.running.emitted)
        return [{"event": name, **fields} for name, fields in emitted]

    def stop(self) -> None:
        self.running.stop()
        self.stopped = True


class CliProxy:
    """``strangler run`` as a child process; each (re)start writes its own facts file."""

    def __init__(self, routes_file: Path, workdir: Path) -> None:
        self.routes_file = routes_file
        self.workdir = workdir
        self.address = ("127.0.0.1", free_port())
        self.instances: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.start()

    def start(self) -> None:
        n = len(self.instances)
        facts = self.workdir / f"facts{n}.jsonl"
        stderr_path = self.workdir / f"stderr{n}.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "strangler",
                    "run",
                    "--routes",
                    str(self.routes_file),
                    "--listen",
                    f"{self.address[0]}:{self.address[1]}",
                    "--admin",
                    "off",
                    "--no-watch",
                    "--facts",
                    str(facts),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=REPO_DIR,
                env=dict(os.environ),
            )
        self.instances.append((process, facts))
        ready = _wait_until(
            lambda: (
                "strangler: listening on" in stderr_path.read_text() or process.poll() is not None
            ),
            30.0,
        )
        if not ready or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"strangler run did not start: {stderr_path.read_text()}")

    def kill(self) -> None:
        process = self.instances[-1][0]
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def terminate(self) -> int:
        """SIGTERM, as an orchestrator stops a pod; the exit status once it ended."""
        process = self.instances[-1][0]
        process.send_signal(signal.SIGTERM)
        return process.wait(60)

    def facts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for instance, (_, path) in enumerate(self.instances):
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):  # a line cut short by SIGKILL
                    found.append({**json.loads(line), "instance": instance})
        return found

    def stop(self) -> None:
        process = self.instances[-1][0]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` (facts, producer state) until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


# -- the producer: sends, waits for receipts, reconnects and resends ------------------


@dataclass
class Attempt:
    msg: str
    trace: str  # also the receipt id: one per attempt, so copies say which attempt they are
    conn: int  # the producer connection it went out on
    sent_at: float
    outcome: str = "pending"  # receipt | error | closed | silent | unasked (no receipt asked)


@dataclass
class Message:
    id: str
    phase: str
    attempts: list[Attempt] = field(default_factory=list)
    ask: bool = True  # a receipt is asked for (a receipt-less producer asks only at its end)

    @property
    def receipted(self) -> bool:
        return any(a.outcome == "receipt" for a in self.attempts)


class Producer(ProducerThread):
    """A well-behaved producer: at most WINDOW unconfirmed, resends what has no receipt.

    The test thread asks for messages (``add``, ``pace``) and then ``finish``;
    everything the producer saw is kept for the analysis.
    """

    def __init__(
        self,
        address: tuple[str, int],
        dest: str,
        login: str,
        passcode: str,
        *,
        receipts: bool = True,
    ) -> None:
        super().__init__("fault-matrix-producer", address, login, passcode, RECEIPT_TIMEOUT)
        self.dest = dest
        # False: a fire-and-forget producer. It asks no receipts, so it resends nothing;
        # ``finish`` sends one last message with a receipt and waits for it (the proxy
        # answers it once everything before it on that connection is handled).
        self.receipts = receipts
        self.tag = uuid.uuid4().hex[:6]
        self.messages: dict[str, Message] = {}
        self.todo: deque[Message] = deque()
        self.inflight: dict[str, Attempt] = {}
        self.paced: str | None = None
        self.finishing = False
        self.gave_up: str | None = None
        # what the producer saw
        self.errors: list[dict[str, str]] = []
        self.lost = 0  # connections that ended without our DISCONNECT
        self.ended: set[int] = set()  # those connections' numbers

    # -- control (test thread) ------------------------------------------------

    def add(self, n: int, phase: str) -> None:
        with self.cond:
            for _ in range(n):
                self._new(phase)
            self.cond.notify_all()

    def pace(self, phase: str | None) -> None:
        with self.cond:
            self.paced = phase
            self.cond.notify_all()

    def finish(self, timeout: float = DEADLINE) -> None:
        with self.cond:
            self.paced = None
            if not self.receipts:
                self._new("end")
            self.finishing = True
            self.cond.notify_all()
        self.join(timeout)

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self.cond.notify_all()
        self.join(30)

    def wait(self, predicate: Callable[[Producer], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self) or self.done, timeout) and (
                predicate(self)
            )

    def count(self, phase: str | None = None, *, receipted: bool | None = None) -> int:
        with self.cond:
            return sum(
                1
                for m in self.messages.values()
                if (phase is None or m.phase == phase)
                and (receipted is None or m.receipted == receipted)
            )

    def sent_since(self, started: float) -> int:
        return sum(1 for a in self.attempts if a.sent_at >= started)

    def receipted_since(self, started: float) -> int:
        return sum(1 for a in self.attempts if a.sent_at >= started and a.outcome == "receipt")

    @property
    def attempts(self) -> list[Attempt]:
        with self.cond:
            return [a for m in self.messages.values() for a in m.attempts]

    # -- events (stomp.py's thread) ---------------------------------------------

    def _record_error(self, conn: int, frame: StompFrame) -> None:
        self.errors.append(
            {
                "conn": str(conn),
                "message": frame.headers.get("message", ""),
                "receipt-id": frame.headers.get("receipt-id", ""),
            }
        )

    # -- the loop (this thread) -------------------------------------------------------

    def _new(self, phase: str) -> None:
        ask = self.receipts or phase == "end"
        msg = Message(f"{self.tag}-{len(self.messages):04d}", phase, ask=ask)
        self.messages[msg.id] = msg
        self.todo.append(msg)

    def _loop(self) -> None:
        deadline = time.monotonic() + DEADLINE
        next_paced = time.monotonic()
        while True:
            now = time.monotonic()
            with self.cond:
                if self.aborted:
                    break
                if now >= deadline:
                    self.gave_up = f"gave up after {DEADLINE:g} s"
                    break
                if self.paced is not None and now >= next_paced:
                    self._new(self.paced)
                    next_paced = now + PACE
                finished = self.finishing and not self.todo and not self.inflight
            if finished:
                self._disconnect()
                return
            if self._conn is None:
                if self.lost or self.connect_failures:  # a producer pauses before reconnecting
                    with self.cond:
                        self.cond.wait_for(lambda: self.aborted, RETRY)
                if not self._connect():
                    continue
            self._settle()
            self._send_window()
            with self.cond:
                wake = 0.5 if self.paced is None else max(0.0, next_paced - time.monotonic())
                self.cond.wait_for(self._progress, wake)
        self._drop()

    def _progress(self) -> bool:
        state = self._state
        return (
            self.aborted
            or bool(state.get("error") or state.get("closed"))
            or any(t in state.get("receipts", ()) for t in self.inflight)
            or (bool(self.todo) and len(self.inflight) < WINDOW)
            or (self.finishing and not self.todo and not self.inflight)
        )

    def _settle(self) -> None:
        """Record receipts; on ERROR, loss or silence, fail what is in flight and reconnect."""
        with self.cond:
            state = self._state
            confirmed = [t for t in self.inflight if t in state["receipts"]]
            for trace in confirmed:
                self.inflight.pop(trace).outcome = "receipt"
            if confirmed:
                self.cond.notify_all()  # the test thread waits on these counts
            ended = state["error"] or state["closed"]
            oldest = min((a.sent_at for a in self.inflight.values()), default=None)
            silent = (
                not ended and oldest is not None and time.monotonic() - oldest > RECEIPT_TIMEOUT
            )
            if not (ended or silent):
                return
            outcome = "error" if state["error"] else "closed" if ended else "silent"
            self.lost += 1
            self.ended.add(self._conn_no)
            retry = []
            for attempt in self.inflight.values():
                attempt.outcome = outcome
                retry.append(self.messages[attempt.msg])
            self.inflight.clear()
            self.todo.extendleft(reversed(retry))
            conn, self._conn = self._conn, None
        drop_socket(conn)

    def _send_window(self) -> None:
        while True:
            with self.cond:
                if self._conn is None or not self.todo or len(self.inflight) >= WINDOW:
                    return
                if self.aborted:
                    return
                msg = self.todo.popleft()
                attempt = Attempt(
                    msg.id, f"{msg.id}.{len(msg.attempts) + 1}", self._conn_no, time.monotonic()
                )
                msg.attempts.append(attempt)
                headers = {TRACE: attempt.trace, "persistent": "true"}
                if msg.ask:
                    self.inflight[attempt.trace] = attempt
                    headers["receipt"] = attempt.trace
                else:
                    attempt.outcome = "unasked"
                self.cond.notify_all()  # the test thread waits on attempts (``_burst``)
                conn = self._conn
            try:
                conn.send(self.dest, msg.id.encode(), headers=headers)
            except Exception:  # stomp.py: not connected any more
                with self.cond:
                    self._state["closed"] = True  # settled (and resent) on the next turn
                return


# -- faults -------------------------------------------------------------------------


@dataclass
class Cell:
    mode: str
    fault: str
    bed: Bed
    proxy: Proxy
    producer: Any  # Producer, or TxProducer in the transaction cells
    relay_legacy: Relay | None
    relay_amazonmq: Relay | None
    injected_at: float = 0.0
    conn_at_kill: int | None = None  # proxy_killed: the producer connection the kill ended
    inflight_at_fault: int = 0  # attempts sent and not yet answered when the fault hit

    @property
    def uses_amazonmq(self) -> bool:
        return self.mode != "legacy"

    def facts(self) -> list[dict[str, Any]]:
        return self.proxy.facts()

    def seen(self, event: str, **match: Any) -> bool:
        return any(
            f["event"] == event and all(f.get(k) == v for k, v in match.items())
            for f in self.facts()
        )

    def during(self) -> int:
        return int(self.producer.sent_since(self.injected_at))


def _burst(producer: Producer, n: int) -> None:
    before = len(producer.attempts)
    producer.add(n, "during")
    assert producer.wait(lambda p: len(p.attempts) >= before + n, 10), "burst not sent"


def _inject(cell: Cell, burst: int = WINDOW) -> None:
    """Inject the fault right behind a burst of messages, so some are in flight."""
    producer = cell.producer
    _burst(producer, burst)
    cell.injected_at = time.monotonic()
    with producer.cond:
        cell.inflight_at_fault = len(producer.inflight)
    _break(cell)


def _break(cell: Cell) -> None:
    """Switch the cell's fault on (``_heal`` switches it off)."""
    fault, bed = cell.fault, cell.bed
    if fault == "amq_killed":
        brokers.kill(bed.amazonmq.name)
    elif fault == "amq_slow":
        assert cell.relay_amazonmq is not None
        cell.relay_amazonmq.slow(SLOW)
    elif fault == "amq_login_refused":
        assert cell.relay_amazonmq is not None
        os.environ[AMQ_PASSWORD_ENV] = "rotated-elsewhere"
        cell.relay_amazonmq.sever()
    elif fault == "amq_stall":
        assert cell.relay_amazonmq is not None
        cell.relay_amazonmq.stall()
    elif fault == "legacy_killed":
        brokers.kill(bed.legacy.name)
    elif fault == "legacy_restarted":
        brokers.stop(bed.legacy.name)
    elif fault == "legacy_stall":
        assert cell.relay_legacy is not None
        cell.relay_legacy.stall()
    elif fault == "proxy_killed":
        assert isinstance(cell.proxy, CliProxy)
        cell.conn_at_kill = cell.producer.conn_no
        cell.proxy.kill()
    elif fault == "amq_hung":
        assert cell.relay_amazonmq is not None
        cell.relay_amazonmq.stall()
    elif fault == "proxy_sigterm":
        assert isinstance(cell.proxy, CliProxy) and cell.relay_amazonmq is not None
        cell.relay_amazonmq.slow(SIGTERM_SLOW)
        if cell.producer.receipts:  # full load: frames in flight
            cell.producer.wait(lambda p: len(p.inflight) >= 3, HOLD)
        else:  # a burst into the slowed link: batches held, written and unanswered
            _burst(cell.producer, RL_BURST)
        cell.proxy.terminate()


def _login_refused_seen(cell: Cell) -> bool:
    return any("login refused" in str(f.get("reason", "")) for f in cell.facts())


def _hold(cell: Cell) -> bool:
    """Keep the fault until its effect shows in the facts (or it has lasted its time)."""
    fault, producer = cell.fault, cell.producer

    def enough() -> bool:  # traffic went on under the fault
        return cell.during() >= DURING

    def amazonmq_down() -> bool:
        return cell.seen("broker_unavailable", broker=AMAZONMQ)

    if fault == "legacy_stall":
        # Nothing in the proxy watches legacy's liveness, so there is no effect to wait
        # for: the stall lasts its time (the fault's duration, not a synchronisation).
        threading.Event().wait(LEGACY_STALL)
        return True
    if fault in ("legacy_killed", "legacy_restarted"):
        return _wait_until(lambda: cell.seen("broker_unavailable", broker=LEGACY), HOLD)
    if fault in ("proxy_killed", "proxy_sigterm"):
        return bool(producer.wait(lambda p: p.lost > 0, HOLD))
    if fault == "amq_hung":  # the deadline drops the hung link: Amazon MQ reported down
        return _wait_until(amazonmq_down, HOLD)
    if fault == "amq_slow":
        return _wait_until(lambda: producer.receipted_since(cell.injected_at) >= DURING, HOLD)
    if fault in NO_FAULT or not cell.uses_amazonmq:
        return _wait_until(enough, HOLD)
    if fault == "amq_stall":  # the producer's window is stuck meanwhile: heal once noticed
        return _wait_until(amazonmq_down, HOLD)
    if fault == "amq_login_refused":
        return _wait_until(lambda: enough() and _login_refused_seen(cell), HOLD)
    return _wait_until(lambda: enough() and amazonmq_down(), HOLD)


def _heal(cell: Cell) -> None:
    fault, bed = cell.fault, cell.bed
    if fault == "amq_killed":
        brokers.start_one(bed.amazonmq.name, "tls", bed.amazonmq.port)
    elif fault == "amq_login_refused":
        os.environ[AMQ_PASSWORD_ENV] = bed.amazonmq.password
    elif fault in ("amq_slow", "amq_stall", "amq_hung"):
        assert cell.relay_amazonmq is not None
        cell.relay_amazonmq.pass_through()
    elif fault in ("legacy_killed", "legacy_restarted", "legacy_killed_at_commit"):
        if cell.relay_amazonmq is not None:
            cell.relay_amazonmq.pass_through()
        brokers.start_one(bed.legacy.name, "plain", bed.legacy.port)
    elif fault == "legacy_stall":
        assert cell.relay_legacy is not None
        cell.relay_legacy.pass_through()
    elif fault in ("proxy_killed", "proxy_sigterm"):
        assert isinstance(cell.proxy, CliProxy)
        if cell.relay_amazonmq is not None:
            cell.relay_amazonmq.pass_through()
        cell.proxy.start()


def _recovered(cell: Cell) -> bool:
    """Every broker the proxy reported unavailable was reported recovered after that."""
    facts = cell.facts()
    for broker in (LEGACY, AMAZONMQ):
        down = [i for i, f in enumerate(facts) if f["event"] == "broker_unavailable"]
        down = [i for i in down if facts[i].get("broker") == broker]
        if down and not any(
            f["event"] == "broker_recovered" and f.get("broker") == broker
            for f in facts[down[-1] + 1 :]
        ):
            return False
    return True


# -- results --------------------------------------------------------------------------


@dataclass
class Row:
    mode: str
    fault: str
    sent: int = 0
    attempts: int = 0
    inflight: int = 0
    receipted: int = 0
    on_legacy: int = 0
    on_amazonmq: int = 0
    duplicates: int = 0
    errors: int = 0
    reconnects: int = 0
    facts: str = ""
    seconds: float = 0.0
    facts_lost: int = 0  # copies whose facts died with a SIGKILLed proxy
    explained: Counter[str] = field(default_factory=Counter)  # duplicates, by the fact why
    violations: list[str] = field(default_factory=list)  # the promise (checks 1-3)
    story: list[str] = field(default_factory=list)  # what the facts should say (check 4)
    expected_failure: str | None = None

    @property
    def promise(self) -> str:
        return "holds" if not self.violations else "**broken**: " + "; ".join(self.violations[:2])

    @property
    def told(self) -> str:
        if not self.story:
            return "yes"
        known = " (known bug, xfail)" if self.expected_failure else ""
        return f"**no**{known}: " + "; ".join(self.story[:3])


@dataclass
class Report:
    rows: dict[str, Row] = field(default_factory=dict)
    tx_rows: dict[str, TxRow] = field(default_factory=dict)
    rl_rows: dict[str, Row] = field(default_factory=dict)
    combo_rows: dict[str, TxRow] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


@pytest.fixture(scope="session")
def fault_report() -> Iterator[Report]:
    report = Report()
    yield report
    if os.environ.get("STRANGLER_WRITE_RELIABILITY") != "1":
        return
    # The cells as parametrized (some faults run in some modes only: FAULT_MODES).
    expected = len(_cells()) + len(_rl_cells()) + len(_tx_cells()) + len(COMBOS)
    ran = len(report.rows) + len(report.rl_rows) + len(report.tx_rows) + len(report.combo_rows)
    if ran != expected:
        sys.stderr.write(
            f"fault matrix: {ran} of {expected} cells ran;"
            " docs/reliability.md not written (run the whole matrix)\n"
        )
        return
    path = REPO_DIR / "docs" / "reliability.md"
    path.write_text(_render(report, time.monotonic() - report.started))
    sys.stderr.write(f"fault matrix: wrote {path}\n")


def _summarise(facts: list[dict[str, Any]], fault: str) -> str:
    names = {LEGACY: "legacy", AMAZONMQ: "amq"}
    parts = []
    for event, label in (("broker_unavailable", "unavailable"), ("broker_recovered", "recovered")):
        for broker in (LEGACY, AMAZONMQ):
            n = sum(1 for f in facts if f["event"] == event and f.get("broker") == broker)
            if n:
                parts.append(f"{label} {names[broker]}" + (f" x{n}" if n > 1 else ""))
    for event in (
        "client_refused",
        "message_fell_back",
        "message_rejected",
        "message_mirror_failed",
        "message_resent",
    ):
        n = sum(1 for f in facts if f["event"] == event)
        if n:
            parts.append(f"{event.removeprefix('message_')} {n}")
    if fault in ("amq_slow", "legacy_stall"):
        broker = AMAZONMQ if fault == "amq_slow" else LEGACY
        slowest = _slowest_confirm(facts, broker)
        if slowest is not None:
            parts.append(f"{names[broker]} confirm ≤{slowest / 1000:.1f} s")
    doubt = sum(1 for f in facts if f.get("possibly_stored"))
    if doubt:
        parts.append(f"in doubt {doubt}")
    if fault in ("proxy_killed", "proxy_sigterm"):
        parts.append(f"proxy_started {sum(1 for f in facts if f['event'] == 'proxy_started')}")
    return ", ".join(parts) or "—"


def _slowest_confirm(facts: list[dict[str, Any]], broker: str) -> float | None:
    latencies = [
        float(f.get("latency_ms", 0.0))
        for f in facts
        if f["event"] == "message_confirmed" and f.get("broker") == broker
    ]
    return max(latencies) if latencies else None


def _render(report: Report, seconds: float) -> str:
    out = [
        "# Reliability: the fault matrix",
        "",
        "Generated by `tests/integration/test_fault_matrix.py` from one run against real",
        "ActiveMQ brokers (do not edit by hand). Regenerate it with:",
        "",
        "```sh",
        "STRANGLER_WRITE_RELIABILITY=1 .venv/bin/python -m pytest \\",
        "    tests/integration/test_fault_matrix.py -q -p no:cacheprovider",
        "```",
        "",
        "Without `STRANGLER_WRITE_RELIABILITY=1` (as in CI) the same cells run and assert,",
        "and nothing in the tree is written.",
        "",
        "**The promise.** A RECEIPT to a producer means the responsible broker has the",
        "message; nothing a producer sent is silently dropped (it is delivered, or the",
        "producer gets an ERROR, or the connection closes without a receipt).",
        "",
        "**A cell.** One route in one mode, one fault. One producer (stomp.py, `persistent:",
        f"true`, a receipt per message, at most {WINDOW} unconfirmed) sends {FIRST} messages",
        f"through the proxy, then one every {PACE:g} s; the fault is injected right behind a",
        f"burst of {WINDOW} (so some are in flight), held until its effect shows in the facts,",
        "and healed; the producer goes on until every broker the proxy reported unavailable",
        f"is reported recovered, then sends {LAST} more. On an ERROR or a lost connection it",
        "pauses, reconnects and resends whatever had no receipt (a new attempt: a new trace",
        "id). Then both brokers are drained and checked:",
        "",
        "1. *nothing silently dropped*: every message was receipted in the end, and every",
        "   attempt without a receipt ended in an ERROR or a closed connection (none went",
        f"   unanswered on an open connection for {RECEIPT_TIMEOUT:g} s);",
        "2. *a receipt means the broker has it*: every receipted attempt is on its",
        "   responsible broker (the route's primary, or legacy after `message_fell_back`);",
        "3. *nothing unexplained*: every copy's broker is among its `message_routed`",
        "   targets (or legacy after `message_fell_back`); a trace twice on one broker needs",
        "   `message_resent`; a non-mirror trace on both needs `message_fell_back`; extra",
        "   copies of a message need an attempt without a receipt (the producer resent it)",
        "   or such a fact; every ERROR the producer got is a `message_rejected` with its",
        "   receipt id, or a `client_refused`;",
        "4. *the facts tell the story*: the fault's expected facts are there and no others",
        "   (e.g. `broker_unavailable` then `broker_recovered`; `message_fell_back` under",
        "   `on_failure: legacy`, `message_rejected` plus an ERROR under `reject`,",
        "   `message_mirror_failed` for a mirror, `message_resent` after a stall; no",
        "   failure facts for the messages sent after recovery).",
        "",
        "**Columns.** *sent*: distinct messages (attempts in brackets when some were",
        "resent); *in flight*: attempts sent and unanswered when the fault hit;",
        "*receipted*: messages the producer got a RECEIPT for; *legacy*, *Amazon MQ*:",
        "copies drained from each broker; *dups*: copies beyond one per broker a message",
        "belongs on (a non-mirror message on both brokers counts one), with the fact that",
        "explains each (`message_resent`, an outcome marked `possibly_stored`, a",
        "`message_fell_back`, or an attempt the producer resent); *ERRORs*: ERROR",
        "frames the producer received (a refused reconnect counts); *reconn.*: producer",
        "reconnections that succeeded; *facts*: the fault-related facts the proxy wrote",
        "(`xN`: N times; *confirm ≤*: the slowest confirmation by that broker); *time*: the",
        "cell's wall time; *promise*: checks 1-3; *story told*: check 4.",
        "",
        "**Modes** (the one route's settings). Amazon MQ is an ActiveMQ stand-in speaking",
        f"STOMP over TLS with its own login, one endpoint, `heartbeat_ms: {HEARTBEAT_MS}`;",
        "legacy is a plain-STOMP ActiveMQ. Both persist what they confirm.",
        "",
    ]
    out += [f"- `{name}`: `{spec}`" for name, spec in MODES.items()]
    out += ["", "**Faults**:", ""]
    out += [f"- `{name}`: {text}" for name, text in FAULTS.items()]
    out += [
        "",
        f"Run time of the whole matrix: {seconds:.0f} s on {os.cpu_count()} CPUs, broker",
        "start-ups and restarts included.",
        "",
        "| fault | mode | sent | in flight | receipted | legacy | Amazon MQ | dups | ERRORs "
        "| reconn. | facts | time | promise | story told |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for fault in FAULTS:
        for mode in MODES:
            row = report.rows.get(f"{mode}-{fault}")
            if row is None:
                continue
            sent = f"{row.sent}" + (f" ({row.attempts})" if row.attempts != row.sent else "")
            why = ", ".join(f"{n} {fact}" for fact, n in sorted(row.explained.items()))
            dups = f"{row.duplicates}" + (f" ({why})" if why else "")
            out.append(
                f"| `{fault}` | `{mode}` | {sent} | {row.inflight} | {row.receipted} "
                f"| {row.on_legacy} | {row.on_amazonmq} | {dups} | {row.errors} "
                f"| {row.reconnects} | {row.facts} | {row.seconds:.1f} s | {row.promise} "
                f"| {row.told} |"
            )
    out += _render_receipt_less(report)
    out += _render_transactions(report)
    out += _render_soak()
    out += ["", "## Bugs this matrix found (fixed; the cells above pass with the fix)", ""]
    out += [f"- {text}" for text in FINDINGS]
    out += ["", "## Limits the matrix shows (by design, not failures)", ""]
    out += [f"- {text}" for text in LIMITS]
    out += ["", "## Not covered", ""]
    out += [f"- {text}" for text in NOT_COVERED]
    return "\n".join(out) + "\n"


def _render_receipt_less(report: Report) -> list[str]:
    out = [
        "",
        "## Producers that ask no receipts",
        "",
        "**A cell.** The same producer, asking no receipt for any message but its last: it",
        f"sends {FIRST} messages, waits until the facts show each settled (Amazon MQ's link is",
        f"up), then one every {PACE:g} s; the fault is injected right behind a burst of",
        f"{RL_BURST} (`proxy_sigterm`: a second burst once Amazon MQ is slowed), so batches of",
        "cutover primaries and mirror copies are held, written and awaiting their one receipt",
        '(docs/architecture.md, "Confirmations in batches"). It resends nothing: on an ERROR',
        "or a lost connection it reconnects and goes on with new messages. At the end it sends",
        "one message with a receipt on its last connection and waits for it. Checks:",
        "",
        "1. the last message was receipted (the producer finished);",
        "2. every message the proxy routed is where its facts say: its Amazon MQ part has an",
        "   outcome (`message_confirmed` by amazonmq, `message_fell_back`,",
        "   `message_mirror_failed` or `message_rejected`); a message not rejected is on its",
        "   primary (legacy after `message_fell_back`); a confirmed copy is on Amazon MQ, a",
        "   failed one only when `possibly_stored`; a rejected one on no broker unless",
        "   `possibly_stored`. A message with no `message_routed` fact is allowed only on a",
        "   connection that broke (*lost with their connection*: written into a closing",
        "   socket, as with any broker) and must be on no broker;",
        "3. and 4. as above (every copy explained, the facts tell the fault's story); an",
        "   ERROR without a receipt id must end a connection a `message_rejected` came from.",
        "",
        "| fault | mode | sent | legacy | Amazon MQ | dups | ERRORs | reconn. | facts | time"
        " | promise | story told |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for fault in RL_FAULTS:
        for mode in RL_MODES:
            row = report.rl_rows.get(f"rl-{mode}-{fault}")
            if row is None:
                continue
            why = ", ".join(f"{n} {fact}" for fact, n in sorted(row.explained.items()))
            dups = f"{row.duplicates}" + (f" ({why})" if why else "")
            out.append(
                f"| `{fault}`, no receipts | `{mode}` | {row.sent} | {row.on_legacy} "
                f"| {row.on_amazonmq} | {dups} | {row.errors} | {row.reconnects} | {row.facts} "
                f"| {row.seconds:.1f} s | {row.promise} | {row.told} |"
            )
    return out


def _tx_line(fault: str, mode: str, row: TxRow) -> str:
    sent = f"{row.messages}" + (f" ({row.attempts})" if row.attempts != row.messages else "")
    return (
        f"| `{fault}` | `{mode}` | {row.transactions} | {row.ended} | {sent} | {row.receipted} "
        f"| {row.on_legacy} | {row.on_amazonmq} | {row.duplicates} | {row.errors} "
        f"| {row.reconnects} | {row.facts} | {row.seconds:.1f} s | {row.promise} | {row.told} |"
    )


def _render_transactions(report: Report) -> list[str]:
    head = [
        "| fault | mode | tx | committed / aborted / failed / in doubt | messages | committed"
        " msgs | legacy | Amazon MQ | dups | ERRORs | reconn. | facts | time | promise"
        " | story told |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    out = [
        "",
        "## Transactions under faults",
        "",
        "**A cell.** The same route and brokers, one *transactional* producer"
        f" (`tests/integration/txproducer.py`): BEGIN, {TX_SIZE} SENDs (`persistent: true`, a",
        "receipt each, in two halves, each half waited for), then COMMIT with a receipt; every"
        f" {TX_ABORT_EVERY}th transaction is ABORTed instead. The SENDs' trace ids are chosen so",
        "that a 50% split sends the even ones to Amazon MQ and the odd ones to legacy: every",
        f"transaction spans both brokers. {TX_FIRST} transactions run before the fault; the next",
        "one is held open (BEGIN and its first half receipted; for the `*_at_commit` faults",
        "every SEND receipted, right before COMMIT) while the fault is injected, then goes on.",
        "Transactions follow one another until every broker reported unavailable is reported",
        f"recovered, then {TX_LAST} more run. A transaction that got an ERROR, lost its connection",
        "or went unanswered is run again as a new transaction (new id, new trace ids); one meant",
        "to be aborted is not. Both brokers are then drained and checked",
        "(`tests/integration/promise.py`):",
        "",
        "1. every transaction meant to be committed was committed in the end (a COMMIT",
        "   RECEIPT), and no SEND, COMMIT or ABORT went unanswered on an open connection;",
        "2. a COMMIT's RECEIPT means every message of that transaction is on its responsible",
        "   broker (legacy after `message_fell_back`), a mirror's copy on Amazon MQ too unless",
        "   `message_mirror_failed` says why;",
        "3. nothing of an ABORTed transaction, or of one whose COMMIT was never sent, is on any",
        "   broker; a transaction whose COMMIT was sent but never answered is *in doubt* (the",
        "   brokers may have committed it, as with any STOMP broker): its legacy part is there",
        "   whole or not at all, its Amazon MQ part only with a fact that says Amazon MQ",
        "   committed it (`transaction_partial_commit`, `transaction_committed`,",
        "   `message_fell_back`, `message_rejected`);",
        "4. every copy is explained: its broker is among its `message_routed` targets (or",
        "   legacy after `message_fell_back`), never twice on one broker (a transaction's frames",
        "   are never resent), extra copies of a message only from a retried in-doubt COMMIT or",
        "   a fallback; every ERROR is a `message_rejected` or a `client_refused`;",
        "5. the facts tell the story: the fault's facts (`broker_unavailable` / `_recovered`,",
        "   `message_fell_back` with the transaction under `on_failure: legacy`,",
        "   `message_rejected` plus an ERROR under `reject`, `message_mirror_failed` for a",
        "   mirror, `transaction_partial_commit` when legacy never gets a COMMIT Amazon MQ",
        "   confirmed), one outcome fact per message, a `transaction_aborted` for every",
        "   answered ABORT, a `transaction_committed` for every answered COMMIT spanning both",
        "   brokers, and no failure facts after recovery.",
        "",
        "*tx*: logical transactions; the next column counts transaction *attempts* by how they",
        "ended (failed = ERROR or connection closed before the COMMIT was sent); *messages*: of",
        "the transactions meant to be committed (SENDs written, retries included, in brackets);",
        "*committed msgs*: messages of transactions whose COMMIT got its RECEIPT.",
        "",
        "**Faults** (modes as above):",
        "",
    ]
    out += [f"- `{name}`: {text}" for name, text in TX_FAULTS.items()]
    out += ["", *head]
    for fault in TX_FAULTS:
        for mode in TX_MODES:
            row = report.tx_rows.get(f"tx-{mode}-{fault}")
            if row is not None:
                out.append(_tx_line(fault, mode, row))
    out += [
        "",
        "## Faults in combination, and a fault during a routes reload",
        "",
        "Both producers at once, the plain one and the transactional one, each on its own",
        "queue under one route (matched by prefix); the proxy watches its routes file, which",
        "is rewritten as an editor does (a new file renamed over it). The transactional",
        "producer's held transaction begins under the first routes and must finish under",
        "them (`message_routed.routes_version`). The checks are those above, for both",
        "producers; the messages after recovery must be routed as the last routes say.",
        "",
    ]
    out += [f"- `{name}` (`{modes}`): {text}" for name, (modes, text) in COMBOS.items()]
    out += [""] + [h.replace("| fault |", "| faults |") for h in head]
    for combo, (modes, _) in COMBOS.items():
        row = report.combo_rows.get(combo)
        if row is not None:
            out.append(_tx_line(combo, modes, row))
    return out


def _render_soak() -> list[str]:
    return [
        "",
        "## The soak (a command, not part of the default test run)",
        "",
        "```sh",
        ".venv/bin/python -m bench.soak --minutes 10 --producers 8   # ~11 min",
        "```",
        "",
        "Two brokers of its own, `strangler run` as a process; 8 producers (every 4th sends",
        "transactions) at 25 persistent messages/s each, a receipt per SEND; consumers take",
        "everything as it arrives. At 25% of the run the routes file changes (mirror ->",
        "cutover, a split's `on_failure` legacy -> reject: hot reload), at 45% Amazon MQ is",
        "SIGKILLed and restarted, at 70% legacy is stopped and restarted. It exits non-zero",
        "if a receipted message (or a committed transaction's) is missing, a copy is",
        "unexplained, a step did not take effect, or the proxy's RSS grew by more than",
        "`--max-rss-growth-mb` (25) from early in the run to its end. The test suite runs",
        "it for 30 s with 4 producers (`tests/integration/test_soak.py`). See",
        "`bench/README.md` for its options.",
        "",
        *SOAK_LAST,
    ]


# The last 10-minute soak, as bench.soak printed it (updated by hand after a run).
SOAK_LAST = (
    "Last 10-minute run (2 CPUs shared with other work): 8 producers (2 transactional),",
    "601 s; 107,401 messages in 115,541 SENDs, all receipted; found legacy 42,373, Amazon MQ",
    "80,677 (the first quarter mirrors); 649 duplicates, each of a message the producer",
    "resent after an ERROR or a lost connection; transactions: 4,628 committed, 1,536",
    "aborted, 143 failed and run again; reload applied, Amazon MQ killed and restarted",
    "(recovered), legacy restarted (recovered); proxy RSS 35.5 MB at start, 37.5 MB early,",
    "38.3 MB peak and end (+0.8 MB); receipted messages lost: 0.",
)

FINDINGS = (
    "**A stalled Amazon MQ connection fails its frames instead of resending them**"
    " (`*-amq_stall`, fixed). When the link dropped a connection for a missing heart-beat,"
    " `BrokerLink._drop_connection` starts a reconnect that would resend the frames"
    " awaiting a receipt, and cancels the reader task; that task's `finally` calls"
    ' `_drop_connection("connection closed by broker")` a second time, which finds'
    " `_writer` gone but `_pending` full and calls `_fail`: every frame fails at once"
    " (fallback to legacy, ERROR under `reject`, `message_mirror_failed`) with a wrong"
    " reason, and `message_resent` never happens. With active/standby endpoints, a hung"
    " (not crashed) active broker therefore never fails over. No message is lost: the"
    " promise held, the story did not. Fixed in `strangler/upstream/link.py`: `_read`"
    " no longer calls `_drop_connection` when it was cancelled; the stall cells now show"
    " `message_resent` and no fallback.",
    "**A session that closes with Amazon MQ frames in flight reports Amazon MQ unavailable**"
    " (`test_closing_session_does_not_report_amazonmq_unavailable`, fixed; was visible in the"
    " `legacy_killed` / `legacy_restarted` rows as `unavailable amq`). Same root cause:"
    " `BrokerLink.close()` cancels the reader and awaits `wait_closed()`; meanwhile the"
    " reader's `finally` runs `_drop_connection` and `_fail`, so the proxy writes"
    ' `broker_unavailable amazonmq` ("connection closed by broker"), marks Amazon MQ down'
    " in its health (readiness) until another session reconnects, and gives the in-flight"
    ' frames that reason instead of "session closed before the broker confirmed".',
    "**A COMMIT Amazon MQ confirms after the session closed was a partial commit nobody"
    " recorded** (`tx-*-legacy_killed_at_commit`, fixed). Legacy died while the proxy waited"
    " for Amazon MQ to confirm a transaction's COMMIT; Amazon MQ then confirmed it, and"
    " `TransactionSide._commit_both` (`strangler/proxy/transactions.py`) returned because"
    " the session was closed, writing no"
    " fact: Amazon MQ held the transaction's messages, legacy never got its COMMIT, the"
    " producer no RECEIPT, and nothing said Amazon MQ had committed. It now writes"
    " `transaction_partial_commit` (committed amazonmq, failed legacy).",
    "**A transaction's Amazon MQ part lost after its session closed was reported as fallen"
    " back to legacy** (`test_commit_failing_after_session_closed_is_not_a_fallback`, fixed)."
    " `_transaction_lost_amazonmq` (now `TransactionSide.lost_amazonmq`) wrote"
    " `message_fell_back` and 'sent' the messages into a"
    " legacy connection that was gone. It now writes `message_rejected`, as a non-transactional"
    " SEND in a closed session already did.",
    "**After `broker_recovered`, other sessions kept falling back for up to 30 s**"
    " (`amq_killed+reload`, by chance; `test_recovered_broker_ends_the_backoff_of_other_sessions`,"
    " fixed). Each session's Amazon MQ link has its own back-off (1 s doubling to 30 s)"
    " after a failed connect; when another session reached Amazon MQ again, a link still"
    " in back-off went on failing its frames at once (`message_fell_back`, or an ERROR"
    " under `reject`) until its own period ran out. `BrokerLink.in_backoff` now ends when"
    " the proxy-wide health says the broker is up again.",
    "**A transactional mirror copy that failed got two `message_mirror_failed` facts**"
    " (`tx-mirror-amq_*`, fixed): one from the copy's own outcome and one when the"
    " transaction's Amazon MQ part was given up (or its COMMIT failed), which doubled the"
    " mirror-failure metric. Each copy now gets one.",
)

LIMITS = (
    "**A SIGKILLed proxy loses its last facts.** The fact writer flushes every 50 ms, so"
    " the `message_routed` facts of the messages handled in the final moments die with"
    " the process while the messages are on a broker (receipted ones included): the"
    " `proxy_killed` rows count them (*copies whose facts died with the proxy*). The"
    " matrix accepts such a copy only for an attempt sent to the killed process; every"
    " other check holds for those cells.",
    "**`reject` closes the connection, so a pipelining producer resends its neighbours.**"
    " STOMP's ERROR ends the session: every other message in flight on it loses its"
    " receipt, including ones legacy already stored, and the producer resends them"
    " (the *dups* of the `split-reject` rows).",
    "**An unconfirmed Amazon MQ frame is recorded as `message_rejected` (or"
    " `message_mirror_failed`) even when Amazon MQ stored it.** When a session ends with"
    " frames awaiting Amazon MQ's receipt (e.g. legacy went away), those frames may be on"
    " Amazon MQ (the `cutover-*` rows of `legacy_killed` have more copies than messages);"
    " the producer never got their receipts and resends them. The copies are explained"
    " by `message_routed`, but the outcome fact reads as a refusal.",
    "**A proxy stopping (SIGTERM) reads no more from its clients.** What a producer"
    " writes after that stays in the socket and is gone when the connection closes, as"
    " when a broker stops. A producer asking receipts resends it; one asking none loses"
    " it (*lost with their connection* in the receipt-less `proxy_sigterm` rows: 10-14"
    " messages in the runs so far, at 12.5 a second while the proxy settled what it had"
    " read). Each such"
    " message has no `message_routed` fact and is on no broker.",
)

NOT_COVERED = (
    "Active/standby Amazon MQ failover (two endpoints): `test_failover.py` covers it; the"
    " matrix uses one endpoint.",
    "Faults in combination beyond the three cells above, faults during a graceful shutdown,"
    " consumers (SUBSCRIBE passes through to legacy). SEND without a receipt only under"
    " the receipt-less section's three faults (and `test_link_receipts.py`'s sever, cut"
    " and stall); a receipt-less producer under legacy's faults or a SIGKILLed proxy is"
    " told nothing, and loses what was in flight as it would with the broker itself.",
    "Transactions: split with `on_failure: reject`, legacy stalled, Amazon MQ's login"
    " refused, and the moment between Amazon MQ storing a COMMIT and its RECEIPT coming back"
    " (only `COMMIT not confirmed` with a connection that closed is exercised).",
    "Slow or stalled networks longer than the proxy's timeouts (`connect_timeout` 10 s,"
    " `drain_timeout` 30 s); legacy has no heart-beat check, so a legacy stall is only"
    " as long as the network makes it.",
)


# -- the analysis -----------------------------------------------------------------------


def _found(on_legacy: list[StompFrame], on_amazonmq: list[StompFrame]) -> dict[str, Counter[str]]:
    """Copies per trace id, per broker."""
    return {
        LEGACY: Counter(m.headers.get(TRACE, "") for m in on_legacy),
        AMAZONMQ: Counter(m.headers.get(TRACE, "") for m in on_amazonmq),
    }


def _count_row(
    cell: Cell,
    row: Row,
    facts: list[dict[str, Any]],
    on_legacy: list[StompFrame],
    on_amazonmq: list[StompFrame],
) -> None:
    p = cell.producer
    row.sent = len(p.messages)
    row.inflight = cell.inflight_at_fault
    row.attempts = len(p.attempts)
    row.receipted = p.count(receipted=True)
    row.on_legacy, row.on_amazonmq = len(on_legacy), len(on_amazonmq)
    row.errors = len(p.errors)
    row.reconnects = max(0, p.connections - 1)
    row.facts = _summarise(facts, cell.fault)
    if p.crash is not None:
        row.violations.append(f"producer crashed: {p.crash!r}")
    if p.gave_up:
        row.violations.append(f"producer {p.gave_up}")


def _routed(facts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``message_routed`` fact of each trace id."""
    return {f["trace_id"]: f for f in facts if f["event"] == "message_routed"}


def _traces(facts: list[dict[str, Any]], event: str | None = None, **match: Any) -> set[str]:
    """The trace ids of the facts named ``event`` (any name, when None) whose fields hold
    ``match``: ``_traces(facts, possibly_stored=True)``, the outcomes in doubt."""
    return {
        str(f.get("trace_id"))
        for f in facts
        if (event is None or f["event"] == event)
        and all(f.get(k) == val for k, val in match.items())
    }


def _analyse(
    cell: Cell,
    row: Row,
    facts: list[dict[str, Any]],
    on_legacy: list[StompFrame],
    on_amazonmq: list[StompFrame],
) -> None:
    p = cell.producer
    v = row.violations
    attempts = {a.trace: a for a in p.attempts}
    found = _found(on_legacy, on_amazonmq)
    routed = _routed(facts)
    fell_back = _traces(facts, "message_fell_back")
    _count_row(cell, row, facts, on_legacy, on_amazonmq)

    def lost_with_proxy(trace: str) -> bool:
        """A SIGKILLed proxy's last facts may be lost: only for attempts sent to it."""
        a = attempts.get(trace)
        return cell.conn_at_kill is not None and a is not None and a.conn <= cell.conn_at_kill

    # 1. nothing silently dropped, and the producer's retry path ends
    unreceipted = [m.id for m in p.messages.values() if not m.receipted]
    if unreceipted:
        v.append(f"{len(unreceipted)} messages never receipted, e.g. {unreceipted[:3]}")
    silent = [a.trace for a in attempts.values() if a.outcome == "silent"]
    if silent:
        v.append(f"{len(silent)} attempts silently unanswered, e.g. {silent[:3]}")

    # 2. a receipt means the responsible broker has it
    for a in attempts.values():
        if a.outcome != "receipt":
            continue
        fact = routed.get(a.trace)
        if a.trace in fell_back:
            where = [LEGACY]
        elif fact is not None:
            where = [fact["primary"]]
        elif lost_with_proxy(a.trace):
            where = [LEGACY, AMAZONMQ]
        else:
            v.append(f"receipted {a.trace} has no message_routed fact")
            continue
        if not any(found[b][a.trace] for b in where):
            v.append(f"receipted {a.trace} is not on {'/'.join(where)}")

    # 3. every copy is explained
    _explain_copies(cell, row, facts, found, lost_with_proxy)

    # 4. the story
    row.story += _story(cell, facts, p)
    if row.facts_lost:
        row.facts += f", copies whose facts died with the proxy {row.facts_lost}"


def _explain_copies(
    cell: Cell,
    row: Row,
    facts: list[dict[str, Any]],
    found: dict[str, Counter[str]],
    lost_with_proxy: Callable[[str], bool],
) -> None:
    """Check 3: every copy on a broker, every extra copy and every ERROR has its reason."""
    p = cell.producer
    v = row.violations
    attempts = {a.trace: a for a in p.attempts}
    routed = _routed(facts)
    fell_back, resent = _traces(facts, "message_fell_back"), _traces(facts, "message_resent")
    rejected = _traces(facts, "message_rejected")
    doubted = _traces(facts, possibly_stored=True)
    for broker, counter in found.items():
        for trace, n in counter.items():
            if trace not in attempts:
                v.append(f"{broker} holds {trace!r}, which the producer never sent")
                continue
            fact = routed.get(trace)
            if fact is None:
                if lost_with_proxy(trace):
                    row.facts_lost += 1
                else:
                    v.append(f"{trace} on {broker} has no message_routed fact")
                continue
            if broker not in fact["targets"] and not (broker == LEGACY and trace in fell_back):
                v.append(f"{trace} on {broker}, routed to {fact['targets']} and not fallen back")
            if n > 1 and trace not in resent:
                v.append(f"{trace} is {n} times on {broker}, no message_resent")
    for trace in set(found[LEGACY]) & set(found[AMAZONMQ]):
        fact = routed.get(trace)
        if fact is not None and len(fact["targets"]) == 1 and trace not in fell_back:
            v.append(
                f"{trace} is on both brokers, routed to {fact['targets']} only, not fallen back"
            )
    mirror = cell.mode == "mirror"
    for msg in p.messages.values():
        copies = {b: sum(found[b][a.trace] for a in msg.attempts) for b in found}
        extra = sum(max(0, n - 1) for n in copies.values())
        if not mirror and all(copies.values()):
            extra += 1
        row.duplicates += extra
        if not extra:
            continue
        if any(a.trace in resent for a in msg.attempts):
            row.explained["message_resent"] += extra
        elif any(a.trace in doubted for a in msg.attempts):
            row.explained["possibly_stored"] += extra
        elif any(a.trace in fell_back for a in msg.attempts):
            row.explained["message_fell_back"] += extra
        elif any(a.outcome not in ("receipt", "unasked") for a in msg.attempts):
            row.explained["producer resent"] += extra
        else:
            v.append(f"{msg.id} has {extra} extra copies, none resent by the producer, no fact")
    for error in p.errors:
        receipt = error["receipt-id"]
        if receipt and receipt not in rejected:
            v.append(f"ERROR for {receipt} without message_rejected: {error['message']}")
        # A receipt-less SEND's rejection names no receipt: it ends the connection it came on.
        refused_here = any(
            attempts[t].conn == int(error["conn"]) and attempts[t].outcome == "unasked"
            for t in rejected
            if t in attempts
        )
        refused = any(f["event"] == "client_refused" for f in facts)
        if not receipt and not refused_here and not refused:
            v.append(
                f"ERROR without receipt-id, no client_refused or rejection: {error['message']}"
            )


def _story(cell: Cell, facts: list[dict[str, Any]], p: Producer) -> Iterator[str]:
    mode, fault = cell.mode, cell.fault

    def count(event: str, **match: Any) -> int:
        return sum(
            1
            for f in facts
            if f["event"] == event and all(f.get(k) == val for k, val in match.items())
        )

    failures = ("message_fell_back", "message_rejected", "message_mirror_failed")
    if fault in SEND_FORM:
        strays = [f for f in facts if f["event"] == "message_routed" and f.get("rule") != "cell"]
        if strays:
            yield f"{len(strays)} messages escaped the route, e.g. {strays[0].get('destination')!r}"
        if not any(f.get("destinations") for f in facts if f["event"] == "message_routed"):
            yield "no message_routed names the destination the broker used"
    if fault in NO_FAULT or (fault.startswith("amq_") and not cell.uses_amazonmq):
        for event in (*failures, "message_resent", "broker_unavailable", "client_refused"):
            if count(event):
                yield f"unexpected {event} x{count(event)}"
        if p.errors or p.lost:
            yield f"producer saw {len(p.errors)} ERRORs and {p.lost} lost connections"
        if not cell.uses_amazonmq and count("message_confirmed", broker=AMAZONMQ):
            yield "legacy mode reached Amazon MQ"
        return
    if fault in ("amq_killed", "amq_login_refused", "amq_stall"):
        if not count("broker_unavailable", broker=AMAZONMQ):
            yield "no broker_unavailable for amazonmq"
        if not count("broker_recovered", broker=AMAZONMQ):
            yield "no broker_recovered for amazonmq"
    if fault in ("amq_killed", "amq_login_refused"):
        if fault == "amq_login_refused" and not _login_refused_seen(cell):
            yield "no fact gives 'login refused' as the reason"
        expected = {
            "mirror": "message_mirror_failed",
            "split-legacy": "message_fell_back",
            "cutover-legacy": "message_fell_back",
            "split-reject": "message_rejected",
            "cutover-reject": "message_rejected",
        }[mode]
        if not count(expected):
            yield f"no {expected}"
        for other in failures:
            if other != expected and count(other):
                yield f"unexpected {other} x{count(other)}"
        if mode.endswith("-reject"):
            if not p.errors:
                yield "reject mode, yet the producer got no ERROR"
        elif p.errors or p.lost:
            yield f"producer saw {len(p.errors)} ERRORs and {p.lost} lost connections"
    if fault == "amq_hung":
        if not count("broker_unavailable", broker=AMAZONMQ):
            yield "no broker_unavailable for amazonmq (the deadline did not drop the hung link)"
        expected = {
            "mirror": "message_mirror_failed",
            "split-legacy": "message_fell_back",
            "cutover-legacy": "message_fell_back",
            "cutover-reject": "message_rejected",
        }[mode]
        if not count(expected, possibly_stored=True):
            yield f"no {expected} marked possibly_stored (written, never answered)"
        deadline = f"within {HUNG_DEADLINE:g} seconds"
        if not any(deadline in str(f.get("reason", "")) for f in facts if f["event"] in failures):
            yield f"no failure gives the deadline ('{deadline}') as its reason"
    if fault == "proxy_sigterm":
        if count("proxy_started") != 2 or not count("proxy_stopped"):
            yield "expected a proxy_stopped and two proxy_started"
        if mode.endswith("-legacy") and count("message_rejected"):
            yield f"on_failure: legacy, yet message_rejected x{count('message_rejected')}"
        if not p.lost:
            yield "the producer's connection survived the shutdown"
    if fault == "amq_stall":
        if not count("message_resent"):
            yield "no message_resent after the stalled link was replaced"
        for event in failures:
            if count(event):
                yield f"unexpected {event} x{count(event)}"
        if p.errors or p.lost:
            yield f"producer saw {len(p.errors)} ERRORs and {p.lost} lost connections"
    if fault == "amq_slow":
        slowest = _slowest_confirm(facts, AMAZONMQ) or 0.0
        if slowest < SLOW * 1000:
            yield f"slowest Amazon MQ confirmation {slowest:.0f} ms, below the injected delay"
        for event in (*failures, "broker_unavailable"):
            if count(event):
                yield f"unexpected {event} x{count(event)}"
        if p.errors or p.lost:
            yield f"producer saw {len(p.errors)} ERRORs and {p.lost} lost connections"
    if fault in ("legacy_killed", "legacy_restarted"):
        for event in ("broker_unavailable", "broker_recovered"):
            if not count(event, broker=LEGACY):
                yield f"no {event} for legacy"
        if not count("client_refused"):
            yield "no client_refused while legacy was down"
        if not p.lost or not p.connections > 1:
            yield "the producer's connection survived legacy going down"
    if fault == "legacy_stall":
        for event in (*failures, "broker_unavailable", "message_resent"):
            if count(event):
                yield f"unexpected {event} x{count(event)}"
        if p.errors or p.lost:
            yield f"producer saw {len(p.errors)} ERRORs and {p.lost} lost connections"
        if not mode.startswith("cutover"):
            slowest = _slowest_confirm(facts, LEGACY) or 0.0
            if slowest < LEGACY_STALL * 1000 / 2:
                yield f"slowest legacy confirmation {slowest:.0f} ms: the stall did not bite"
    if fault == "proxy_killed":
        if count("proxy_started") != 2:
            yield f"proxy_started x{count('proxy_started')}, expected one per process"
        if not p.lost or p.connections < 2:
            yield "the producer did not lose its connection and reconnect"
        if p.errors:
            yield f"producer got {len(p.errors)} ERRORs"
    # After recovery the route works as configured again.
    last = {a.trace for m in p.messages.values() if m.phase == "last" for a in m.attempts}
    bad = [
        f
        for f in facts
        if f["event"] in failures
        and f.get("trace_id") in last
        and fault not in ("proxy_killed", "proxy_sigterm")
    ]
    if bad:
        yield f"{len(bad)} failures after recovery, e.g. {bad[0]['event']}: {bad[0].get('reason')}"


# -- the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "fault"), _cells())
def test_fault_matrix(
    fault_report: Report, bed: Bed, mode: str, fault: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    cell_id = f"{mode}-{fault}"
    row = Row(mode, fault, expected_failure=KNOWN_BUGS.get(cell_id))
    fault_report.rows[cell_id] = row
    dest = unique_queue(f"fm.{cell_id}")
    relay_legacy, relay_amazonmq, proxy = _open_cell(
        bed,
        tmp_path,
        dest,
        mode,
        fault,
        legacy_relay=fault == "legacy_stall",
        amazonmq_relay=fault
        in ("amq_slow", "amq_login_refused", "amq_stall", "amq_hung", "proxy_sigterm"),
    )
    send_to = SEND_FORM.get(fault, str)(dest)
    producer = Producer(proxy.address, send_to, bed.legacy.username, bed.legacy.password)
    cell = Cell(mode, fault, bed, proxy, producer, relay_legacy, relay_amazonmq)
    stopped = False
    try:
        producer.start()
        producer.add(FIRST, "first")
        assert producer.wait(lambda p: p.count("first", receipted=True) == FIRST, 30), (
            "the cell's first messages were not receipted before any fault"
        )
        producer.pace("during")
        assert producer.wait(lambda p: p.count("during") >= 2, 10)
        _inject(cell)
        effect = _hold(cell)
        _finish_cell(cell, producer, proxy, row, effect, LAST)
        stopped = True
    finally:
        _clean_up_cell(bed, producer, proxy, stopped, (relay_legacy, relay_amazonmq))
    facts = proxy.facts()
    _analyse(cell, row, facts, drain(bed.legacy, dest), drain(bed.amazonmq, dest))
    row.seconds = time.monotonic() - started
    _judge_cell(cell_id, row, facts, ("message_routed", "message_confirmed"))


# -- producers that ask no receipts ---------------------------------------------------------

# Their cutover primaries and mirror copies go to Amazon MQ in batches with one receipt
# (docs/architecture.md, "Confirmations in batches"); these faults catch batches held,
# written and awaiting their receipt.
RL_MODES = ("mirror", "split-legacy", "cutover-legacy", "cutover-reject")
RL_FAULTS = ("amq_killed", "amq_hung", "proxy_sigterm")
RL_BURST = 50  # messages sent at once right before the fault (a few batches' worth)
AMQ_OUTCOMES = ("message_fell_back", "message_mirror_failed", "message_rejected")


def _rl_cells() -> list[Any]:
    return [
        pytest.param(mode, fault, id=f"rl-{mode}-{fault}")
        for fault in RL_FAULTS
        for mode in RL_MODES
    ]


def _amazonmq_settled(facts: list[dict[str, Any]], traces: list[str]) -> bool:
    """Every one of ``traces`` is routed, and its Amazon MQ part (if any) has an outcome."""
    routed = _routed(facts)
    settled = _traces(facts, "message_confirmed", broker=AMAZONMQ)
    for event in AMQ_OUTCOMES:
        settled |= _traces(facts, event)
    return all(
        t in routed and (AMAZONMQ not in routed[t]["targets"] or t in settled) for t in traces
    )


@pytest.mark.parametrize(("mode", "fault"), _rl_cells())
def test_fault_matrix_receipt_less(
    fault_report: Report, bed: Bed, mode: str, fault: str, tmp_path: Path
) -> None:
    """The matrix's producer asking no receipts (its last message excepted): nothing it
    sent may vanish while its connection stays up, and every message's Amazon MQ part
    has its outcome in the facts, SIGTERM included."""
    started = time.monotonic()
    cell_id = f"rl-{mode}-{fault}"
    row = Row(mode, fault)
    fault_report.rl_rows[cell_id] = row
    dest = unique_queue(f"fm.{cell_id}")
    relay_legacy, relay_amazonmq, proxy = _open_cell(
        bed,
        tmp_path,
        dest,
        mode,
        fault,
        legacy_relay=False,
        amazonmq_relay=fault in ("amq_hung", "proxy_sigterm"),
    )
    producer = Producer(
        proxy.address, dest, bed.legacy.username, bed.legacy.password, receipts=False
    )
    cell = Cell(mode, fault, bed, proxy, producer, relay_legacy, relay_amazonmq)
    stopped = False
    try:
        producer.start()
        producer.add(FIRST, "first")
        assert producer.wait(lambda p: len(p.attempts) >= FIRST, 10)
        first = [a.trace for a in producer.attempts]
        # Amazon MQ's link is up and confirming before the fault (else the cell would
        # only test "unreachable at first connect").
        assert _wait_until(lambda: _amazonmq_settled(proxy.facts(), first), 30), (
            "the cell's first messages were not settled before any fault"
        )
        producer.pace("during")
        _inject(cell, RL_BURST)
        effect = _hold(cell)
        _finish_cell(cell, producer, proxy, row, effect, LAST)
        stopped = True
    finally:
        _clean_up_cell(bed, producer, proxy, stopped, (relay_legacy, relay_amazonmq))
    facts = proxy.facts()
    _analyse_receipt_less(cell, row, facts, drain(bed.legacy, dest), drain(bed.amazonmq, dest))
    row.seconds = time.monotonic() - started
    _judge_cell(cell_id, row, facts, ("message_routed", "message_confirmed"))


def _analyse_receipt_less(
    cell: Cell,
    row: Row,
    facts: list[dict[str, Any]],
    on_legacy: list[StompFrame],
    on_amazonmq: list[StompFrame],
) -> None:
    """The checks for a receipt-less producer. It is told nothing, so the promise is
    the proxy's: what it took is where its facts say, and only a lost connection may
    take a message the facts never mention."""
    p: Producer = cell.producer
    v = row.violations
    found = _found(on_legacy, on_amazonmq)
    _count_row(cell, row, facts, on_legacy, on_amazonmq)
    routed = _routed(facts)
    confirmed = _traces(facts, "message_confirmed", broker=AMAZONMQ)
    fell_back, rejected = _traces(facts, "message_fell_back"), _traces(facts, "message_rejected")
    failed = _traces(facts, "message_mirror_failed")
    doubted = _traces(facts, possibly_stored=True)

    # 1. the producer finished: its last message, the one with a receipt, was receipted
    unreceipted = [m.id for m in p.messages.values() if m.ask and not m.receipted]
    if unreceipted:
        v.append(f"the last message was never receipted: {unreceipted}")
    # 2. what the proxy took is where its facts say; nothing else vanished
    unrouted = 0
    for a in p.attempts:
        if a.outcome != "unasked":
            continue
        fact = routed.get(a.trace)
        if fact is None:
            if a.conn not in p.ended:
                v.append(f"{a.trace}, sent on a connection that never broke, was not routed")
            unrouted += 1  # written into a connection that broke: as with any broker
            continue
        if AMAZONMQ in fact["targets"] and a.trace not in confirmed | fell_back | failed | rejected:
            v.append(f"{a.trace}: its Amazon MQ part has no outcome")
        if a.trace in rejected:
            where = [b for b in (LEGACY, AMAZONMQ) if found[b][a.trace]]
            if where and a.trace not in doubted:
                v.append(f"{a.trace} rejected (not possibly stored), yet on {where}")
            continue
        home = LEGACY if a.trace in fell_back else str(fact["primary"])
        if home == AMAZONMQ and a.trace not in confirmed:
            continue  # no outcome: named above
        if not found[home][a.trace]:
            v.append(f"{a.trace} is not on {home}, and no fact says it failed")
        if len(fact["targets"]) == 2:  # a mirror copy
            if a.trace in confirmed and not found[AMAZONMQ][a.trace]:
                v.append(f"{a.trace}: its copy was confirmed, yet is not on amazonmq")
            if a.trace in failed - doubted and found[AMAZONMQ][a.trace]:
                v.append(f"{a.trace}: its copy failed (not possibly stored), yet is on amazonmq")
    if unrouted:
        row.facts += f", lost with their connection {unrouted}"

    # 3. every copy is explained; 4. the story
    _explain_copies(cell, row, facts, found, lambda trace: False)
    row.story += _story(cell, facts, p)


# -- transactions under faults ------------------------------------------------------------

TX_MODES = ("mirror", "split-legacy", "cutover-legacy", "cutover-reject")
TX_FAULTS: dict[str, str] = {
    "amq_killed": "Amazon MQ SIGKILLed while a transaction is open, then restarted",
    "amq_stall": "the network to Amazon MQ stops forwarding while a transaction is open, until"
    " the proxy reports Amazon MQ unavailable (heart-beats), then flows again (relay)",
    "legacy_killed": "legacy SIGKILLed while a transaction is open, then restarted",
    "proxy_killed": "the proxy (`strangler run`) SIGKILLed while a transaction is open and"
    " started again on the same port",
    "legacy_lost_at_commit": "the proxy's connection to legacy dropped once the COMMIT is on its"
    " way to legacy (after Amazon MQ confirmed its part): legacy never gets it (relay)",
    "legacy_killed_at_commit": "legacy SIGKILLed while the COMMIT is on its way to Amazon MQ"
    " (held 1 s by a relay), then restarted",
}
AT_COMMIT = ("legacy_lost_at_commit", "legacy_killed_at_commit")
COMMIT_HELD = 1.0  # legacy_killed_at_commit: how long the relay holds the COMMIT to Amazon MQ
TX_SIZE = 4  # SENDs per transaction, in two halves
TX_ABORT_EVERY = 4  # every 4th transaction is ABORTed
TX_FIRST = 4  # transactions before the fault
TX_DURING = 3  # transaction attempts begun under the fault (at least)
TX_LAST = 4  # transactions after every broker recovered
TX_PACE = 0.1  # during the fault and until recovery: a pause between transactions
# Facts left out of a transactional cell's printout (shown on failure).
TX_ROUTINE = ("message_routed", "message_confirmed", "message_mirror_failed")


def _tx_cells() -> list[Any]:
    return [
        pytest.param(mode, fault, id=f"tx-{mode}-{fault}")
        for fault in TX_FAULTS
        for mode in TX_MODES
    ]


@dataclass
class TxRow:
    mode: str
    fault: str
    transactions: int = 0  # logical transactions (each retried until it ended as meant)
    outcomes: Counter[str] = field(default_factory=Counter)  # transaction attempts by outcome
    messages: int = 0  # messages of transactions meant to be committed
    attempts: int = 0  # SENDs written (retries included)
    receipted: int = 0  # messages of transactions whose COMMIT got its RECEIPT
    on_legacy: int = 0
    on_amazonmq: int = 0
    duplicates: int = 0
    errors: int = 0
    reconnects: int = 0
    facts: str = ""
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    story: list[str] = field(default_factory=list)

    @property
    def promise(self) -> str:
        return "holds" if not self.violations else "**broken**: " + "; ".join(self.violations[:2])

    @property
    def told(self) -> str:
        return "yes" if not self.story else "**no**: " + "; ".join(self.story[:3])

    @property
    def ended(self) -> str:
        """Transaction attempts: committed / aborted / failed (ERROR, closed) / in doubt."""
        o = self.outcomes
        failed = sum(n for k, n in o.items() if k not in ("committed", "aborted", "in doubt"))
        return f"{o['committed']} / {o['aborted']} / {failed} / {o['in doubt']}"


@pytest.mark.parametrize(("mode", "fault"), _tx_cells())
def test_fault_matrix_transactions(
    fault_report: Report, bed: Bed, mode: str, fault: str, tmp_path: Path
) -> None:
    """A transactional producer through one route while a fault hits an open transaction."""
    started = time.monotonic()
    cell_id = f"tx-{mode}-{fault}"
    row = TxRow(mode, fault)
    fault_report.tx_rows[cell_id] = row
    dest = unique_queue(f"fm.{cell_id}")
    relay_legacy, relay_amazonmq, proxy = _open_cell(
        bed,
        tmp_path,
        dest,
        mode,
        fault,
        legacy_relay=fault == "legacy_lost_at_commit",
        amazonmq_relay=fault in ("amq_stall", "legacy_killed_at_commit"),
    )
    producer = TxProducer(
        proxy.address,
        dest,
        bed.legacy.username,
        bed.legacy.password,
        size=TX_SIZE,
        abort_every=TX_ABORT_EVERY,
        pace=TX_PACE,
        receipt_timeout=RECEIPT_TIMEOUT,
        retry=RETRY,
        deadline=DEADLINE,
    )
    cell = Cell(mode, fault, bed, proxy, producer, relay_legacy, relay_amazonmq)
    stopped = False
    try:
        producer.start()
        producer.add(TX_FIRST, "first")
        assert producer.wait(lambda p: p.finished("first") == TX_FIRST, 30), (
            "the cell's first transactions did not end before any fault"
        )
        producer.hold_next("end" if fault in AT_COMMIT else "half")
        producer.add(1, "held")
        assert producer.wait(lambda p: p.held, 15), "no transaction was held open"
        cell.injected_at = time.monotonic()
        if fault in AT_COMMIT:
            _break_at_commit(cell)
        else:
            _break(cell)
            producer.pace("during")
            producer.release()
        effect = _tx_hold(cell)
        _finish_cell(cell, producer, proxy, row, effect, TX_LAST)
        stopped = True
    finally:
        _clean_up_cell(bed, producer, proxy, stopped, (relay_legacy, relay_amazonmq))
    facts = proxy.facts()
    _analyse_tx(cell, row, facts, drain(bed.legacy, dest), drain(bed.amazonmq, dest))
    row.seconds = time.monotonic() - started
    _judge_cell(cell_id, row, facts, TX_ROUTINE, 80)


def _break_at_commit(cell: Cell) -> None:
    """Let the held transaction's COMMIT go, and break the path it is on."""
    producer: TxProducer = cell.producer
    relay = cell.relay_legacy if cell.fault == "legacy_lost_at_commit" else cell.relay_amazonmq
    assert relay is not None
    # Hold whatever the proxy writes next on that path: the COMMIT (nothing else is sent).
    relay.slow(60.0 if cell.fault == "legacy_lost_at_commit" else COMMIT_HELD)
    before = relay.stats.read_up
    producer.pace("during")
    producer.release()
    assert _wait_until(lambda: relay.stats.read_up > before, HOLD), "the COMMIT never left"
    if cell.fault == "legacy_lost_at_commit":
        relay.pass_through()  # for the connections that come next
        relay.sever()  # the held COMMIT is dropped with the connection
    else:
        brokers.kill(cell.bed.legacy.name)


def _tx_hold(cell: Cell) -> bool:
    """Keep the fault until its effect shows and transactions ran under it."""
    fault, producer = cell.fault, cell.producer

    def traffic() -> bool:
        return bool(producer.attempts_since(cell.injected_at) >= TX_DURING)

    if fault in ("legacy_killed", "legacy_killed_at_commit"):
        return _wait_until(lambda: cell.seen("broker_unavailable", broker=LEGACY), HOLD)
    if fault in ("proxy_killed", "legacy_lost_at_commit"):
        return bool(producer.wait(lambda p: p.lost > 0, HOLD))
    if fault == "amq_stall":  # the open transaction waits meanwhile: heal once noticed
        return _wait_until(lambda: cell.seen("broker_unavailable", broker=AMAZONMQ), HOLD)
    return _wait_until(lambda: traffic() and cell.seen("broker_unavailable", broker=AMAZONMQ), HOLD)


def _open_cell(
    bed: Bed,
    tmp_path: Path,
    dest: str,
    mode: str,
    fault: str,
    *,
    legacy_relay: bool,
    amazonmq_relay: bool,
) -> tuple[Relay | None, Relay | None, Proxy]:
    """The cell's relays (for the faults that need one), its routes file and its proxy
    (a `strangler run` process when the fault kills the proxy)."""
    bed.ensure_up()
    relay_legacy = Relay(bed.legacy.port).start() if legacy_relay else None
    relay_amazonmq = Relay(bed.amazonmq.port).start() if amazonmq_relay else None
    routes_file = _write_routes(
        bed,
        tmp_path,
        dest,
        mode,
        to_legacy=relay_legacy,
        to_amazonmq=relay_amazonmq,
        heartbeat_ms=HUNG_HEARTBEAT_MS if fault == "amq_hung" else HEARTBEAT_MS,
    )
    proxy: Proxy
    if fault in ("proxy_killed", "proxy_sigterm"):
        proxy = CliProxy(routes_file, tmp_path)
    elif fault == "amq_hung":
        proxy = InProcessProxy(routes_file, tmp_path / "facts.jsonl", confirm_timeout=HUNG_DEADLINE)
    else:
        proxy = InProcessProxy(routes_file, tmp_path / "facts.jsonl")
    return relay_legacy, relay_amazonmq, proxy


def _judge_cell(
    cell_id: str,
    row: Row | TxRow,
    facts: list[dict[str, Any]],
    routine: tuple[str, ...],
    most: int | None = None,
) -> None:
    """Shown on failure (or with -s): the row and the facts but the routine ones (at most
    ``most``); then the promise and the story must hold."""
    print(f"{cell_id}: {row}")
    for fact in [f for f in facts if f["event"] not in routine][:most]:
        print(fact)
    assert not row.violations, "the promise is broken:\n" + "\n".join(row.violations)
    assert not row.story, "the facts do not tell the story:\n" + "\n".join(row.story)


def _finish_cell(
    cell: Cell,
    producer: Producer | TxProducer,
    proxy: Proxy,
    row: Row | TxRow,
    effect: bool,
    last: int,
) -> None:
    """After the fault's hold: heal it, wait for recovery, let the producer send its last
    messages and finish, stop the proxy, and note what the run did not show."""
    _heal(cell)
    producer.pace("after")
    recovered = _wait_until(lambda: _recovered(cell), RECOVERY)
    producer.pace(None)
    producer.add(last, "last")
    producer.finish()
    proxy.stop()
    if not effect:
        row.story.append("the fault's effect never showed in the facts")
    if not recovered:
        row.story.append(f"no broker_recovered within {RECOVERY:g} s of healing")
    if producer.is_alive():
        row.violations.append("the producer did not finish")


def _clean_up_cell(
    bed: Bed,
    producer: Producer | TxProducer,
    proxy: Proxy,
    stopped: bool,
    relays: tuple[Relay | None, ...],
) -> None:
    """Whatever happened: no producer left running, the proxy stopped, Amazon MQ's
    password as the test bed has it, relays closed, both brokers up for the next cell."""
    if producer.is_alive():
        producer.abort()
    if not stopped:
        with contextlib.suppress(Exception):
            proxy.stop()
    os.environ[AMQ_PASSWORD_ENV] = bed.amazonmq.password
    for relay in relays:
        if relay is not None:
            relay.close()
    bed.ensure_up()


def _analyse_tx(
    cell: Cell,
    row: TxRow,
    facts: list[dict[str, Any]],
    on_legacy: list[StompFrame],
    on_amazonmq: list[StompFrame],
) -> None:
    p: TxProducer = cell.producer
    found = {
        LEGACY: Counter(m.headers.get(TRACE, "") for m in on_legacy),
        AMAZONMQ: Counter(m.headers.get(TRACE, "") for m in on_amazonmq),
    }
    killed = cell.conn_at_kill
    verdict = promise.check(
        p.sent, found, facts, lost_with_proxy=lambda conn: killed is not None and conn <= killed
    )
    row.violations += verdict.violations
    if p.crash is not None:
        row.violations.append(f"producer crashed: {p.crash!r}")
    if p.gave_up:
        row.violations.append(f"producer {p.gave_up}")
    row.transactions = len(p.groups)
    row.outcomes = verdict.tx
    row.messages, row.attempts = verdict.messages, verdict.attempts
    row.receipted = verdict.receipted
    row.on_legacy, row.on_amazonmq = verdict.on[LEGACY], verdict.on[AMAZONMQ]
    row.duplicates = verdict.duplicates
    row.errors = len(p.sent.errors)
    row.reconnects = max(0, p.connections - 1)
    row.facts = _summarise(facts, cell.fault)
    for event in ("transaction_committed", "transaction_aborted", "transaction_partial_commit"):
        n = sum(1 for f in facts if f["event"] == event)
        if n:
            row.facts += f", {event.removeprefix('transaction_')} {n}"
    if verdict.facts_lost:
        row.facts += f", copies whose facts died with the proxy {verdict.facts_lost}"
    row.facts = row.facts.removeprefix("—, ")
    row.story += _tx_story(cell, facts, p)


def _tx_story(cell: Cell, facts: list[dict[str, Any]], p: TxProducer) -> Iterator[str]:
    mode, fault = cell.mode, cell.fault
    killed = cell.conn_at_kill

    def count(event: str, **match: Any) -> int:
        return sum(
            1 for f in facts if f["event"] == event and all(f.get(k) == v for k, v in match.items())
        )

    def in_tx(event: str) -> int:
        return sum(1 for f in facts if f["event"] == event and f.get("transaction"))

    failures = ("message_fell_back", "message_rejected", "message_mirror_failed")
    held = next(g for g in p.groups if g.phase == "held")
    first_try = held.attempts[0].outcome if held.attempts else "not run"
    if fault in ("amq_killed", "amq_stall"):
        for event in ("broker_unavailable", "broker_recovered"):
            if not count(event, broker=AMAZONMQ):
                yield f"no {event} for amazonmq"
        expected = {
            "mirror": "message_mirror_failed",
            "split-legacy": "message_fell_back",
            "cutover-legacy": "message_fell_back",
            "cutover-reject": "message_rejected",
        }[mode]
        if not (in_tx(expected) if expected != "message_mirror_failed" else count(expected)):
            yield f"no {expected} for a transaction's message"
        for other in failures:
            if other != expected and count(other):
                yield f"unexpected {other} x{count(other)}"
        if count("message_resent"):
            yield "transaction frames were resent (they must not be: the broker rolled back)"
        if mode == "cutover-reject":
            if first_try != "error" or not p.sent.errors:
                yield f"reject mode: the open transaction ended {first_try}, not with an ERROR"
        else:
            if first_try != "committed":
                yield f"the open transaction ended {first_try}: the fault should be absorbed"
            if p.sent.errors or p.lost:
                yield f"producer saw {len(p.sent.errors)} ERRORs and {p.lost} lost connections"
    if fault == "legacy_killed":
        for event in ("broker_unavailable", "broker_recovered"):
            if not count(event, broker=LEGACY):
                yield f"no {event} for legacy"
        if not count("client_refused"):
            yield "no client_refused while legacy was down"
        if first_try == "committed":
            yield "the open transaction committed although legacy died under it"
    if fault == "proxy_killed":
        if count("proxy_started") != 2:
            yield f"proxy_started x{count('proxy_started')}, expected one per process"
        if first_try == "committed" or p.connections < 2:
            yield "the open transaction survived the proxy's death"
        if p.sent.errors:
            yield f"producer got {len(p.sent.errors)} ERRORs"
    spans = mode != "mirror"  # Amazon MQ's part is committed first, then legacy's
    first = held.attempts[0]
    partial = {str(f.get("transaction")) for f in facts if f["event"].endswith("partial_commit")}
    if fault == "legacy_lost_at_commit":
        if first_try == "committed":
            yield "the held COMMIT was answered although legacy never got it"
        if spans != (first.id in partial):
            yield f"transaction_partial_commit for {first.id}: {not spans}, expected {spans}"
        # A mirror's copies: Amazon MQ's COMMIT was unconfirmed when the session closed.
        copies = set(first.traces) if mode == "mirror" else set()
        for event in (*failures, "broker_unavailable", "client_refused"):
            n = sum(1 for f in facts if f["event"] == event and f.get("trace_id") not in copies)
            if n:
                yield f"unexpected {event} x{n}"
    if fault == "legacy_killed_at_commit":
        for event in ("broker_unavailable", "broker_recovered"):
            if not count(event, broker=LEGACY):
                yield f"no {event} for legacy"
        # The session closed while Amazon MQ's COMMIT was on its way; Amazon MQ then
        # confirmed it: its part is committed, legacy's never will be.
        gone = [
            f
            for f in facts
            if f["event"] == "message_fell_back" and f.get("transaction") == first.id
        ]
        if gone:
            yield f"{len(gone)} messages of {first.id} 'fell back' after its session closed"
        if spans and first_try != "committed" and first.id not in partial:
            yield f"no transaction_partial_commit for {first.id} (Amazon MQ committed it)"
    if not held.committed:
        yield "the open transaction was never committed, even when retried"
    # Every ABORT and every COMMIT spanning both brokers that was answered has its fact.
    aborted = {str(f.get("transaction")) for f in facts if f["event"] == "transaction_aborted"}
    committed = {str(f.get("transaction")) for f in facts if f["event"] == "transaction_committed"}
    fell_back = {str(f.get("trace_id")) for f in facts if f["event"] == "message_fell_back"}
    routed = {str(f["trace_id"]): f for f in facts if f["event"] == "message_routed"}
    for t in p.sent.transactions:
        if killed is not None and t.conn <= killed:
            continue  # its facts may have died with the proxy
        if t.outcome == "aborted" and t.id not in aborted:
            yield f"ABORT of {t.id} answered, no transaction_aborted"
        moved = [
            tr
            for tr in t.traces
            if routed.get(tr, {}).get("primary") == AMAZONMQ and tr not in fell_back
        ]
        if t.outcome == "committed" and moved and t.id not in committed:
            yield f"COMMIT of {t.id} (spanning both brokers) answered, no transaction_committed"
    for event in failures:  # one outcome, one fact
        per_trace = Counter(f.get("trace_id") for f in facts if f["event"] == event)
        twice = [t for t, n in per_trace.items() if n > 1]
        if twice:
            yield f"{event} more than once for {len(twice)} traces, e.g. {twice[0]}"
    # After recovery the route works as configured again.
    last = {tr for g in p.groups if g.phase == "last" for t in g.attempts for tr in t.traces}
    bad = [f for f in facts if f["event"] in failures and f.get("trace_id") in last]
    if bad:
        yield f"{len(bad)} failures after recovery, e.g. {bad[0]['event']}: {bad[0].get('reason')}"


# -- faults in combination, and a fault during a routes reload ------------------------------

# name -> (the route's mode, "before → after" when the routes file changes; what happens)
COMBOS: dict[str, tuple[str, str]] = {
    "amq_killed+reload": (
        "mirror → cutover-legacy",
        "Amazon MQ SIGKILLed; while it is down the routes file changes the route from mirror"
        " to cutover (hot reload); then Amazon MQ restarts",
    ),
    "legacy_restarted+amq_stall": (
        "cutover-legacy",
        "the network to Amazon MQ stalls until the proxy reports it unavailable; meanwhile"
        " legacy is stopped and started again; then Amazon MQ's network flows again",
    ),
    "amq_stall+reload": (
        "cutover-legacy → legacy",
        "the network to Amazon MQ stalls; the routes file rolls the route back to legacy"
        " (hot reload); then Amazon MQ's network flows again",
    ),
}


def _as_sent(p: Producer) -> promise.Sent:
    """What the plain producer saw, in the terms promise.check reads."""
    sent = promise.Sent()
    for m in p.messages.values():
        for a in m.attempts:
            sent.attempts.append(promise.Attempt(a.trace, a.msg, a.conn, a.outcome))
    sent.errors = [(e["receipt-id"], e["message"]) for e in p.errors]
    return sent


@dataclass
class Combo:
    """Both producers (plain and transactional) through one route, and the faults' levers."""

    cell: Cell
    plain: Producer
    tx: TxProducer
    routes_file: Path
    prefix: str

    def reroute(self, mode: str) -> bool:
        """Rewrite the routes file as an editor does (rename over it); True once applied."""
        bed = self.cell.bed
        relay = self.cell.relay_amazonmq
        text = _routes(
            self.prefix,
            mode,
            legacy_port=bed.legacy.port,
            amazonmq_port=relay.port if relay else bed.amazonmq.port,
            ca_file=str(bed.amazonmq.ca_file),
            match="prefix",
        )
        new = self.routes_file.with_suffix(".new")
        new.write_text(text)
        os.replace(new, self.routes_file)
        return _wait_until(lambda: self.cell.seen("routes_applied"), HOLD)

    def traffic(self, since: float) -> bool:
        """Both producers sent under the current conditions."""
        return self.plain.sent_since(since) >= DURING and self.tx.attempts_since(since) >= 2

    def down(self, broker: str) -> bool:
        return _wait_until(lambda: self.cell.seen("broker_unavailable", broker=broker), 30.0)


def _combo_faults(c: Combo) -> list[str]:
    """Run the combination; the steps whose effect never showed."""
    cell, bed, name = c.cell, c.cell.bed, c.cell.fault
    missed = []
    if name == "amq_killed+reload":
        brokers.kill(bed.amazonmq.name)
        if not c.down(AMAZONMQ):
            missed.append("Amazon MQ unavailable")
        if not c.reroute("cutover-legacy"):
            missed.append("routes_applied")
        since = time.monotonic()
        c.tx.release()
        c.tx.pace("during")
        if not _wait_until(lambda: c.traffic(since) and cell.seen("message_fell_back"), HOLD):
            missed.append("fallback under the new routes")
        brokers.start_one(bed.amazonmq.name, "tls", bed.amazonmq.port)
    elif name == "legacy_restarted+amq_stall":
        assert cell.relay_amazonmq is not None
        cell.relay_amazonmq.stall()
        c.tx.release()
        c.tx.pace("during")
        if not c.down(AMAZONMQ):
            missed.append("Amazon MQ unavailable")
        brokers.stop(bed.legacy.name)
        if not c.down(LEGACY):
            missed.append("legacy unavailable")
        brokers.start_one(bed.legacy.name, "plain", bed.legacy.port)
        since = time.monotonic()
        if not _wait_until(lambda: cell.seen("broker_recovered", broker=LEGACY), RECOVERY):
            missed.append("legacy recovered")
        if not _wait_until(lambda: c.traffic(since), RECOVERY):
            missed.append("traffic once legacy was back, Amazon MQ still stalled")
        cell.relay_amazonmq.pass_through()
    elif name == "amq_stall+reload":
        assert cell.relay_amazonmq is not None
        cell.relay_amazonmq.stall()
        c.tx.release()
        c.tx.pace("during")
        if not c.reroute("legacy"):
            missed.append("routes_applied")
        since = time.monotonic()
        if not c.down(AMAZONMQ):
            missed.append("Amazon MQ unavailable")
        if not _wait_until(lambda: c.traffic(since), HOLD):
            missed.append("traffic under the new routes")
        cell.relay_amazonmq.pass_through()
    return missed


@pytest.mark.parametrize("combo", list(COMBOS))
def test_fault_matrix_combined(fault_report: Report, bed: Bed, combo: str, tmp_path: Path) -> None:
    """Two faults at once, or a fault during a reload: both kinds of producer, one route."""
    started = time.monotonic()
    modes = COMBOS[combo][0].split(" → ")
    row = TxRow(COMBOS[combo][0], combo)
    fault_report.combo_rows[combo] = row
    bed.ensure_up()
    prefix = unique_queue(f"fm.{combo.replace('+', '-')}") + "."
    relay_amazonmq = Relay(bed.amazonmq.port).start() if "amq_stall" in combo else None
    routes_file = _write_routes(
        bed, tmp_path, prefix, modes[0], to_amazonmq=relay_amazonmq, match="prefix"
    )
    proxy = InProcessProxy(routes_file, tmp_path / "facts.jsonl", watch=True)
    login = (bed.legacy.username, bed.legacy.password)
    plain = Producer(proxy.address, f"{prefix}plain", *login)
    tx = TxProducer(
        proxy.address,
        f"{prefix}tx",
        *login,
        size=TX_SIZE,
        abort_every=TX_ABORT_EVERY,
        pace=TX_PACE,
        receipt_timeout=RECEIPT_TIMEOUT,
        retry=RETRY,
        deadline=DEADLINE + 30,
    )
    cell = Cell(modes[-1], combo, bed, proxy, tx, None, relay_amazonmq)
    c = Combo(cell, plain, tx, routes_file, prefix)
    stopped = False
    try:
        plain.start()
        tx.start()
        plain.add(FIRST, "first")
        tx.add(TX_FIRST, "first")
        assert plain.wait(lambda p: p.count("first", receipted=True) == FIRST, 30)
        assert tx.wait(lambda p: p.finished("first") == TX_FIRST, 30)
        tx.hold_next()
        tx.add(1, "held")
        assert tx.wait(lambda p: p.held, 15), "no transaction was held open"
        plain.pace("during")
        cell.injected_at = time.monotonic()
        missed = _combo_faults(c)
        plain.pace("after")
        tx.pace("after")
        # Under `legacy` nothing talks to Amazon MQ again: its recovery is never seen.
        recovered = modes[-1] == "legacy" or _wait_until(lambda: _recovered(cell), RECOVERY)
        plain.pace(None)
        tx.pace(None)
        plain.add(LAST, "last")
        tx.add(TX_LAST, "last")
        plain.finish()
        tx.finish()
        proxy.stop()
        stopped = True
        row.story += [f"the effect never showed: {m}" for m in missed]
        if not recovered:
            row.story.append(f"no broker_recovered within {RECOVERY:g} s of healing")
        if plain.is_alive() or tx.is_alive():
            row.violations.append("a producer did not finish")
    finally:
        for producer in (plain, tx):
            if producer.is_alive():
                producer.abort()
        if not stopped:
            with contextlib.suppress(Exception):
                proxy.stop()
        if relay_amazonmq is not None:
            relay_amazonmq.close()
        bed.ensure_up()
    facts = proxy.facts()
    on_legacy = drain(bed.legacy, f"{prefix}plain") + drain(bed.legacy, f"{prefix}tx")
    on_amazonmq = drain(bed.amazonmq, f"{prefix}plain") + drain(bed.amazonmq, f"{prefix}tx")
    sent = _as_sent(plain)
    sent.extend(tx.sent)
    for p in (plain, tx):
        if p.crash is not None:
            row.violations.append(f"producer crashed: {p.crash!r}")
        if p.gave_up:
            row.violations.append(f"producer {p.gave_up}")
    _fill_row(row, sent, tx, facts, on_legacy, on_amazonmq, combo)
    row.reconnects = max(0, plain.connections - 1) + max(0, tx.connections - 1)
    row.story += _combo_story(c, facts)
    row.seconds = time.monotonic() - started
    _judge_cell(combo, row, facts, TX_ROUTINE, 80)


def _fill_row(
    row: TxRow,
    sent: promise.Sent,
    tx: TxProducer,
    facts: list[dict[str, Any]],
    on_legacy: list[StompFrame],
    on_amazonmq: list[StompFrame],
    fault: str,
) -> None:
    found = {
        LEGACY: Counter(m.headers.get(TRACE, "") for m in on_legacy),
        AMAZONMQ: Counter(m.headers.get(TRACE, "") for m in on_amazonmq),
    }
    verdict = promise.check(sent, found, facts)
    row.violations += verdict.violations
    row.transactions = len(tx.groups)
    row.outcomes = verdict.tx
    row.messages, row.attempts = verdict.messages, verdict.attempts
    row.receipted = verdict.receipted
    row.on_legacy, row.on_amazonmq = verdict.on[LEGACY], verdict.on[AMAZONMQ]
    row.duplicates = verdict.duplicates
    row.errors = len(sent.errors)
    row.facts = _summarise(facts, fault)
    for event in ("routes_applied", "transaction_partial_commit"):
        n = sum(1 for f in facts if f["event"] == event)
        if n:
            row.facts += f", {event} {n}"
    row.facts = row.facts.removeprefix("—, ")


def _combo_story(c: Combo, facts: list[dict[str, Any]]) -> Iterator[str]:
    name = c.cell.fault

    def count(event: str, **match: Any) -> int:
        return sum(
            1 for f in facts if f["event"] == event and all(f.get(k) == v for k, v in match.items())
        )

    routed = {str(f["trace_id"]): f for f in facts if f["event"] == "message_routed"}
    versions = [f for f in facts if f["event"] == "routes_applied"]
    reloads = "reload" in name
    if reloads != bool(versions) or len(versions) > 1:
        yield f"routes_applied x{len(versions)}"
    held = next(g for g in c.tx.groups if g.phase == "held")
    if reloads and versions and held.attempts:
        # A transaction finishes under the routes it began with.
        old = versions[0]["previous_version"]
        first = held.attempts[0]
        others = {routed[t]["routes_version"] for t in first.traces if t in routed} - {old}
        if others:
            yield f"the open transaction {first.id} was routed under {others}, not {old}"
    for broker in (AMAZONMQ, *((LEGACY,) if "legacy_restarted" in name else ())):
        if not count("broker_unavailable", broker=broker):
            yield f"no broker_unavailable for {broker}"
    if name == "amq_killed+reload":
        for event in ("message_mirror_failed", "message_fell_back", "broker_recovered"):
            if not count(event):
                yield f"no {event}"
    if name == "legacy_restarted+amq_stall":
        for event in ("client_refused", "message_fell_back"):
            if not count(event):
                yield f"no {event}"
        if count("broker_recovered") < 2:
            yield "legacy and Amazon MQ did not both recover"
    if name == "amq_stall+reload" and not count("message_fell_back"):
        yield "no message_fell_back for what the stalled link held"
    # After recovery the route works as its last routes say.
    failures = ("message_fell_back", "message_rejected", "message_mirror_failed")
    last = {a.trace for m in c.plain.messages.values() if m.phase == "last" for a in m.attempts}
    last |= {tr for g in c.tx.groups if g.phase == "last" for t in g.attempts for tr in t.traces}
    bad = [f for f in facts if f["event"] in failures and f.get("trace_id") in last]
    if bad:
        yield f"{len(bad)} failures after recovery, e.g. {bad[0]['event']}: {bad[0].get('reason')}"
    final = c.cell.mode
    mode = MODES[final].split(",")[0].removeprefix("mode: ")
    wrong = [t for t in last if t in routed and routed[t]["mode"] != mode]
    if wrong:
        yield f"{len(wrong)} messages after recovery not routed as `{final}`, e.g. {wrong[0]}"


# -- a bug the matrix shows only by chance, reproduced on purpose --------------------------


def test_closing_session_does_not_report_amazonmq_unavailable(bed: Bed, tmp_path: Path) -> None:
    """Legacy drops a session while Amazon MQ frames are in flight: Amazon MQ was fine.

    The matrix's legacy_* cells hit this whenever Amazon MQ frames happen to be in
    flight when legacy goes; a slow Amazon MQ link makes sure they are.
    """
    bed.ensure_up()
    dest = unique_queue("fm.closing")
    with Relay(bed.legacy.port) as to_legacy, Relay(bed.amazonmq.port) as to_amazonmq:
        routes_file = _write_routes(
            bed, tmp_path, dest, "cutover-legacy", to_legacy=to_legacy, to_amazonmq=to_amazonmq
        )
        proxy = start_proxy(routes_file, tmp_path / "facts.jsonl")
        try:
            client = connect(proxy.host, proxy.port, bed.legacy.username, bed.legacy.password)
            persistent = {"persistent": "true"}
            assert client.wait_receipts([client.send(dest, "link up", headers=persistent)])
            to_amazonmq.slow(1.0)
            for i in range(3):
                client.send(dest, f"in flight {i}", headers=persistent)
            assert len(proxy.wait_fact("message_routed", 4)) == 4  # all handed to the link
            to_legacy.sever()  # legacy drops the session; Amazon MQ is merely slow
            assert proxy.wait_fact("client_disconnected")
            to_amazonmq.pass_through()
            client.close()
        finally:
            proxy.stop()
    drain(bed.legacy, dest)
    drain(bed.amazonmq, dest)
    unavailable = proxy.facts("broker_unavailable", broker=AMAZONMQ)
    assert not unavailable, f"Amazon MQ reported unavailable: {unavailable}"
    outcomes = [f for f in proxy.facts() if f["event"] in ("message_rejected", "message_fell_back")]
    assert all(f["reason"] != "connection closed by broker" for f in outcomes), outcomes


def test_commit_failing_after_session_closed_is_not_a_fallback(bed: Bed, tmp_path: Path) -> None:
    """Legacy drops a session whose Amazon MQ COMMIT is in flight, then that COMMIT fails.

    Nothing can fall back into a closed session: the moved messages are rejected (the
    producer got no receipt for the COMMIT), not reported as fallen back to legacy.
    """
    bed.ensure_up()
    dest = unique_queue("fm.closed-commit")
    with Relay(bed.legacy.port) as to_legacy, Relay(bed.amazonmq.port) as to_amazonmq:
        routes_file = _write_routes(
            bed, tmp_path, dest, "cutover-legacy", to_legacy=to_legacy, to_amazonmq=to_amazonmq
        )
        proxy = start_proxy(routes_file, tmp_path / "facts.jsonl")
        try:
            client = connect(proxy.host, proxy.port, bed.legacy.username, bed.legacy.password)
            client.conn.begin(transaction="t1")
            moved = client.send(dest, "moved", headers={"transaction": "t1", "persistent": "true"})
            assert client.wait_receipts([moved]), "Amazon MQ did not take the SEND"
            to_amazonmq.slow(60.0)  # the COMMIT to Amazon MQ is read and held
            before = to_amazonmq.stats.read_up
            client.conn.commit(transaction="t1", headers={"receipt": "commit-t1"})
            assert _wait_until(lambda: to_amazonmq.stats.read_up > before, HOLD)
            to_legacy.sever()  # the session ends while Amazon MQ's COMMIT is unanswered
            assert client.recorder.disconnected.wait(HOLD), "the session did not close"
            to_amazonmq.sever()  # and then that COMMIT fails: Amazon MQ rolls back
            outcome = proxy.wait_fact("message_rejected") + proxy.facts("message_fell_back")
        finally:
            proxy.stop()
    assert [f["event"] for f in outcome] == ["message_rejected"], outcome
    assert outcome[0]["transaction"] == "t1"
    assert "COMMIT not confirmed" in outcome[0]["reason"]
    assert "commit-t1" not in client.recorder.receipts
    assert drain(bed.legacy, dest) == [] and drain(bed.amazonmq, dest) == []


def test_recovered_broker_ends_the_backoff_of_other_sessions(bed: Bed, tmp_path: Path) -> None:
    """Amazon MQ is back (a new session reached it): a session in back-off uses it again.

    Found by the `amq_killed+reload` cell: with two producers, one session's messages
    kept falling back after `broker_recovered`, until its own back-off (up to 30 s) ran out.
    """
    bed.ensure_up()
    dest = unique_queue("fm.backoff")
    persistent = {"persistent": "true"}
    with Relay(bed.amazonmq.port) as to_amazonmq:
        routes_file = _write_routes(bed, tmp_path, dest, "cutover-legacy", to_amazonmq=to_amazonmq)
        proxy = start_proxy(routes_file, tmp_path / "facts.jsonl")
        try:
            login = (proxy.host, proxy.port, bed.legacy.username, bed.legacy.password)
            first = connect(*login)
            assert first.wait_receipts([first.send(dest, "before", headers=persistent)])
            to_amazonmq.cut()
            assert proxy.wait_fact("broker_unavailable", broker=AMAZONMQ)
            to_amazonmq.pass_through()
            (session,) = proxy.server.sessions
            link = session._link
            assert link is not None and link.in_backoff
            link._down_until = time.monotonic() + 60  # a long back-off, whatever the timing
            second = connect(*login)
            assert second.wait_receipts([second.send(dest, "new", headers=persistent)])
            assert proxy.wait_fact("broker_recovered", broker=AMAZONMQ)
            after = first.send(dest, "after", headers=persistent)
            assert first.wait_receipts([after])
            first.close()
            second.close()
        finally:
            proxy.stop()
    assert proxy.facts("message_fell_back") == []
    on_amazonmq = sorted(m.body for m in drain(bed.amazonmq, dest))
    assert on_amazonmq == [b"after", b"before", b"new"]
    assert drain(bed.legacy, dest) == []


# -- the relay itself -------------------------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _ends(sock: socket.socket) -> bool:
    """True if the peer closed or reset ``sock`` (within the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def test_relay_passes_slows_stalls_severs_and_cuts() -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo) as echo:
        echo.daemon_threads = True
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        try:
            with Relay(echo.server_address[1]) as relay:
                client = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
                client.sendall(b"pass")
                assert _read(client, 4) == b"pass"

                relay.slow(0.2)
                started = time.monotonic()
                client.sendall(b"slow")
                assert _read(client, 4) == b"slow"
                assert time.monotonic() - started >= 0.4  # held each way

                relay.stall()
                client.sendall(b"held")
                client.sendall(b"-in-order")
                client.settimeout(0.3)  # checking that nothing arrives needs some wait
                with pytest.raises(TimeoutError):
                    client.recv(1)
                client.settimeout(5)
                relay.pass_through()
                assert _read(client, 13) == b"held-in-order"

                assert relay.sever() == 1
                assert _ends(client)
                again = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
                again.sendall(b"next")
                assert _read(again, 4) == b"next"

                relay.cut()
                assert _ends(again)
                refused = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
                assert _ends(refused)
                relay.pass_through()
                back = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
                back.sendall(b"back")
                assert _read(back, 4) == b"back"
                assert relay.stats.severed == 2 and relay.stats.refused == 1
                for sock in (client, again, refused, back):
                    sock.close()
        finally:
            echo.shutdown()


def test_docs_reliability_has_a_row_for_every_cell() -> None:
    """docs/reliability.md is written only by a whole-matrix run with
    STRANGLER_WRITE_RELIABILITY=1, so a cell added without a regeneration leaves it
    silently stale (it once missed 19 cells): name each missing row."""
    text = (REPO_DIR / "docs" / "reliability.md").read_text()
    cells = [p.values for p in _cells()] + [p.values for p in _tx_cells()]
    missing = [
        f"{fault} x {mode}" for mode, fault in cells if f"| `{fault}` | `{mode}` |" not in text
    ]
    missing += [
        f"{fault} x {mode}, no receipts"
        for mode, fault in (p.values for p in _rl_cells())
        if f"| `{fault}`, no receipts | `{mode}` |" not in text
    ]
    missing += [combo for combo in COMBOS if f"| `{combo}` |" not in text]
    assert not missing, f"regenerate docs/reliability.md (its module docstring says how): {missing}"
