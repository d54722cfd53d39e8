"""The controller on a routes file: one write per step, facts with the gate values,
nothing remembered between passes but the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from rollout_fixtures import ROUTES, Clock, Facts, FakePrometheus, controller, route_of

from strangler.rollout.prometheus import PrometheusError
from strangler.rollout.targets import FileTarget
from strangler.routes import Mode, parse_routes
from strangler.routes.rollout import Phase


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    return path


def version(path: Path) -> str:
    return parse_routes(path.read_bytes(), str(path)).version


def test_a_rollout_steps_up_on_time_then_completes_and_promotes(routes: Path) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.01)
    run = controller(FileTarget(routes), prometheus, facts, clock)

    run.run_pass()  # no state yet: due now
    assert route_of(routes).weight == 1
    (advanced,) = facts.all("rollout_advanced")
    assert (advanced["from_weight"], advanced["to_weight"], advanced["written"]) == (0, 1, True)
    assert advanced["routes_version"] == version(routes)
    assert advanced["gates"] == [
        {
            "gate": "fallback_ratio",
            "value": 0.01,
            "verdict": "pass",
            "messages": 1000.0,
            "min_messages": 100.0,
            "window": "5m",
            "max": 0.05,
        }
    ]

    clock.advance(minutes=5)
    before = routes.read_bytes()
    run.run_pass()
    assert routes.read_bytes() == before, "a held step writes nothing"
    (held,) = facts.all("rollout_held")
    assert held["weight"] == 1 and held["next_step_at"] == "2025-05-01T10:10:00.000Z"

    for weight in (50, 100):
        clock.advance(minutes=10)
        run.run_pass()
        assert route_of(routes).weight == weight
    clock.advance(minutes=10)
    run.run_pass()
    promoted = route_of(routes)
    assert promoted.mode is Mode.CUTOVER and promoted.rollout is None
    (completed,) = facts.all("rollout_completed")
    assert completed["promoted"] is True and completed["routes_version"] == version(routes)
    assert [f["to_weight"] for f in facts.all("rollout_advanced")] == [1, 50, 100]

    clock.advance(minutes=10)
    run.run_pass()  # nothing is rolling any more
    assert len(facts.all()) == 5
    text = routes.read_text()
    assert "# The payments move. Comments and layout survive every step." in text
    assert "  # payments: stepped up by strangler rollout\n" in text


def test_a_breach_rolls_back_at_once_and_the_rollout_stops(routes: Path) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    run = controller(FileTarget(routes), prometheus, facts, clock)
    run.run_pass()
    assert route_of(routes).weight == 1

    clock.advance(seconds=30)  # long before the step's time
    prometheus.set("fallback_ratio", 0.2, messages=400)
    run.run_pass()
    route = route_of(routes)
    assert route.weight == 0 and route.rollout.phase is Phase.ROLLED_BACK
    assert route.rollout.state.gates == (("fallback_ratio", 0.2),)
    (rolled_back,) = facts.all("rollout_rolled_back")
    assert (rolled_back["from_weight"], rolled_back["to_weight"]) == (1, 0)
    assert rolled_back["breached"] == ["fallback_ratio"]
    assert rolled_back["gates"][0]["verdict"] == "breach"

    prometheus.set("fallback_ratio", 0.0)
    clock.advance(hours=1)
    run.run_pass()
    assert route_of(routes).weight == 0, "a rolled-back rollout waits for a person"
    assert len(facts.all()) == 2


def test_on_breach_hold_keeps_the_weight(routes: Path) -> None:
    text = ROUTES.replace("on_breach: rollback", "on_breach: hold")
    routes.write_text(text)
    prometheus, facts, clock = FakePrometheus(text), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.9)
    controller(FileTarget(routes), prometheus, facts, clock).run_pass()
    assert routes.read_text() == text
    (held,) = facts.all("rollout_held")
    assert held["reason"].startswith("breach (on_breach: hold): fallback_ratio 0.9")


@pytest.mark.parametrize(
    ("value", "messages", "verdict"),
    [(0.9, 99.0, "not_enough_data"), (None, 1000.0, "not_enough_data")],
)
def test_not_enough_data_is_neither_pass_nor_breach(
    routes: Path, value: float | None, messages: float, verdict: str
) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", value, messages=messages)
    controller(FileTarget(routes), prometheus, facts, clock).run_pass()
    assert routes.read_text() == ROUTES
    (held,) = facts.all("rollout_held")
    assert held["gates"][0]["verdict"] == verdict and held["next_step_at"] is None


def test_prometheus_failing_holds_with_the_reason(routes: Path) -> None:
    def unreachable(promql: str) -> float | None:
        raise PrometheusError("cannot ask Prometheus at http://prometheus:9090: refused")

    facts, clock = Facts(), Clock()
    controller(FileTarget(routes), unreachable, facts, clock).run_pass()
    assert routes.read_text() == ROUTES
    (held,) = facts.all("rollout_held")
    assert held["gates"][0]["verdict"] == "error"
    assert "refused" in held["gates"][0]["error"] and "refused" in held["reason"]


def test_a_restarted_controller_resumes_from_the_file(routes: Path) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    controller(FileTarget(routes), prometheus, facts, clock).run_pass()
    clock.advance(minutes=9)
    controller(FileTarget(routes), prometheus, facts, clock).run_pass()
    assert route_of(routes).weight == 1, "the step's time is counted from the file"
    clock.advance(minutes=1)
    controller(FileTarget(routes), prometheus, facts, clock).run_pass()
    assert route_of(routes).weight == 50
    assert [f["event"] for f in facts.all()] == [
        "rollout_advanced",
        "rollout_held",
        "rollout_advanced",
    ]


def test_dry_run_decides_and_reports_but_writes_nothing(routes: Path) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    controller(FileTarget(routes), prometheus, facts, clock, dry_run=True).run_pass()
    assert routes.read_text() == ROUTES
    (advanced,) = facts.all("rollout_advanced")
    assert advanced["dry_run"] is True and advanced["written"] is False
    assert advanced["to_weight"] == 1 and advanced["routes_version"] != version(routes)


class _EditedBeforeWrite(FileTarget):
    """Someone saves the file between the controller's read and its write, once."""

    def __init__(self, path: Path, change: tuple[str, str]) -> None:
        super().__init__(path)
        self.change: tuple[str, str] | None = change

    def write(self, before: bytes, after: bytes, message: str) -> str | None:
        if self.change is not None:
            old, new = self.change
            self.path.write_text(self.path.read_text().replace(old, new))
            self.change = None
        return super().write(before, after, message)


def test_a_file_changed_under_a_step_is_decided_again_on_the_new_content(routes: Path) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    target = _EditedBeforeWrite(routes, ("weight: 0 ", "weight: 50 "))
    controller(target, prometheus, facts, clock).run_pass()
    (advanced,) = facts.all("rollout_advanced")
    assert (advanced["from_weight"], advanced["to_weight"]) == (50, 100)
    assert route_of(routes).weight == 100


def test_a_person_who_rolled_back_by_hand_meanwhile_wins(routes: Path) -> None:
    prometheus, facts, clock = FakePrometheus(ROUTES), Facts(), Clock()
    prometheus.set("fallback_ratio", 0.0)
    target = _EditedBeforeWrite(routes, ("mode: split", "mode: legacy"))
    controller(target, prometheus, facts, clock).run_pass()
    assert route_of(routes).mode is Mode.LEGACY and route_of(routes).weight is None
    assert "weight: 0 " in routes.read_text() and facts.all() == []
