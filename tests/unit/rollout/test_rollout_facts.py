"""docs/facts.md's ``strangler rollout`` section says what the controller writes: every
field of each rollout fact, and every field of a gate's entry, as the code writes them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rollout_fixtures import (
    ROUTES,
    ROUTES_VERIFIED,
    Clock,
    Facts,
    FakePrometheus,
    FakeVerifier,
    controller,
)

from strangler.rollout.gates import Verdict
from strangler.rollout.prometheus import PrometheusError
from strangler.rollout.targets import FileTarget

DOC = Path(__file__).parents[3] / "docs" / "facts.md"
ROLLOUT_FACTS = ("rollout_advanced", "rollout_held", "rollout_rolled_back", "rollout_completed")


def section() -> str:
    text = DOC.read_text()
    start = text.index("## `strangler rollout`")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def documented_fields() -> dict[str, set[str]]:
    """Each rollout fact's row: the backticked names of its fields column."""
    rows = re.findall(r"^\| `(rollout_[a-z_]+)` \|[^|]*\|([^|]*)\|$", section(), re.M)
    return {name: set(re.findall(r"`([a-z_]+)`", fields)) for name, fields in rows}


def documented_gate_fields() -> set[str]:
    table = section().split("| gate field | meaning |", 1)[1].split("\n\n", 1)[0]
    return {
        name
        for first in re.findall(r"^\| ([^|]*) \|", table, re.M)
        for name in re.findall(r"`([a-z_]+)`", first)
    }


def every_kind_of_rollout_fact(tmp_path: Path) -> list[dict[str, Any]]:
    """Advanced, held (not due; a Prometheus error on a gate with route: and min),
    completed (promoted), rolled back; with a Prometheus gate and a verify gate."""
    written: list[dict[str, Any]] = []
    # Advanced, held, completed: the fallback gate and a verify gate that passes.
    routes = tmp_path / "verified.yaml"
    routes.write_text(ROUTES_VERIFIED)
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    run = controller(FileTarget(routes), prometheus, facts, clock, verifier=FakeVerifier())
    for _ in range(4):  # 1, held, 50, 100 ... completed
        run.run_pass()
        clock.advance(minutes=5)
    for _ in range(4):
        clock.advance(minutes=10)
        run.run_pass()
    written += facts.all()
    # Held on an error, from a gate that measures another route with a min.
    other = tmp_path / "other.yaml"
    gate = "        - {metric: fallback_ratio, max: 0.05, window: 5m, min_messages: 100}\n"
    other.write_text(
        ROUTES.replace(
            gate,
            "        - {name: copies, metric: mirror_failure_ratio, min: 0, window: 5m,"
            " min_messages: 1, route: orders}\n",
        )
    )

    def failing(promql: str) -> float | None:
        raise PrometheusError("cannot ask Prometheus at http://prometheus:9090: refused")

    facts = Facts()
    controller(FileTarget(other), failing, facts, Clock()).run_pass()
    written += facts.all()
    # Rolled back by the verify gate.
    routes.write_text(ROUTES_VERIFIED)
    prometheus, facts = FakePrometheus(ROUTES), Facts()
    prometheus.set("fallback_ratio", 0.0)
    verifier = FakeVerifier(Verdict.BREACH, 2.0)
    controller(FileTarget(routes), prometheus, facts, Clock(), verifier=verifier).run_pass()
    written += facts.all()
    return written


def test_the_docs_list_every_field_of_every_rollout_fact(tmp_path: Path) -> None:
    documented = documented_fields()
    assert set(documented) == set(ROLLOUT_FACTS)
    written = every_kind_of_rollout_fact(tmp_path)
    assert {fact["event"] for fact in written} == set(ROLLOUT_FACTS)
    for fact in written:
        fields = set(fact) - {"event", "ts"}
        assert fields == documented[fact["event"]], fact["event"]


def test_the_docs_list_every_field_of_a_gates_entry(tmp_path: Path) -> None:
    documented = documented_gate_fields()
    seen: set[str] = set()
    for fact in every_kind_of_rollout_fact(tmp_path):
        for gate in fact["gates"]:
            assert set(gate) <= documented, gate
            seen |= set(gate)
    assert seen == documented  # every documented field was written by some gate
