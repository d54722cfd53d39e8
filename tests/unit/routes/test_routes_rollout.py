"""The ``rollout:`` plan of a split route: what it reads, what it refuses (file:line), and
where a rollout stands, computed from the file alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from refusals import assert_refused

from strangler.routes import Mode, parse_routes
from strangler.routes.rollout import GateMetric, OnBreach, Phase, format_time, parse_duration

BROKERS = """\
brokers:
  legacy:
    url: stomp://127.0.0.1:61611
  amazonmq:
    url: stomp+ssl://127.0.0.1:61614
"""

ROUTE = """\
routes:
  - name: pay
    match: {prefix: /queue/pay.}
    mode: split
    weight: 5
    on_failure: legacy
"""

GATE = "        - {metric: fallback_ratio, max: 0.01, window: 5m, min_messages: 100}\n"


def plan(body: str, route: str = ROUTE) -> str:
    """The routes file with ``body`` as the pay route's rollout mapping (indented 6)."""
    return BROKERS + route + "    rollout:\n" + body


FULL = plan(
    "      steps: [1, 5, 25, 50, 100]\n"
    "      every: 10m\n"
    "      on_breach: hold\n"
    "      promote: true\n"
    "      gates:\n" + GATE + "        - name: depth\n"
    "          query: 'sum(x{route=\"$route\"}[$window])'\n"
    "          min: 3\n"
    "          window: 90s\n"
    "          min_messages: 0\n"
    "          route: other\n"
    '      state: {phase: rolling, since: "2025-05-01T10:00:00.250Z", '
    '"gates": {fallback_ratio: 0.001, depth: null}}\n'
) + ("  - name: other\n    match: {exact: /queue/other}\n    mode: mirror\n")


def test_a_full_plan_is_read_with_its_state() -> None:
    route = parse_routes(FULL, "routes.yaml").routes[0]
    rollout = route.rollout
    assert rollout is not None
    assert rollout.steps == (1.0, 5.0, 25.0, 50.0, 100.0)
    assert rollout.every.seconds == 600 and str(rollout.every) == "10m"
    assert rollout.on_breach is OnBreach.HOLD and rollout.promote
    fallback, depth = rollout.gates
    assert (fallback.name, fallback.metric, fallback.max, fallback.min_messages) == (
        "fallback_ratio",
        GateMetric.FALLBACK_RATIO,
        0.01,
        100.0,
    )
    assert (depth.name, depth.metric, depth.min, depth.route) == ("depth", None, 3.0, "other")
    assert depth.query == 'sum(x{route="$route"}[$window])'
    assert depth.window is not None and depth.window.seconds == 90
    assert rollout.state is not None
    assert rollout.state.since == datetime(2025, 5, 1, 10, 0, 0, 250_000, tzinfo=UTC)
    assert rollout.state.gates == (("fallback_ratio", 0.001), ("depth", None))
    assert "rollout 1>5>25>50>100 every 10m then cutover" in route.describe()


def test_where_a_rollout_stands_is_computed_from_the_file() -> None:
    rollout = parse_routes(FULL, "routes.yaml").routes[0].rollout
    assert rollout is not None
    since = datetime(2025, 5, 1, 10, 0, 0, 250_000, tzinfo=UTC)
    assert rollout.next_step_at() == since + timedelta(minutes=10)
    assert not rollout.due(since + timedelta(minutes=9))
    assert rollout.due(since + timedelta(minutes=10))
    document = rollout.document(5.0)
    assert document["step"] == 2 and document["steps_total"] == 5
    assert document["next_weight"] == 25.0
    assert document["next_step_at"] == "2025-05-01T10:10:00.250Z"
    assert document["last_gates"] == {"fallback_ratio": 0.001, "depth": None}


def test_a_plan_without_state_is_due_now_and_starts_from_the_files_weight() -> None:
    text = plan("      steps: [1, 5]\n      every: 1m\n" + LIST + GATE)
    rollout = parse_routes(text, "routes.yaml").routes[0].rollout
    assert rollout is not None and rollout.state is None
    assert rollout.phase is Phase.ROLLING and rollout.on_breach is OnBreach.ROLLBACK
    assert rollout.due(datetime(2000, 1, 1, tzinfo=UTC))
    assert rollout.next_weight(0) == 1 and rollout.next_weight(3) == 5
    assert rollout.next_weight(5) is None


def test_a_rolled_back_rollout_is_never_due() -> None:
    text = plan(
        "      steps: [1, 5]\n      every: 1m\n      gates:\n"
        + GATE
        + '      state: {phase: rolled_back, since: "2025-05-01T10:00:00Z"}\n'
    )
    rollout = parse_routes(text, "routes.yaml").routes[0].rollout
    assert rollout is not None and rollout.phase is Phase.ROLLED_BACK
    assert rollout.next_step_at() is None
    assert not rollout.due(datetime(2100, 1, 1, tzinfo=UTC))


def test_rollout_on_a_legacy_route_is_kept_for_the_way_back_with_a_warning() -> None:
    route = ROUTE.replace("mode: split", "mode: legacy")
    text = plan("      steps: [1]\n      every: 1m\n      gates:\n" + GATE, route)
    table = parse_routes(text, "routes.yaml")
    assert table.routes[0].mode is Mode.LEGACY and table.routes[0].rollout is None
    assert any("rollout: ignored for mode legacy" in w for w in table.warnings)


def test_durations_are_one_whole_number_and_a_unit() -> None:
    assert parse_duration("500ms") is not None and parse_duration("2d") is not None
    assert parse_duration("1h30m") is None and parse_duration("1.5m") is None


def test_times_are_written_in_utc_with_milliseconds() -> None:
    moment = datetime(2025, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    assert format_time(moment) == "2025-05-01T12:00:00.123Z"


GOOD = "      steps: [1, 5]\n      every: 1m\n"
GATES = GOOD + "      gates:\n"
LIST = "      gates:\n"

# (id, yaml text with "# <-" on the expected line, substring the reason must contain)
CASES: list[tuple[str, str, str]] = [
    (
        "on_cutover",
        BROKERS
        + "routes:\n  - name: c\n    match: {exact: /q}\n    mode: cutover\n"
        + "    on_failure: legacy\n    rollout: {steps: [1], every: 1m}  # <-\n",
        "routes[0].rollout: not allowed for mode cutover (only split routes step their weight)",
    ),
    (
        "unknown_key",
        plan(GATES + GATE + "      evry: 1m  # <-\n"),
        "routes[0].rollout: unknown key 'evry' (did you mean 'every'?)",
    ),
    (
        "steps_missing",
        BROKERS + ROUTE + "    rollout:  # <-\n      every: 1m\n      gates:\n" + GATE,
        "routes[0].rollout.steps: required",
    ),
    (
        "gates_missing",
        BROKERS + ROUTE + "    rollout:  # <-\n" + GOOD,
        "routes[0].rollout.gates: required",
    ),
    (
        "gates_empty",
        plan(GOOD + "      gates: []  # <-\n"),
        "routes[0].rollout.gates: at least one gate",
    ),
    (
        "steps_not_ascending",
        plan("      steps:\n        - 5\n        - 5  # <-\n      every: 1m\n" + LIST + GATE),
        "routes[0].rollout.steps[1]: 5 does not go up from the step before it (5)",
    ),
    (
        "step_out_of_range",
        plan("      steps:\n        - 50\n        - 101  # <-\n      every: 1m\n" + LIST + GATE),
        "routes[0].rollout.steps[1]: 101 is out of range",
    ),
    (
        "steps_empty",
        plan("      steps: []  # <-\n      every: 1m\n" + LIST + GATE),
        "routes[0].rollout.steps: must list at least one weight",
    ),
    (
        "every_not_a_duration",
        plan("      steps: [1]\n      every: 10  # <-\n      gates:\n" + GATE),
        "routes[0].rollout.every: must be a duration like 30s, 10m or 1h",
    ),
    (
        "every_zero",
        plan("      steps: [1]\n      every: 0s  # <-\n      gates:\n" + GATE),
        "routes[0].rollout.every: must be a duration",
    ),
    (
        "on_breach_unknown",
        plan(GOOD + "      on_breach: pause  # <-\n      gates:\n" + GATE),
        "routes[0].rollout.on_breach: 'pause' is not one of rollback, hold",
    ),
    (
        "promote_without_100",
        plan(GOOD + "      promote: true  # <-\n      gates:\n" + GATE),
        "routes[0].rollout.promote: a route is promoted to cutover only from 100%; "
        "the last step is 5",
    ),
    (
        "gate_unknown_metric",
        plan(GATES + "        - metric: fallbacks  # <-\n"),
        "routes[0].rollout.gates[0].metric: 'fallbacks' is not one of fallback_ratio",
    ),
    (
        "gate_without_metric_or_query",
        plan(GATES + "        - {max: 1, window: 1m, min_messages: 1}  # <-\n"),
        "routes[0].rollout.gates[0]: needs 'metric'",
    ),
    (
        "gate_with_metric_and_query",
        plan(
            GOOD
            + "      gates:\n        - metric: reject_ratio\n          query: up  # <-\n"
            + "          name: x\n"
        ),
        "routes[0].rollout.gates[0]: has both 'metric' and 'query'",
    ),
    (
        "gate_without_threshold",
        plan(GATES + "        - {metric: reject_ratio, window: 1m, min_messages: 1}  # <-\n"),
        "routes[0].rollout.gates[0]: needs 'max' (breach above) or 'min' (breach below)",
    ),
    (
        "gate_with_max_and_min",
        plan(GATES + "        - metric: reject_ratio\n          max: 1\n          min: 0  # <-\n"),
        "routes[0].rollout.gates[0]: has both 'max' and 'min'",
    ),
    (
        "gate_without_window",
        plan(GATES + "        - {metric: reject_ratio, max: 0, min_messages: 1}  # <-\n"),
        "routes[0].rollout.gates[0].window: required",
    ),
    (
        "gate_without_min_messages",
        plan(GATES + "        - {metric: reject_ratio, max: 0, window: 1m}  # <-\n"),
        "routes[0].rollout.gates[0].min_messages: required",
    ),
    (
        "gate_negative_min_messages",
        plan(
            GATES + "        - metric: reject_ratio\n          max: 0\n"
            "          window: 1m\n          min_messages: -1  # <-\n"
        ),
        "routes[0].rollout.gates[0].min_messages: must not be negative",
    ),
    (
        "query_gate_without_name",
        plan(GATES + "        - {query: up, max: 0, window: 1m, min_messages: 1}  # <-\n"),
        "routes[0].rollout.gates[0].name: required for a query gate",
    ),
    (
        "query_unknown_placeholder",
        plan(
            GATES + "        - name: q\n          query: 'up{job=\"$job\"}'  # <-\n"
            "          max: 0\n          window: 1m\n          min_messages: 1\n"
        ),
        "routes[0].rollout.gates[0].query: may only use $route, $window",
    ),
    (
        "duplicate_gate_name",
        plan(
            GOOD
            + "      gates:\n"
            + GATE
            + "        - {metric: fallback_ratio, max: 0.5, window: 1m, min_messages: 1}  # <-\n"
        ),
        "routes[0].rollout.gates[1].name: duplicate gate name 'fallback_ratio' (first at line",
    ),
    (
        "gate_name_not_plain",
        plan(
            GATES + "        - name: 'a b'  # <-\n          metric: reject_ratio\n"
            "          max: 0\n          window: 1m\n          min_messages: 1\n"
        ),
        "routes[0].rollout.gates[0].name: 'a b' may only contain",
    ),
    (
        "gate_route_unknown",
        plan(
            GATES + "        - metric: mirror_failure_ratio\n          max: 0\n"
            "          window: 1m\n          min_messages: 1\n          route: nowhere  # <-\n"
        ),
        "routes[0].rollout.gates[0].route: no route named 'nowhere' in this file",
    ),
    (
        "state_phase_unknown",
        plan(GATES + GATE + "      state: {phase: paused}  # <-\n"),
        "routes[0].rollout.state.phase: 'paused' is not one of rolling, rolled_back, completed",
    ),
    (
        "state_since_without_timezone",
        plan(GATES + GATE + '      state: {since: "2025-05-01T10:00:00"}  # <-\n'),
        "routes[0].rollout.state.since: must be an ISO 8601 timestamp with a timezone",
    ),
    (
        "state_gate_value_not_a_number",
        plan(GATES + GATE + "      state: {gates: {fallback_ratio: high}}  # <-\n"),
        "routes[0].rollout.state.gates.fallback_ratio: must be a number",
    ),
]


MIRROR = "  - name: shadow\n    match: {exact: /queue/shadow}\n    mode: mirror\n"


def verify_plan(gate: str, extra_routes: str = MIRROR) -> str:
    """The pay route's plan with one gate line ``gate`` (indented 8), then ``extra_routes``."""
    return plan(GATES + gate) + extra_routes


VERIFY_CASES: list[tuple[str, str, str]] = [
    (
        "verify_and_metric",
        verify_plan(
            "        - metric: reject_ratio\n          verify: /queue/shadow  # <-\n"
            "          min_messages: 1\n"
        ),
        "routes[0].rollout.gates[0]: has both 'metric' and 'verify'; use one",
    ),
    (
        "verify_a_topic",
        verify_plan("        - {verify: /topic/shadow, min_messages: 1}  # <-\n"),
        "routes[0].rollout.gates[0].verify: '/topic/shadow' is not one queue",
    ),
    (
        "verify_a_wildcard",
        verify_plan("        - {verify: /queue/shadow.>, min_messages: 1}  # <-\n"),
        "routes[0].rollout.gates[0].verify: '/queue/shadow.>' is not one queue",
    ),
    (
        "verify_with_a_window",
        verify_plan(
            "        - verify: /queue/shadow\n          window: 5m  # <-\n"
            "          min_messages: 1\n"
        ),
        "routes[0].rollout.gates[0].window: not allowed for a verify gate (it compares the "
        "two queues as they are when it runs",
    ),
    (
        "verify_with_min",
        verify_plan(
            "        - verify: /queue/shadow\n          min: 1  # <-\n          min_messages: 1\n"
        ),
        "routes[0].rollout.gates[0].min: not allowed for a verify gate",
    ),
    (
        "verify_with_route",
        verify_plan(
            "        - verify: /queue/shadow\n          route: shadow  # <-\n"
            "          min_messages: 1\n"
        ),
        "routes[0].rollout.gates[0].route: not allowed for a verify gate",
    ),
    (
        "verify_negative_max",
        verify_plan(
            "        - verify: /queue/shadow\n          max: -1  # <-\n          min_messages: 1\n"
        ),
        "routes[0].rollout.gates[0].max: must not be negative",
    ),
    (
        "verify_without_min_messages",
        verify_plan("        - {verify: /queue/shadow}  # <-\n"),
        "routes[0].rollout.gates[0].min_messages: required (below this many messages on "
        "legacy's queue",
    ),
    (
        "verify_a_queue_no_route_matches",
        verify_plan("        - {verify: /queue/nowhere, min_messages: 1}  # <-\n"),
        "routes[0].rollout.gates[0].verify: no route of this file matches /queue/nowhere "
        "(it goes to legacy only)",
    ),
    (
        "verify_twice_unnamed",
        verify_plan(
            "        - {verify: /queue/shadow, min_messages: 1}\n"
            "        - {verify: /queue/shadow, max: 2, min_messages: 1}  # <-\n"
        ),
        "routes[0].rollout.gates[1].name: duplicate gate name 'verify'",
    ),
]
CASES += VERIFY_CASES


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_plan_is_refused_at_its_line(text: str, reason: str) -> None:
    assert_refused(text, reason)


def test_a_verify_gate_names_a_mirror_routes_queue() -> None:
    text = verify_plan(
        "        - {verify: /queue/shadow, min_messages: 50}\n"
        "        - {name: strict, verify: /queue/shadow, max: 3, min_messages: 0}\n"
    )
    table = parse_routes(text, "routes.yaml")
    rollout = table.routes[0].rollout
    assert rollout is not None and not table.warnings
    default, named = rollout.gates
    assert (default.name, default.verify, default.max, default.min_messages) == (
        "verify",
        "/queue/shadow",
        0.0,
        50.0,
    )
    assert default.window is None and default.metric is None and default.query is None
    assert (named.name, named.max, named.min_messages) == ("strict", 3.0, 0.0)
    assert default.document() == {
        "name": "verify",
        "verify": "/queue/shadow",
        "max": 0.0,
        "min_messages": 50.0,
    }


@pytest.mark.parametrize(
    ("route", "now"),
    [
        ("    mode: legacy\n", "mode legacy"),
        ("    mode: mirror\n    dry_run: true\n", "dry-run mirror"),
    ],
)
def test_a_verify_gate_on_a_queue_that_is_no_longer_mirrored_loads_with_a_warning(
    route: str, now: str
) -> None:
    """Setting the mirror to legacy stays a one-line rollback: the gate then holds."""
    shadow = "  - name: shadow\n    match: {exact: /queue/shadow}\n" + route
    gate = "        - {verify: /queue/shadow, min_messages: 1}\n"
    text = verify_plan(gate, shadow)
    table = parse_routes(text, "routes.yaml")
    line = text.splitlines().index(gate.rstrip("\n")) + 1
    assert table.warnings == (
        f"routes.yaml:{line}: routes[0].rollout.gates[0].verify: /queue/shadow is routed by "
        f"route 'shadow' ({now}), not a mirror: the gate has no answer and holds the rollout "
        "until that route is a mirror again",
    )
