"""Progressive cutover with real parts only: two ``strangler run`` proxies watching one
routes file, a real Prometheus scraping their /metrics, ``strangler rollout`` writing
that file, producers sending through both proxies, and a broker pair of our own (its
Amazon MQ stand-in is killed in the second run).

The proofs come from facts: each proxy's ``message_routed`` names the routes version it
decided under, and the controller's facts say which weight each version it wrote has.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from strangler.routes import parse_routes, split_bucket

from . import brokers, prometheus
from .brokers import BrokerInfo, free_port
from .harness import WAIT, Client, connect, drain, routes_yaml, unique_queue

pytestmark = pytest.mark.integration

PREFIX = "rollout"  # our own broker pair: rollout-legacy, rollout-amq
INTERVAL = 1.0  # seconds between controller passes
SCRAPE = 0.25  # Prometheus scrape interval, seconds
PACE = 0.01  # a producer sends about 100 messages a second
STEPS = [1, 10, 50, 100]

T = TypeVar("T")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[BrokerInfo, BrokerInfo]]:
    legacy, amazonmq = brokers.start_pair(PREFIX)
    os.environ["STRANGLER_TEST_AMQ_USER"] = amazonmq.username
    os.environ["STRANGLER_TEST_AMQ_PASSWORD"] = amazonmq.password
    yield legacy, amazonmq
    brokers.remove_pair(PREFIX)


@pytest.fixture(scope="module")
def admin_ports() -> list[int]:
    """Two proxies per run; Prometheus knows all four admin ports from the start."""
    return [free_port() for _ in range(4)]


@pytest.fixture(scope="module")
def prom(
    tmp_path_factory: pytest.TempPathFactory, admin_ports: list[int]
) -> Iterator[prometheus.Prometheus]:
    running = prometheus.start(
        tmp_path_factory.mktemp("prometheus"), admin_ports, f"{SCRAPE * 1000:.0f}ms"
    )
    yield running
    running.stop()


# -- pieces --------------------------------------------------------------------------


def plan_route(name: str, destination: str, steps: str, every: str, extra: str = "") -> str:
    return (
        f"  - name: {name}\n"
        f"    match: {{exact: {destination}}}\n"
        "    mode: split\n"
        "    weight: 0\n"
        "    on_failure: legacy\n"
        "    rollout:\n"
        f"      steps: {steps}\n"
        f"      every: {every}\n"
        f"{extra}"
        "      gates:\n"
        "        - {metric: fallback_ratio, max: 0.02, window: 3s, min_messages: 20}\n"
    )


def read_facts(path: Path, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            fact = json.loads(line)
        except ValueError:
            continue  # the line being written right now
        if event is not None and fact["event"] != event:
            continue
        if all(fact.get(k) == v for k, v in match.items()):
            found.append(fact)
    return found


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``check`` (facts in files, written by other processes) until it has a value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def at(fact: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(fact["ts"])


@dataclass
class Proxy:
    process: subprocess.Popen[str]
    port: int
    admin: int
    facts: Path

    def routed(self, destination: str) -> list[dict[str, Any]]:
        return read_facts(self.facts, "message_routed", destination=destination)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(WAIT) == 0


def run_proxy(routes: Path, admin: int, facts: Path) -> Proxy:
    """``strangler run`` as its own process (watching the routes file), once it listens."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "strangler", "run", "--routes", str(routes)),
            *("--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"),
            *("--facts", str(facts), "--shutdown-grace", "5"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    if "listening on" not in line:
        process.kill()
        raise AssertionError(f"strangler run did not start: {line}")
    return Proxy(process, port, admin, facts)


def run_controller(routes: Path, url: str, facts: Path) -> subprocess.Popen[bytes]:
    with (facts.parent / "rollout.stderr").open("wb") as err:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "strangler", "rollout", "--routes", str(routes)),
                *("--prometheus", url, "--interval", f"{INTERVAL * 1000:.0f}ms"),
                *("--facts", str(facts)),
            ],
            stdin=subprocess.DEVNULL,
            stderr=err,
        )


class Producer(threading.Thread):
    """Sends numbered messages with receipts through one proxy until told to stop."""

    def __init__(self, name: str, proxy: Proxy, destination: str, legacy: BrokerInfo) -> None:
        super().__init__(name=name, daemon=True)
        self.client: Client = connect("127.0.0.1", proxy.port, legacy.username, legacy.password)
        self.destination = destination
        self.bodies: list[str] = []
        self.receipts: list[str] = []
        self.halt = threading.Event()
        self.crash: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                body = f"{self.name}-{len(self.bodies)}"
                self.receipts.append(self.client.send(self.destination, body))
                self.bodies.append(body)
                self.halt.wait(PACE)  # pacing, not synchronisation
        except BaseException as exc:  # reported by finish()
            self.crash = exc

    def finish(self) -> None:
        self.halt.set()
        self.join(WAIT)
        assert self.crash is None, f"{self.name} failed: {self.crash!r}"
        assert self.client.wait_receipts(self.receipts), f"{self.name}: receipts missing"
        self.client.close()


@dataclass
class Fleet:
    proxies: list[Proxy]
    producers: list[Producer]
    controller: subprocess.Popen[bytes]
    controller_facts: Path

    def rollout(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return read_facts(self.controller_facts, event, **match)

    def wait_applied(self, version: str, destination: str, messages: int = 5) -> None:
        """Every proxy applied ``version`` and decided ``messages`` messages under it."""
        for proxy in self.proxies:

            def enough(proxy: Proxy = proxy) -> bool:
                decided = proxy.routed(destination)
                return len([f for f in decided if f["routes_version"] == version]) >= messages

            wait_for(f"{messages} messages under version {version} at {proxy.facts.name}", enough)

    def stop(self) -> None:
        for producer in self.producers:
            producer.finish()
        if self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)
            assert self.controller.wait(WAIT) == 0
        for proxy in self.proxies:
            proxy.stop()


@pytest.fixture
def fleet_factory(
    tmp_path: Path, pair: tuple[BrokerInfo, BrokerInfo], prom: prometheus.Prometheus
) -> Iterator[Callable[[str, list[int]], Fleet]]:
    started: list[Fleet] = []
    legacy, amazonmq = pair

    def start(route: str, admins: list[int]) -> Fleet:
        routes = tmp_path / "routes.yaml"
        routes.write_text(routes_yaml(legacy, amazonmq, route))
        proxies = [run_proxy(routes, a, tmp_path / f"facts{i}.jsonl") for i, a in enumerate(admins)]
        destination = parse_routes(routes.read_bytes(), str(routes)).routes[0].pattern
        producers = [Producer(f"p{i}", p, destination, legacy) for i, p in enumerate(proxies)]
        for producer in producers:
            producer.start()
        facts = tmp_path / "rollout.jsonl"
        fleet = Fleet(proxies, producers, run_controller(routes, prom.url, facts), facts)
        started.append(fleet)
        return fleet

    yield start
    for fleet in started:  # a failed test's processes; a passing test stopped them itself
        for process in [fleet.controller] + [p.process for p in fleet.proxies]:
            if process.poll() is None:
                process.kill()
                process.wait()
        for producer in fleet.producers:
            producer.halt.set()


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as response:
        return json.load(response)


# -- the tests -------------------------------------------------------------------------


def test_a_rollout_from_1_to_100_places_every_message_per_the_weight_in_force(
    fleet_factory: Callable[[str, list[int]], Fleet],
    pair: tuple[BrokerInfo, BrokerInfo],
    admin_ports: list[int],
) -> None:
    legacy, amazonmq = pair
    destination = unique_queue("rollout.steps")
    route = plan_route("steps", destination, str(STEPS), "2s", "      promote: true\n")
    began = time.monotonic()
    fleet = fleet_factory(route, admin_ports[:2])
    routes = fleet.controller_facts.parent / "routes.yaml"
    initial = parse_routes(routes.read_bytes(), str(routes)).version
    try:
        # Mid-rollout, a proxy's /routes and `strangler status` show the step the file says.
        step = wait_for("the step to 10%", lambda: fleet.rollout("rollout_advanced", to_weight=10))
        fleet.wait_applied(step[0]["routes_version"], destination, messages=1)
        shown = get_json(fleet.proxies[0].admin, "/routes")
        rollout = shown["routes"][0]["rollout"]
        (decided,) = fleet.rollout("rollout_advanced", routes_version=shown["version"])
        assert (rollout["weight"], rollout["step"]) == (
            decided["to_weight"],
            STEPS.index(decided["to_weight"]) + 1,
        )
        since = datetime.fromisoformat(rollout["since"])
        assert datetime.fromisoformat(rollout["next_step_at"]) - since == timedelta(seconds=2)
        assert rollout["last_gates"]["fallback_ratio"] == pytest.approx(
            decided["gates"][0]["value"], rel=1e-5
        )
        admin = fleet.proxies[0].admin
        status = subprocess.run(
            [sys.executable, "-m", "strangler", "status", "--admin", f"127.0.0.1:{admin}"],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=True,
        ).stdout
        # The rollout may have stepped on meanwhile: judge the output by its own version.
        version = status.split()[2]
        (decided,) = fleet.rollout("rollout_advanced", routes_version=version)
        weight = decided["to_weight"]
        assert f"rollout: step {STEPS.index(weight) + 1}/4 at {weight:g}%" in status

        (completed,) = wait_for("completion", lambda: fleet.rollout("rollout_completed"))
        rolled = time.monotonic() - began
        fleet.wait_applied(completed["routes_version"], destination)
    finally:
        fleet.stop()

    advanced = fleet.rollout("rollout_advanced")
    assert [f["to_weight"] for f in advanced] == STEPS
    assert completed["promoted"] is True
    assert all(f["gates"][0]["verdict"] == "pass" for f in [*advanced, completed])
    assert fleet.rollout("rollout_rolled_back") == []
    weights = {initial: 0.0, completed["routes_version"]: 100.0}
    weights |= {f["routes_version"]: float(f["to_weight"]) for f in advanced}

    # Every message was placed per the weight of the routes version it was decided under.
    by_weight: Counter[tuple[float, str]] = Counter()
    routed: dict[str, str] = {}
    for proxy in fleet.proxies:
        facts = proxy.routed(destination)
        assert {f["routes_version"] for f in facts} == set(weights), "every version was used"
        for fact in facts:
            weight = weights[fact["routes_version"]]
            expected = "amazonmq" if split_bucket(fact["trace_id"]) < weight else "legacy"
            assert fact["targets"] == [expected], fact
            by_weight[(weight, expected)] += 1
            routed[fact["trace_id"]] = expected
        assert read_facts(proxy.facts, "message_fell_back") == []

    # Nothing lost, nothing twice: every message sent is on the broker its fact names.
    on_legacy, on_amazonmq = drain(legacy, destination), drain(amazonmq, destination)
    sent = sorted(body for p in fleet.producers for body in p.bodies)
    assert sorted(m.body.decode() for m in on_legacy + on_amazonmq) == sent
    traces = [(m.headers["strangler-trace-id"], "legacy") for m in on_legacy]
    traces += [(m.headers["strangler-trace-id"], "amazonmq") for m in on_amazonmq]
    assert dict(traces) == routed and len(traces) == len(routed)

    totals = Counter(w for (w, _), n in by_weight.items() for _ in range(n))
    shares = ", ".join(f"{w:g}%: {by_weight[(w, 'amazonmq')]}/{totals[w]}" for w in sorted(totals))
    print(
        f"\nrollout 0->100 in {rolled:.1f}s, {len(sent)} messages, to Amazon MQ by weight: {shares}"
    )


def test_amazon_mq_killed_mid_rollout_breaches_the_gate_and_rolls_back_within_an_interval(
    fleet_factory: Callable[[str, list[int]], Fleet],
    pair: tuple[BrokerInfo, BrokerInfo],
    admin_ports: list[int],
) -> None:
    legacy, _ = pair
    destination = unique_queue("rollout.breach")
    # A long step: the rollout stays at 25% until the breach, whatever the machine's speed.
    fleet = fleet_factory(
        plan_route("breach", destination, "[25, 50, 100]", "60s"), admin_ports[2:]
    )
    routes = fleet.controller_facts.parent / "routes.yaml"
    try:
        (step,) = wait_for("the step to 25%", lambda: fleet.rollout("rollout_advanced"))
        for proxy in fleet.proxies:

            def confirming(proxy: Proxy = proxy) -> bool:
                facts = read_facts(proxy.facts, "message_confirmed", broker="amazonmq")
                return len(facts) >= 10

            wait_for("Amazon MQ confirming at 25%", confirming)
        brokers.kill(f"{PREFIX}-amq")
        (rolled_back,) = wait_for(
            "the rollback", lambda: fleet.rollout("rollout_rolled_back"), timeout=30
        )
        fleet.wait_applied(rolled_back["routes_version"], destination)
    finally:
        fleet.stop()

    first_fallback = min(
        at(f) for p in fleet.proxies for f in read_facts(p.facts, "message_fell_back")
    )
    delay = (at(rolled_back) - first_fallback).total_seconds()
    # The first pass after Prometheus scraped the fallbacks (a new series needs two scrapes)
    # rolls back: one interval, plus the scrapes, plus slack for a loaded machine.
    print(f"\nfirst fallback -> rollout_rolled_back: {delay:.2f}s (interval {INTERVAL}s)")
    assert delay <= INTERVAL + 2 * SCRAPE + 1.0
    assert (rolled_back["from_weight"], rolled_back["to_weight"]) == (25, 0)
    assert rolled_back["breached"] == ["fallback_ratio"]
    (gate,) = rolled_back["gates"]
    assert gate["verdict"] == "breach" and gate["value"] > 0.02 and gate["messages"] >= 20
    assert step["to_weight"] == 25
    route = parse_routes(routes.read_bytes(), str(routes)).routes[0]
    assert route.weight == 0 and route.rollout is not None
    assert str(route.rollout.phase) == "rolled_back"
    later = [f for f in read_facts(fleet.controller_facts) if at(f) > at(rolled_back)]
    assert later == [], "a rolled-back rollout waits for a person"

    # Under the rolled-back version every message went to legacy; every message sent was
    # receipted (finish() checked) and each one confirmed by legacy is on legacy.
    confirmed_on_legacy = set()
    for proxy in fleet.proxies:
        for fact in proxy.routed(destination):
            if fact["routes_version"] == rolled_back["routes_version"]:
                assert fact["targets"] == ["legacy"]
        confirmed_on_legacy |= {
            f["trace_id"]
            for f in read_facts(proxy.facts, "message_confirmed", broker="legacy", rule="breach")
        }
    on_legacy = {m.headers["strangler-trace-id"] for m in drain(legacy, destination)}
    assert on_legacy == confirmed_on_legacy
