"""Shared pieces of the rollout unit tests: a routes file with a plan, Prometheus answers
by gate, a verifier's answers for verify gates, a clock the test moves, and the facts a
controller wrote."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from strangler.facts import FactSink
from strangler.rollout.controller import RolloutController
from strangler.rollout.gates import GateResult, Verdict
from strangler.rollout.queries import gate_queries
from strangler.rollout.targets import Target
from strangler.routes import RouteTable, parse_routes
from strangler.routes.rollout import Gate

ROUTES = """\
# The payments move. Comments and layout survive every step.
brokers:
  legacy:
    url: stomp://127.0.0.1:61611
  amazonmq:
    url: stomp+ssl://127.0.0.1:61614

routes:
  - name: orders
    match: {exact: /queue/orders}
    mode: mirror

  # payments: stepped up by strangler rollout
  - name: pay
    match: {prefix: /queue/pay.}
    mode: split
    weight: 0    # the controller moves this
    sticky_header: JMSXGroupID
    on_failure: legacy
    rollout:
      steps: [1, 50, 100]
      every: 10m
      on_breach: rollback
      promote: true
      gates:
        - {metric: fallback_ratio, max: 0.05, window: 5m, min_messages: 100}
"""

GATE_LINE = "        - {metric: fallback_ratio, max: 0.05, window: 5m, min_messages: 100}\n"
VERIFY_LINE = "        - {verify: /queue/orders, max: 0, min_messages: 10}\n"
ROUTES_VERIFIED = ROUTES.replace(GATE_LINE, GATE_LINE + VERIFY_LINE)
assert ROUTES_VERIFIED != ROUTES  # the pay route's plan also verifies the orders mirror


class FakeVerifier:
    """Answers every verify gate with ``verdict``/``value``; counts its runs."""

    def __init__(
        self, verdict: Verdict = Verdict.PASS, value: float = 0.0, messages: float = 120.0
    ) -> None:
        self.verdict, self.value, self.messages = verdict, value, messages
        self.runs: list[tuple[str, str]] = []  # (gate, routes version)
        self.error: str | None = None

    def __call__(self, gate: Gate, table: RouteTable) -> GateResult:
        assert gate.verify is not None
        self.runs.append((gate.name, table.version))
        if self.verdict is Verdict.ERROR:
            return GateResult(gate, gate.verify, Verdict.ERROR, error=self.error)
        return GateResult(gate, gate.verify, self.verdict, self.value, self.messages)


START = datetime(2025, 5, 1, 10, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakePrometheus:
    """Answers each Prometheus gate of a route's plan: ``set(gate, value, messages)``."""

    def __init__(self, routes_text: str, route: str = "pay") -> None:
        table = parse_routes(routes_text, "routes.yaml")
        plan = next(r for r in table.routes if r.name == route).rollout
        assert plan is not None
        self.queries = {
            gate.name: gate_queries(gate, route) for gate in plan.gates if gate.verify is None
        }
        self.answers: dict[str, float | None] = {}
        self.asked: list[str] = []

    def set(self, gate: str, value: float | None, messages: float = 1000.0) -> None:
        queries = self.queries[gate]
        self.answers[queries.value] = value
        self.answers[queries.traffic] = messages

    def __call__(self, promql: str) -> float | None:
        self.asked.append(promql)
        return self.answers.get(promql)


class Facts:
    """A FactSink writing to memory, read back as dicts."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.sink = FactSink(self.stream, interval=0.01)

    def all(self, event: str | None = None) -> list[dict[str, Any]]:
        self.sink.flush()
        facts = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [f for f in facts if event is None or f["event"] == event]


def controller(
    target: Target,
    prometheus: Callable[[str], float | None],
    facts: Facts,
    clock: Clock,
    **kwargs: Any,
) -> RolloutController:
    return RolloutController(
        target, prometheus, facts.sink, clock=clock, out=io.StringIO(), **kwargs
    )


def route_of(path: Path, name: str = "pay") -> Any:
    table = parse_routes(path.read_bytes(), str(path))
    return next(r for r in table.routes if r.name == name)
