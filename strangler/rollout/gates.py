"""A gate's verdict: pass, breach, not enough data, error, or not run.

"Not enough data" (fewer than ``min_messages`` messages in the window, or no value) and
"error" (Prometheus failed; for a verify gate, a broker could not be reached or browsed)
are neither pass nor breach: they hold the rollout where it is. A breach is judged only
on enough data.

Prometheus gates are measured every pass (``evaluate``). A verify gate browses both
brokers, so it is "not run" (``Verdict.NOT_RUN``) until the controller is about to take a
step, and then run through a ``Verifier`` (``strangler.rollout.verify_gate``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..routes import RouteTable
from ..routes.rollout import Gate
from .prometheus import PrometheusError
from .queries import gate_queries

Query = Callable[[str], float | None]
# A verify gate, run on the routes file as it is now: its result (never raises).
Verifier = Callable[[Gate, RouteTable], "GateResult"]


class Verdict(StrEnum):
    PASS = "pass"
    BREACH = "breach"
    NO_DATA = "not_enough_data"
    ERROR = "error"
    NOT_RUN = "not_run"  # a verify gate, until a step is due: it browses both brokers


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: Gate
    route: str  # the route measured (a verify gate: its queue)
    verdict: Verdict
    value: float | None = None
    messages: float | None = None
    error: str | None = None

    def as_fact(self) -> dict[str, Any]:
        gate = self.gate
        out: dict[str, Any] = {
            "gate": gate.name,
            "value": self.value,
            "verdict": str(self.verdict),
            "messages": self.messages,
            "min_messages": gate.min_messages,
        }
        if gate.window is not None:
            out["window"] = str(gate.window)
        else:
            out["verify"] = gate.verify
        if gate.max is not None:
            out["max"] = gate.max
        else:
            out["min"] = gate.min
        if gate.route is not None:
            out["route"] = gate.route
        if self.error is not None:
            out["error"] = self.error
        return out

    def describe(self) -> str:
        """``fallback_ratio 0.0012 (max 0.01, 4210 messages over 5m): pass``"""
        value = "no value" if self.value is None else f"{self.value:.6g}"
        messages = "?" if self.messages is None else f"{self.messages:.0f}"
        text = (
            f"{self.gate.name} {value} ({self.gate.threshold()}, "
            f"{messages} messages {self.gate.over}): {self.verdict}"
        )
        return text + (f" ({self.error})" if self.error else "")

    def summary(self) -> str:
        """Why it counts, for a fact's reason: ``fallback_ratio 0.098 above max 0.02 (512
        messages over 3s)``, ``fallback_ratio: not enough data (12 of 20 messages over 3s)``"""
        gate = self.gate
        messages = "?" if self.messages is None else f"{self.messages:.0f}"
        if self.verdict is Verdict.ERROR:
            return f"{gate.name}: no answer ({self.error})"
        if self.verdict is Verdict.NOT_RUN:
            return f"{gate.name}: not run (a verify gate runs when a step is due)"
        if self.value is None:
            return f"{gate.name}: no value ({messages} messages {gate.over})"
        if self.verdict is Verdict.NO_DATA:
            return (
                f"{gate.name}: not enough data ({messages} of {gate.min_messages:g} "
                f"messages {gate.over})"
            )
        if self.verdict is Verdict.BREACH:
            side = "above" if gate.max is not None else "below"
        else:
            side = "within"
        return (
            f"{gate.name} {self.value:.6g} {side} {gate.threshold()} "
            f"({messages} messages {gate.over})"
        )


def evaluate(gates: Sequence[Gate], plan_route: str, query: Query) -> tuple[GateResult, ...]:
    return tuple(evaluate_one(gate, plan_route, query) for gate in gates)


def evaluate_one(gate: Gate, plan_route: str, query: Query) -> GateResult:
    if gate.verify is not None:
        return GateResult(gate, gate.verify, Verdict.NOT_RUN)
    route = gate.route or plan_route
    queries = gate_queries(gate, plan_route)
    try:
        messages = query(queries.traffic) or 0.0
        value = query(queries.value)
    except PrometheusError as exc:
        return GateResult(gate, route, Verdict.ERROR, error=exc.reason)
    if messages < gate.min_messages or value is None:
        return GateResult(gate, route, Verdict.NO_DATA, value, messages)
    verdict = Verdict.BREACH if gate.breached_by(value) else Verdict.PASS
    return GateResult(gate, route, verdict, value, messages)
