"""A verify gate in a real rollout: ``strangler rollout --once`` passes (a CronJob's way of
running it) over a routes file that a real ``strangler run`` proxy watches, with a real
Prometheus scraping the proxy, and the gate browsing a mirrored queue on the real brokers
(legacy plain, Amazon MQ's stand-in over TLS).

The plan steps a split route; its gates are the fallback ratio (Prometheus) and a verify
of the mirror route's queue. The proofs are the controller's facts (``rollout_*`` and the
``verify_finished`` each verify gate run writes) and the routes file it wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strangler.routes import parse_routes
from strangler.routes.rollout import Phase

from . import prometheus
from .brokers import BrokerInfo, free_port
from .harness import WAIT, connect, connect_broker, drain, routes_yaml, unique_queue
from .test_rollout import Producer, Proxy, read_facts, run_proxy, wait_for

pytestmark = pytest.mark.integration

SCRAPE = 0.25  # Prometheus scrape interval, seconds
MIRRORED = 20  # messages the proxy mirrors before the first step
STRAY = 3  # messages put on legacy's queue behind the proxy's back: no copy on Amazon MQ


@pytest.fixture(scope="module")
def admin_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def prom(
    tmp_path_factory: pytest.TempPathFactory, admin_port: int
) -> Iterator[prometheus.Prometheus]:
    running = prometheus.start(
        tmp_path_factory.mktemp("prometheus"), [admin_port], f"{SCRAPE * 1000:.0f}ms"
    )
    yield running
    running.stop()


def routes_of(mirrored: str, stepped: str) -> str:
    return (
        "  - name: audit\n"
        f"    match: {{exact: {mirrored}}}\n"
        "    mode: mirror\n"
        "  - name: steps\n"
        f"    match: {{exact: {stepped}}}\n"
        "    mode: split\n"
        "    weight: 0\n"
        "    on_failure: legacy\n"
        "    rollout:\n"
        "      steps: [50, 100]\n"
        "      every: 2s\n"
        "      gates:\n"
        "        - {metric: fallback_ratio, max: 0.02, window: 3s, min_messages: 20}\n"
        f"        - {{verify: {mirrored}, max: 0, min_messages: {MIRRORED}}}\n"
    )


def rollout_once(routes: Path, url: str, facts: Path, legacy: BrokerInfo) -> float:
    """One controller pass as its own process (exit 0 expected); its duration."""
    began = time.monotonic()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "strangler", "rollout", "--routes", str(routes)),
            *("--prometheus", url, "--once", "--facts", str(facts), "--verify-timeout", "10"),
        ],
        env={
            **os.environ,
            "STRANGLER_LEGACY_LOGIN": legacy.username,
            "STRANGLER_LEGACY_PASSCODE": legacy.password,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=2 * WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic() - began


def gate(fact: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [g for g in fact["gates"] if g["gate"] == name]
    return dict(found)


def test_a_verify_gate_passes_a_step_then_rolls_back_on_copies_missing_on_amazon_mq(
    tmp_path: Path,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    prom: prometheus.Prometheus,
    admin_port: int,
) -> None:
    mirrored, stepped = unique_queue("rollout.verified"), unique_queue("rollout.stepped")
    routes = tmp_path / "routes.yaml"
    original = routes_yaml(legacy, amazonmq, routes_of(mirrored, stepped))
    routes.write_text(original)
    facts = tmp_path / "rollout.jsonl"
    proxy: Proxy = run_proxy(routes, admin_port, tmp_path / "proxy.jsonl")
    producer = Producer("p", proxy, stepped, legacy)  # traffic for the fallback gate
    producer.start()
    began = time.monotonic()
    try:
        # The mirror route's messages, each one confirmed by both brokers.
        client = connect("127.0.0.1", proxy.port, legacy.username, legacy.password)
        try:
            receipts = [client.send(mirrored, f"mirrored-{n}") for n in range(MIRRORED)]
            assert client.wait_receipts(receipts)
        finally:
            client.close()

        def copies_confirmed() -> bool:
            copies = read_facts(proxy.facts, "message_confirmed", rule="audit", role="mirror")
            return len(copies) == MIRRORED

        wait_for("the mirror copies confirmed by Amazon MQ", copies_confirmed)

        # Passes until Prometheus has the traffic: then the brokers are compared, they
        # match, and the route steps to 50%.
        passes = 0
        while not read_facts(facts, "rollout_advanced"):
            rollout_once(routes, prom.url, facts, legacy)
            passes += 1
            assert passes < 60, read_facts(facts)[-1:]
        (advanced,) = read_facts(facts, "rollout_advanced")
        assert (advanced["from_weight"], advanced["to_weight"]) == (0, 50)
        assert gate(advanced, "fallback_ratio")["verdict"] == "pass"
        assert gate(advanced, "verify") == {
            "gate": "verify",
            "value": 0.0,
            "verdict": "pass",
            "messages": float(MIRRORED),
            "min_messages": float(MIRRORED),
            "verify": mirrored,
            "max": 0.0,
        }
        # The brokers were browsed once: for the step, not on the passes held before it.
        (matched,) = read_facts(facts, "verify_finished")
        assert (matched["rule"], matched["destination"], matched["match"]) == (
            "audit",
            mirrored,
            True,
        )
        assert (matched["legacy_messages"], matched["amazonmq_messages"]) == (20, 20)
        stepped_at = time.monotonic() - began

        # Messages legacy holds and Amazon MQ does not: the next step's verify breaches.
        direct = connect_broker(legacy)
        try:
            stray = [direct.send(mirrored, f"stray-{n}") for n in range(STRAY)]
            assert direct.wait_receipts(stray)
        finally:
            direct.close()
        while not read_facts(facts, "rollout_rolled_back"):
            rollout_once(routes, prom.url, facts, legacy)
            passes += 1
            assert passes < 120, read_facts(facts)[-1:]
        (rolled_back,) = read_facts(facts, "rollout_rolled_back")
        rolled_at = time.monotonic() - began
        proxy_applied = rolled_back["routes_version"]
        wait_for(
            "the proxy applying the rollback",
            lambda: read_facts(proxy.facts, "routes_applied", routes_version=proxy_applied),
        )
    finally:
        producer.finish()
        proxy.stop()

    assert (rolled_back["from_weight"], rolled_back["to_weight"]) == (50, 0)
    assert rolled_back["breached"] == ["verify"]
    assert gate(rolled_back, "fallback_ratio")["verdict"] == "pass"
    breached = gate(rolled_back, "verify")
    assert (breached["verdict"], breached["value"], breached["messages"]) == (
        "breach",
        float(STRAY),
        float(MIRRORED + STRAY),
    )
    assert rolled_back["reason"] == (
        f"breach: verify {STRAY} above max 0 ({MIRRORED + STRAY} messages on legacy's {mirrored})"
    )
    # The brokers were browsed for the two steps taken, never on a held pass.
    assert len(read_facts(facts, "verify_finished")) == 2
    for held in read_facts(facts, "rollout_held"):
        assert gate(held, "verify")["verdict"] == "not_run", held
    mismatch = read_facts(facts, "verify_finished")[-1]
    assert (mismatch["match"], mismatch["missing"]) == (False, STRAY)
    proxied = {f["trace_id"] for f in proxy.routed(mirrored)}
    assert len(proxied) == MIRRORED and not set(mismatch["missing_trace_ids"]) & proxied
    route = next(
        r for r in parse_routes(routes.read_bytes(), str(routes)).routes if r.name == "steps"
    )
    assert route.weight == 0 and route.rollout is not None
    assert route.rollout.phase is Phase.ROLLED_BACK
    assert route.rollout.state is not None
    assert dict(route.rollout.state.gates)["verify"] == STRAY

    # What the brokers hold: legacy the mirrored messages and the strays, Amazon MQ the
    # copies only (verify consumed nothing).
    assert len(drain(legacy, mirrored)) == MIRRORED + STRAY
    assert sorted(m.body.decode() for m in drain(amazonmq, mirrored)) == sorted(
        f"mirrored-{n}" for n in range(MIRRORED)
    )
    print(
        f"\nverify gate: stepped to 50% after {stepped_at:.1f}s, rolled back after "
        f"{rolled_at:.1f}s ({passes} passes of `strangler rollout --once`, "
        f"{len(read_facts(facts, 'rollout_held'))} held)"
    )


def test_a_verify_gate_holds_the_step_when_amazon_mq_cannot_be_reached(
    tmp_path: Path,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    prom: prometheus.Prometheus,
    admin_port: int,
) -> None:
    """The same plan, Amazon MQ out of the controller's reach (a port nothing listens on):
    the gate has no answer, the step is held, nothing is written. No proxy sends here, so
    the Prometheus gate is one that always passes: the step waits on the verify gate only."""
    mirrored, stepped = unique_queue("rollout.unreachable"), unique_queue("rollout.held")
    text = routes_yaml(legacy, amazonmq, routes_of(mirrored, stepped), amazonmq_port=free_port())
    fallback = "{metric: fallback_ratio, max: 0.02, window: 3s, min_messages: 20}"
    assert fallback in text
    text = text.replace(
        fallback, "{name: zero, query: vector(0), max: 0, window: 3s, min_messages: 0}"
    )
    routes, facts = tmp_path / "routes.yaml", tmp_path / "rollout.jsonl"
    routes.write_text(text)
    direct = connect_broker(legacy)  # legacy holds enough to compare
    try:
        assert direct.wait_receipts([direct.send(mirrored, f"m-{n}") for n in range(MIRRORED)])
    finally:
        direct.close()
    took = rollout_once(routes, prom.url, facts, legacy)
    (held,) = read_facts(facts)
    assert held["event"] == "rollout_held", held
    assert gate(held, "zero")["verdict"] == "pass"  # so the step was due: verify ran
    verify = gate(held, "verify")
    assert (verify["verdict"], verify["value"]) == ("error", None)
    assert verify["error"].startswith("amazonmq: cannot connect"), verify
    assert held["reason"].startswith("verify: no answer (amazonmq: cannot connect")
    assert routes.read_text() == text, "a held step writes nothing"
    assert len(drain(legacy, mirrored)) == MIRRORED  # browsed, not consumed
    print(f"\nverify gate, Amazon MQ unreachable: held in one pass of {took:.1f}s")
