"""The PromQL behind each gate, built from the metrics contract every proxy exports.

Pure. Every query sums over the fleet (all proxies Prometheus scrapes) and returns one
number. Ratios divide by the messages routed in the window; a counter that never moved
(its series absent) counts as 0, so a clean route reads 0, not "no data". A route name is
safe inside a PromQL string: the loader allows only letters, digits and ``_.-``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Final

from ..routes.rollout import Gate, GateMetric

ROUTED: Final = "strangler_messages_routed_total"
_RATIO_COUNTERS: Final = {
    GateMetric.FALLBACK_RATIO: "strangler_fallbacks_total",
    GateMetric.REJECT_RATIO: "strangler_rejects_total",
    GateMetric.MIRROR_FAILURE_RATIO: "strangler_mirror_failures_total",
    GateMetric.IN_DOUBT_RATIO: "strangler_in_doubt_total",
}
_LATENCY: Final = "strangler_confirm_seconds"


@dataclass(frozen=True, slots=True)
class GateQueries:
    value: str  # the number compared with the gate's threshold
    traffic: str  # the messages behind it, compared with min_messages


def gate_queries(gate: Gate, plan_route: str) -> GateQueries:
    if gate.window is None:
        raise ValueError(f"gate {gate.name}: a verify gate asks the brokers, not Prometheus")
    route = gate.route or plan_route
    window = str(gate.window)
    selector = f'{{route="{route}"}}'
    routed = f"sum(increase({ROUTED}{selector}[{window}]))"
    if gate.query is not None:
        value = string.Template(gate.query).substitute(route=route, window=window)
        return GateQueries(value=value, traffic=routed)
    if gate.metric is GateMetric.CONFIRM_P99_SECONDS:
        amazonmq = f'{{route="{route}",broker="amazonmq"}}'
        return GateQueries(
            value=(
                "histogram_quantile(0.99, sum by (le) "
                f"(rate({_LATENCY}_bucket{amazonmq}[{window}])))"
            ),
            traffic=f"sum(increase({_LATENCY}_count{amazonmq}[{window}]))",
        )
    assert gate.metric is not None
    counter = _RATIO_COUNTERS[gate.metric]
    return GateQueries(
        value=f"(sum(increase({counter}{selector}[{window}])) or vector(0)) / {routed}",
        traffic=routed,
    )
