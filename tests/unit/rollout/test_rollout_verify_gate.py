"""Verify gates in the controller: run only when a step is due (they browse both brokers),
a mismatch breaches, a broker that cannot be reached holds. The brokers here are a fake
verifier; tests/integration/test_rollout_verify.py runs the real one on real brokers."""

from __future__ import annotations

from pathlib import Path

import pytest
from rollout_fixtures import (
    ROUTES,
    ROUTES_VERIFIED,
    Clock,
    Facts,
    FakePrometheus,
    FakeVerifier,
    controller,
    route_of,
)

from strangler.rollout.gates import Verdict
from strangler.rollout.targets import FileTarget
from strangler.rollout.verify_gate import MirrorVerifier
from strangler.routes import RouteTable, parse_routes
from strangler.routes.rollout import Gate, Phase


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_VERIFIED)
    return path


def gate_fact(fact: dict[str, object], name: str) -> dict[str, object]:
    gates = fact["gates"]
    assert isinstance(gates, list)
    (found,) = [g for g in gates if g["gate"] == name]
    assert isinstance(found, dict)
    return found


def test_a_verify_gate_runs_only_when_a_step_would_be_taken(routes: Path) -> None:
    prometheus, facts, clock, verifier = FakePrometheus(ROUTES), Facts(), Clock(), FakeVerifier()
    prometheus.set("fallback_ratio", 0.0)
    run = controller(FileTarget(routes), prometheus, facts, clock, verifier=verifier)

    run.run_pass()  # no state yet: due now, Prometheus passes: the brokers are compared
    assert route_of(routes).weight == 1
    assert len(verifier.runs) == 1
    (advanced,) = facts.all("rollout_advanced")
    assert gate_fact(advanced, "verify") == {
        "gate": "verify",
        "value": 0.0,
        "verdict": "pass",
        "messages": 120.0,
        "min_messages": 10.0,
        "verify": "/queue/orders",
        "max": 0.0,
    }
    assert "verify: 0" in routes.read_text()  # the state line records its value too

    clock.advance(minutes=5)  # the step's time is not over: no browsing
    run.run_pass()
    assert len(verifier.runs) == 1
    (held,) = facts.all("rollout_held")
    assert gate_fact(held, "verify")["verdict"] == "not_run"
    assert held["reason"] == "gates pass; next step at 2025-05-01T10:10:00.000Z"

    prometheus.set("fallback_ratio", None, messages=3)  # Prometheus: not enough data
    clock.advance(minutes=10)
    run.run_pass()
    assert len(verifier.runs) == 1, "a step held by Prometheus gates is not verified"

    prometheus.set("fallback_ratio", 0.5)  # a breach rolls back without browsing anything
    run.run_pass()
    assert len(verifier.runs) == 1
    (rolled_back,) = facts.all("rollout_rolled_back")
    assert rolled_back["breached"] == ["fallback_ratio"]
    assert gate_fact(rolled_back, "verify")["verdict"] == "not_run"


def test_messages_missing_on_amazon_mq_breach_the_verify_gate_and_roll_back(
    routes: Path,
) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    verifier = FakeVerifier(Verdict.BREACH, 3.0)
    run = controller(FileTarget(routes), prometheus, facts, clock, verifier=verifier)
    run.run_pass()
    (rolled_back,) = facts.all("rollout_rolled_back")
    assert rolled_back["breached"] == ["verify"]
    assert (
        (rolled_back["reason"])
        == "breach: verify 3 above max 0 (120 messages on legacy's /queue/orders)"
    )
    route = route_of(routes)
    assert route.weight == 0 and route.rollout is not None
    assert route.rollout.phase is Phase.ROLLED_BACK
    assert dict(route.rollout.state.gates)["verify"] == 3.0


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        (Verdict.ERROR, "verify: no answer (amazonmq: cannot connect: refused)"),
        (Verdict.NO_DATA, "verify: not enough data (4 of 10 messages on legacy's /queue/orders)"),
    ],
)
def test_a_broker_out_of_reach_or_too_few_messages_hold_the_step(
    routes: Path, verdict: Verdict, reason: str
) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    verifier = FakeVerifier(verdict, 0.0, messages=4.0)
    verifier.error = "amazonmq: cannot connect: refused"
    run = controller(FileTarget(routes), prometheus, facts, clock, verifier=verifier)
    run.run_pass()
    assert routes.read_text() == ROUTES_VERIFIED, "nothing written"
    (held,) = facts.all("rollout_held")
    assert reason in held["reason"]
    assert gate_fact(held, "verify")["verdict"] == str(verdict)
    assert facts.all("rollout_advanced") == []


def test_without_a_verifier_a_verify_gate_holds(routes: Path) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    controller(FileTarget(routes), prometheus, facts, clock).run_pass()
    (held,) = facts.all("rollout_held")
    assert gate_fact(held, "verify")["verdict"] == "error"
    assert routes.read_text() == ROUTES_VERIFIED


# -- the real verifier, without brokers ------------------------------------------------


def verify_gate(table: RouteTable) -> Gate:
    plan = next(r for r in table.routes if r.name == "pay").rollout
    assert plan is not None
    (gate,) = [g for g in plan.gates if g.verify is not None]
    return gate


def test_the_verifier_holds_when_the_queue_is_no_longer_a_mirror() -> None:
    text = ROUTES_VERIFIED.replace("    mode: mirror\n", "    mode: legacy\n", 1)
    table = parse_routes(text, "routes.yaml")
    facts = Facts()
    result = MirrorVerifier(facts.sink)(verify_gate(table), table)
    assert result.verdict is Verdict.ERROR
    assert result.error is not None and "the route must be a mirror" in result.error
    assert facts.all() == []


def test_the_verifier_holds_when_a_broker_cannot_be_reached() -> None:
    text = ROUTES_VERIFIED.replace("127.0.0.1:61611", "127.0.0.1:1")
    table = parse_routes(text, "routes.yaml")
    facts = Facts()
    result = MirrorVerifier(facts.sink, timeout=2.0)(verify_gate(table), table)
    assert result.verdict is Verdict.ERROR
    assert result.error is not None and result.error.startswith("legacy: cannot connect")
    assert facts.all("verify_finished") == [], "nothing was compared"
