"""The cutover ledger's acceptance: a fleet of three proxies, one killed, Amazon MQ killed.

Three ``strangler run`` processes, each with its own facts file and its own producer
(persistent messages, a receipt for each, at most ``WINDOW`` unconfirmed), route four
queues (legacy, mirror, split, cutover with fallback) to a pair of brokers of this
test's own. Under load, Amazon MQ is SIGKILLed (the routes fall back and copies fail
from then on; it is started again for the drain at the end); then proxy 0's link to
legacy stops forwarding (a relay), its producer fills its window, and proxy 0 is
SIGKILLed once its facts file holds every fact up to that moment. The other two go on,
stop cleanly, and both brokers are drained.

``strangler audit`` over the three files must report: the promise holds; exactly the
messages proxy 0's producer had in flight at the kill unresolved (lost with the proxy);
every other message resolved; and, message by message, the brokers hold what the facts
say (a copy beyond that only where a fact puts the message in doubt).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strangler.cli import main
from strangler.ledger import FactReader, Journey, Ledger

from . import brokers
from .brokers import REPO_DIR, BrokerInfo, free_port
from .faults import Relay
from .harness import connect, drain
from .producer_thread import ProducerThread

pytestmark = pytest.mark.integration

WINDOW = 8
PACE = 0.004  # seconds between a producer's SENDs: load, without flooding the drain
TRACE = "strangler-trace-id"
ID = "fleet-id"  # the producer's id of a message, kept by both brokers
AMQ_USER, AMQ_PASSWORD = "STRANGLER_FLEET_AMQ_USER", "STRANGLER_FLEET_AMQ_PASSWORD"
WAIT = 30.0
QUEUES = ("legacy", "mirror", "split", "cutover")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[BrokerInfo, BrokerInfo]]:
    prefix = f"fleet-{uuid.uuid4().hex[:6]}"
    legacy, amazonmq = brokers.start_pair(prefix)
    saved = {k: os.environ.get(k) for k in (AMQ_USER, AMQ_PASSWORD)}
    os.environ[AMQ_USER], os.environ[AMQ_PASSWORD] = amazonmq.username, amazonmq.password
    try:
        yield legacy, amazonmq
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        brokers.remove_pair(prefix)


def routes(
    legacy_port: int, amazonmq: BrokerInfo, queues: dict[str, str], amazonmq_port: int = 0
) -> str:
    return (
        "brokers:\n"
        f"  legacy: {{url: 'stomp://127.0.0.1:{legacy_port}'}}\n"
        "  amazonmq:\n"
        f"    url: stomp+ssl://127.0.0.1:{amazonmq_port or amazonmq.port}\n"
        f"    ca_file: {amazonmq.ca_file}\n"
        f"    credentials: {{username_env: {AMQ_USER}, password_env: {AMQ_PASSWORD}}}\n"
        "    heartbeat_ms: 1000\n"
        "routes:\n"
        f"  - {{name: kept, match: {{exact: '{queues['legacy']}'}}, mode: legacy}}\n"
        f"  - {{name: mirrored, match: {{exact: '{queues['mirror']}'}}, mode: mirror}}\n"
        f"  - {{name: halved, match: {{exact: '{queues['split']}'}}, mode: split,"
        " weight: 50, on_failure: legacy}\n"
        f"  - {{name: moved, match: {{exact: '{queues['cutover']}'}}, mode: cutover,"
        " on_failure: legacy}\n"
    )


class FleetProxy:
    """``strangler run`` as a child process with its own facts file."""

    def __init__(self, index: int, routes_file: Path, workdir: Path, env: dict[str, str]) -> None:
        self.facts = workdir / f"facts{index}.jsonl"
        self.port = free_port()
        self.stderr = workdir / f"stderr{index}.log"
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "strangler",
                    "run",
                    "--routes",
                    str(routes_file),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--admin",
                    "off",
                    "--no-watch",
                    "--facts",
                    str(self.facts),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=REPO_DIR,
                env={**os.environ, **env},
            )
        if not until(lambda: "listening on" in self.stderr.read_text(), WAIT):
            self.process.kill()
            raise RuntimeError(f"strangler run did not start: {self.stderr.read_text()}")

    def read(self) -> list[dict[str, Any]]:
        if not self.facts.exists():
            return []
        found = []
        for line in self.facts.read_text().splitlines():
            if line.endswith("}"):  # a line being written is read next time
                found.append(json.loads(line))
        return found

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(WAIT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)


class FleetProducer(ProducerThread):
    """Sends to the four queues in turn, WINDOW receipts outstanding at most, until told to
    stop (then waits for its receipts and DISCONNECTs) or until its connection ends."""

    def __init__(self, index: int, port: int, login: tuple[str, str], queues: list[str]) -> None:
        super().__init__(f"fleet-producer-{index}", ("127.0.0.1", port), *login, WAIT)
        self.index = index
        self.queues = queues
        self.sent: dict[str, str] = {}  # id -> queue
        self.stop = threading.Event()
        self.in_flight: set[str] | None = None  # what was unconfirmed when the proxy died

    @property
    def receipted(self) -> set[str]:
        with self.cond:
            return set(self._state.get("receipts", ())) & set(self.sent)

    def outstanding(self) -> set[str]:
        with self.cond:
            return set(self.sent) - set(self._state.get("receipts", ()))

    def _may_send(self) -> bool:
        state = self._state
        return bool(
            state["closed"]
            or state["error"]
            or self.stop.is_set()
            or len(set(self.sent) - state["receipts"]) < WINDOW
        )

    def _loop(self) -> None:
        assert self._connect(), "the producer could not connect"
        n = 0
        while True:
            with self.cond:
                self.cond.wait_for(self._may_send, WAIT)
                state = self._state
                if state["closed"] or state["error"]:
                    self.in_flight = set(self.sent) - state["receipts"]
                    return
                if self.stop.is_set():
                    break
            message_id = f"p{self.index}-{n:05d}"
            queue = self.queues[n % len(self.queues)]
            n += 1
            with self.cond:
                self.sent[message_id] = queue
            try:
                self._conn.send(
                    queue,
                    message_id.encode(),
                    headers={
                        "receipt": message_id,
                        TRACE: message_id,
                        ID: message_id,
                        "persistent": "true",
                    },
                )
            except Exception:  # stomp.py: the connection is gone (noticed on the next turn)
                with self.cond:
                    self._state["closed"] = True
            self.stop.wait(PACE)
        with self.cond:
            state = self._state
            self.cond.wait_for(lambda: set(self.sent) <= state["receipts"], WAIT)
        self._disconnect()


def until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def producer_id(fact: dict[str, Any]) -> str:
    """The producer's id of a message: recorded beside strangler's own trace id, or as it
    (proxies that kept a producer's trace id as theirs)."""
    return str(fact.get("producer_trace_id") or fact["trace_id"])


def complete_up_to_now(facts: list[dict[str, Any]], producer: FleetProducer, mirror: str) -> bool:
    """The facts file holds every fact of what ``producer`` saw (a message_routed for each
    SEND, the confirmation behind each receipt, an outcome for each mirror copy), and
    what it still waits for can only come from legacy (stalled): nothing more will
    happen until the kill."""
    ids = {f["trace_id"]: producer_id(f) for f in facts if f["event"] == "message_routed"}
    if set(producer.sent) - set(ids.values()):
        return False
    to_legacy = {
        ids.get(f["trace_id"])
        for f in facts
        if (f["event"] == "message_routed" and f["primary"] == "legacy")
        or f["event"] == "message_fell_back"
    }
    if not producer.outstanding() <= to_legacy:
        return False
    confirmed = {
        ids.get(f["trace_id"])
        for f in facts
        if f["event"] == "message_confirmed" and f.get("role", "primary") == "primary"
    }
    copies = {
        ids.get(f["trace_id"])
        for f in facts
        if (f["event"] == "message_confirmed" and f.get("role") == "mirror")
        or f["event"] == "message_mirror_failed"
    }
    mirrored = {m for m, q in producer.sent.items() if q == mirror}
    return producer.receipted <= confirmed and mirrored <= copies


def test_audit_of_a_fleet_with_a_killed_proxy_and_a_killed_amazonmq(
    pair: tuple[BrokerInfo, BrokerInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy, amazonmq = pair
    queues = {name: f"/queue/fleet-{name}.{uuid.uuid4().hex[:8]}" for name in QUEUES}
    stalled = Relay(legacy.port).start()  # proxy 0 reaches legacy through it
    fleet: list[FleetProxy] = []
    producers: list[FleetProducer] = []
    try:
        for index in range(3):
            routes_file = tmp_path / f"routes{index}.yaml"
            port = stalled.port if index == 0 else legacy.port
            routes_file.write_text(routes(port, amazonmq, queues))
            fleet.append(FleetProxy(index, routes_file, tmp_path, {}))
        login = (legacy.username, legacy.password)
        producers = [
            FleetProducer(i, proxy.port, login, list(queues.values()))
            for i, proxy in enumerate(fleet)
        ]
        for producer in producers:
            producer.start()
        assert until(lambda: all(len(p.receipted) >= 40 for p in producers), WAIT)

        # Amazon MQ killed under load: fallbacks and failed copies from here on (it is
        # started again for the drain, at the end).
        brokers.kill(amazonmq.name)
        failing = ("message_fell_back", "message_mirror_failed")
        assert until(lambda: all(any(f["event"] in failing for f in p.read()) for p in fleet), WAIT)

        # Proxy 0: legacy stops answering, its producer's window fills, then it is killed.
        stalled.stall()
        victim = producers[0]
        assert until(lambda: len(victim.outstanding()) == WINDOW, WAIT)
        assert until(lambda: complete_up_to_now(fleet[0].read(), victim, queues["mirror"]), WAIT)
        in_flight = victim.outstanding()
        fleet[0].kill()
        victim.join(WAIT)
        assert victim.in_flight == in_flight

        # The others go on, then stop cleanly.
        sent_before = [len(p.sent) for p in producers[1:]]
        assert until(
            lambda: all(
                len(p.receipted) >= before + 40
                for p, before in zip(producers[1:], sent_before, strict=True)
            ),
            WAIT,
        )
        for producer in producers[1:]:
            producer.stop.set()
        for producer in producers[1:]:
            producer.join(WAIT)
            assert producer.done and producer.crash is None
        for proxy in fleet[1:]:
            proxy.stop()
        brokers.start_one(amazonmq.name, "tls", amazonmq.port)  # for the drain
    finally:
        for producer in producers:
            producer.stop.set()
            producer.aborted = True
        for proxy in fleet:
            proxy.stop()
        stalled.close()

    files = [str(proxy.facts) for proxy in fleet]
    sent = {m: q for p in producers for m, q in p.sent.items()}
    on: dict[str, Counter[str]] = {"legacy": Counter(), "amazonmq": Counter()}
    for name, held_by in (("legacy", legacy), ("amazonmq", amazonmq)):
        for queue in queues.values():
            for message in drain(held_by, queue):
                on[name][message.headers[ID]] += 1
    assert set(on["legacy"]) | set(on["amazonmq"]) <= set(sent), "a copy no producer sent"

    # -- strangler audit over the three files -----------------------------------------------
    code = main(["audit", "--json", "--no-progress", *files])
    report = json.loads(capsys.readouterr().out)
    assert report["violations"]["listed"] == []
    assert code == 0 and report["promise"] == "holds"
    unresolved = {producer_id(m): m for m in report["unresolved"]["messages"]}
    # What proxy 0 had in flight: unresolved, or stored on legacy (message_confirmed) with
    # its RECEIPT held behind an earlier unresolved one (a producer gets its receipts in
    # the order of its frames, so a fallback legacy never answered holds the rest).
    facts0 = fleet[0].read()
    ids = {f["trace_id"]: producer_id(f) for f in facts0 if f["event"] == "message_routed"}
    stored = {ids.get(f["trace_id"]) for f in facts0 if f["event"] == "message_confirmed"}
    held = in_flight - set(unresolved)
    assert unresolved and set(unresolved) <= in_flight
    assert held <= stored and all(m > min(unresolved) for m in held), (held, unresolved)
    assert {m["instance"] for m in unresolved.values()} == {f"{files[0]}#1"}
    assert all(m["lost_with_the_proxy"] and m["session"] == "s1" for m in unresolved.values())
    assert report["messages"] == len(sent)  # every message routed is in the report
    lines = [line for path in files for line in Path(path).read_text().splitlines()]
    routed = [json.loads(line) for line in lines if '"message_routed"' in line]
    assert len(routed) == len(sent) and report["input"]["replicas"] == 3
    # The per-route table adds up: every message is counted once, unresolved included.
    assert sum(r["messages"] for r in report["routes"]) == len(sent)
    assert sum(r["unresolved"] for r in report["routes"]) == len(unresolved)

    # -- message by message, the brokers hold what the facts say ---------------------------
    journeys = settled_journeys(files)
    assert len(journeys) == len(sent)
    mismatches = []
    for trace, j in journeys.items():
        message = producer_id(j.routed)
        legacy_copies, amazonmq_copies = on["legacy"][message], on["amazonmq"][message]
        if trace in {m["trace_id"] for m in unresolved.values()}:
            allowed = set(j.targets) | {"legacy"}  # a fallback may have been under way
            if (legacy_copies and "legacy" not in allowed) or amazonmq_copies > 1:
                mismatches.append(f"{message} unresolved, yet {legacy_copies}/{amazonmq_copies}")
            continue
        where = {"legacy": (1, 0), "amazonmq": (0, 1), "both": (1, 1), "none": (0, 0)}[j.where]
        doubt_legacy, doubt_amazonmq = ("legacy" in j.in_doubt), ("amazonmq" in j.in_doubt)
        for broker, want, copies, doubt in (
            ("legacy", where[0], legacy_copies, doubt_legacy),
            ("amazonmq", where[1], amazonmq_copies, doubt_amazonmq),
        ):
            if copies < want or (copies > want and not doubt):
                mismatches.append(
                    f"{message} ({j.rule}, {j.outcome}, mirror {j.mirror}): facts say "
                    f"{j.where}, {broker} holds {copies} (in doubt: {list(j.in_doubt)})"
                )
    assert mismatches == []

    # --trace shows an in-flight message's journey, lost with the proxy.
    lost = sorted(in_flight)[0]
    assert main(["audit", "--no-progress", "--trace", lost, *files]) == 0
    assert "lost with the proxy" in capsys.readouterr().out

    # -- the promise broken on purpose: a confirmation removed, or doubled -------------------
    clean = Path(files[1]).read_bytes().splitlines(keepends=True)
    confirmed = next(
        i
        for i, line in enumerate(clean)
        if b'"message_confirmed"' in line
        and b'"role":"primary"' in line
        and b'"broker":"amazonmq"' in line
    )
    trace = json.loads(clean[confirmed])["trace_id"]
    removed, doubled = tmp_path / "removed.jsonl", tmp_path / "doubled.jsonl"
    removed.write_bytes(b"".join(clean[:confirmed] + clean[confirmed + 1 :]))
    doubled.write_bytes(b"".join(clean[: confirmed + 1] + clean[confirmed:]))
    for broken in (removed, doubled):
        assert main(["audit", "--no-progress", str(broken)]) == 1
        out = capsys.readouterr().out
        assert trace in out and "the promise is BROKEN" in out


def settled_journeys(files: list[str]) -> dict[str, Journey]:
    """Every message of ``files`` as the audit judged it (the ledger audit runs on)."""
    reader = FactReader(files)
    found: dict[str, Journey] = {}
    ledger = Ledger(on_settled=lambda j: found.__setitem__(j.trace, j))
    reader.read(ledger)
    book = ledger.close()
    for j in book.unresolved:
        found[j.trace] = j
    return found


def test_verify_and_audit_name_mirror_copies_lost_with_a_killed_proxy(
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash cannot write facts: copies routed and never confirmed are found afterwards,
    by verify (missing on Amazon MQ, lost with the proxy) and by audit (unresolved)."""
    queues = {name: f"/queue/lost-{name}.{uuid.uuid4().hex[:8]}" for name in QUEUES}
    env = {AMQ_USER: amazonmq.username, AMQ_PASSWORD: amazonmq.password}
    slow = Relay(amazonmq.port).start()
    slow.stall()  # the copies wait in the proxy's memory
    proxy_routes, verify_routes = tmp_path / "proxy.yaml", tmp_path / "verify.yaml"
    proxy_routes.write_text(routes(legacy.port, amazonmq, queues, amazonmq_port=slow.port))
    verify_routes.write_text(routes(legacy.port, amazonmq, queues))
    proxy = FleetProxy(0, proxy_routes, tmp_path, env)
    try:
        producer = connect("127.0.0.1", proxy.port, legacy.username, legacy.password)
        sent = [producer.send(queues["mirror"], f"m{i}") for i in range(10)]
        assert producer.wait_receipts(sent)  # legacy confirmed each: the producer is done
        assert until(
            lambda: sum(f["event"] == "message_confirmed" for f in proxy.read()) == 10, WAIT
        )
        proxy.kill()
    finally:
        proxy.stop()
        slow.close()
    traces = sorted(f["trace_id"] for f in proxy.read() if f["event"] == "message_routed")
    assert len(traces) == 10

    for name, value in {
        **env,
        "STRANGLER_LEGACY_LOGIN": legacy.username,
        "STRANGLER_LEGACY_PASSCODE": legacy.password,
    }.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "verify-facts.jsonl"
    code = main(
        [
            "verify",
            queues["mirror"],
            "--routes",
            str(verify_routes),
            "--facts",
            str(out),
            "--proxy-facts",
            str(proxy.facts),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "result: MISMATCH" in err
    assert "missing, lost with the proxy (killed with the copy in memory" in err
    (verified,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert verified["missing_lost_with_proxy"] == 10 and verified["missing_mirror_failed"] == 0
    assert sorted(verified["lost_with_proxy_trace_ids"]) == traces

    assert main(["audit", "--json", "--no-progress", str(proxy.facts)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(m["trace_id"] for m in report["unresolved"]["messages"]) == traces
    (row,) = [r for r in report["routes"] if r["route"] == "mirrored"]
    assert row["mirror_lost"] == 10 and row["confirmed"] == 10 and row["unresolved"] == 10
    assert len(drain(legacy, queues["mirror"])) == 10
    assert drain(amazonmq, queues["mirror"]) == []
