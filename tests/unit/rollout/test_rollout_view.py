"""What /routes, /status and `strangler status` show of a rollout: only what the routes
file says (current step, next step time, last gate values)."""

from __future__ import annotations

from rollout_fixtures import ROUTES

from strangler.admin import routes_document
from strangler.admin.client import describe_rollout, render
from strangler.routes import parse_routes

STATE = (
    '      state: {phase: rolling, since: "2025-05-01T10:00:00Z", '
    "gates: {fallback_ratio: 0.0125}}\n"
)


def test_routes_shows_the_plan_where_it_stands_and_the_last_gate_values() -> None:
    table = parse_routes(ROUTES.replace("weight: 0 ", "weight: 1 ") + STATE, "routes.yaml")
    pay = next(r for r in routes_document(table)["routes"] if r["name"] == "pay")
    rollout = pay["rollout"]
    assert (rollout["step"], rollout["steps_total"], rollout["next_weight"]) == (1, 3, 50)
    assert rollout["next_step_at"] == "2025-05-01T10:10:00.000Z"
    assert rollout["last_gates"] == {"fallback_ratio": 0.0125}
    assert rollout["gates"][0]["metric"] == "fallback_ratio"
    orders = next(r for r in routes_document(table)["routes"] if r["name"] == "orders")
    assert orders["rollout"] is None


def test_status_prints_a_rollout_line_under_its_route() -> None:
    table = parse_routes(ROUTES.replace("weight: 0 ", "weight: 1 ") + STATE, "routes.yaml")
    pay = next(r for r in table.routes if r.name == "pay")
    assert pay.rollout is not None
    line = describe_rollout(pay.rollout.document(1.0))
    assert line == (
        "rollout: step 1/3 at 1% (rolling), next 50% at 2025-05-01T10:10:00.000Z, "
        "gates permitting; last gates: fallback_ratio=0.0125"
    )
    zero = {
        "routed": 0.0,
        "legacy": 0.0,
        "amazonmq": 0.0,
        "mirror_failures": 0.0,
        "fallbacks": 0.0,
        "rejects": 0.0,
        "in_doubt": 0.0,
    }
    status = {
        "routes_version": table.version,
        "source": "routes.yaml",
        "brokers_up": {},
        "routes": [
            {
                "route": "pay",
                "mode": "split",
                "total": zero,
                "last_1m": zero,
                "last_5m": zero,
                "rollout": pay.rollout.document(1.0),
            }
        ],
    }
    assert "\n  " + line in render(status)


def test_before_the_first_pass_the_next_step_is_the_controllers_next_pass() -> None:
    table = parse_routes(ROUTES, "routes.yaml")
    pay = next(r for r in table.routes if r.name == "pay")
    assert pay.rollout is not None
    assert describe_rollout(pay.rollout.document(0.0)) == (
        "rollout: step 0/3 at 0% (rolling), next 1% at the controller's next pass, gates permitting"
    )
