"""What a rollout does this pass: advance, hold, roll back or complete. Pure.

Invariants:
- Only a rolling plan on a split route is decided; the decision depends on nothing but
  the route as the file has it (weight, plan, state), the gate results and ``now``, so a
  restarted controller decides exactly as the one before it would have.
- A breach is acted on at once, whatever the step's time: ``on_breach: rollback`` sets
  the weight to 0 and stops the rollout (phase ``rolled_back``) until an operator starts
  it again; ``hold`` keeps the weight.
- Without a breach, any gate without a verdict (not enough data, Prometheus error) holds.
- The weight goes up only when the step's time is over (``since + every``) and every gate
  passed; after the last step the same condition completes the rollout (promoting the
  route to cutover when the plan says so).
- A verify gate not run (``Verdict.NOT_RUN``) changes nothing while the step is held or
  rolled back anyway; when the step would be taken it holds with ``awaiting_verify``: the
  controller runs the verify gates then and decides again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ..routes import Route
from ..routes.rollout import OnBreach, Phase, RolloutState, format_time
from .gates import GateResult, Verdict


class Action(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    ROLL_BACK = "roll_back"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    weight: float  # before
    new_weight: float  # after (the same when held; cutover counts as 100)
    reason: str
    state: RolloutState | None = None  # what to write; None when nothing is written
    promote: bool = False  # complete: the route becomes cutover
    next_step_at: datetime | None = None  # held: when the next step is due (None: now)
    awaiting_verify: bool = False  # held only because verify gates have not run yet

    @property
    def writes(self) -> bool:
        return self.state is not None


def decide_step(route: Route, results: Sequence[GateResult], now: datetime) -> Step:
    plan = route.rollout
    if plan is None or route.weight is None or plan.phase is not Phase.ROLLING:
        raise ValueError(f"route {route.name} has no rolling rollout plan")
    weight = route.weight
    values = tuple((result.gate.name, result.value) for result in results)
    breached = [result for result in results if result.verdict is Verdict.BREACH]
    if breached:
        why = "; ".join(result.summary() for result in breached)
        if plan.on_breach is OnBreach.ROLLBACK:
            return Step(
                Action.ROLL_BACK,
                weight,
                0.0,
                f"breach: {why}",
                state=RolloutState(Phase.ROLLED_BACK, now, values),
            )
        return Step(
            Action.HOLD,
            weight,
            weight,
            f"breach (on_breach: hold): {why}",
            next_step_at=plan.next_step_at(),
        )
    undecided = [r for r in results if r.verdict in (Verdict.NO_DATA, Verdict.ERROR)]
    if undecided:
        why = "; ".join(result.summary() for result in undecided)
        return Step(Action.HOLD, weight, weight, why, next_step_at=plan.next_step_at())
    if not plan.due(now):
        at = plan.next_step_at()
        assert at is not None  # not due: there is a since
        return Step(
            Action.HOLD,
            weight,
            weight,
            f"gates pass; next step at {format_time(at)}",
            next_step_at=at,
        )
    not_run = [r for r in results if r.verdict is Verdict.NOT_RUN]
    if not_run:
        why = "; ".join(result.summary() for result in not_run)
        return Step(
            Action.HOLD, weight, weight, why, next_step_at=plan.next_step_at(), awaiting_verify=True
        )
    next_weight = plan.next_weight(weight)
    if next_weight is not None:
        return Step(
            Action.ADVANCE,
            weight,
            next_weight,
            "gates pass and the step's time is over",
            state=RolloutState(Phase.ROLLING, now, values),
        )
    return Step(
        Action.COMPLETE,
        weight,
        100.0 if plan.promote else weight,
        "gates pass at the last step" + ("; promoted to cutover" if plan.promote else ""),
        state=RolloutState(Phase.COMPLETED, now, values),
        promote=plan.promote,
    )
