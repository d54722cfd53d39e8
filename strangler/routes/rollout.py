"""A split route's rollout plan: the weights it steps through, when, and the gates that
allow each step (``rollout:`` in routes.yaml, run by ``strangler rollout``).

Invariants:
- Pure values, like the rest of ``routes/``: no I/O, no clock. "Now" is always an
  argument, so a restarted controller (or the proxy's /routes) computes the same thing
  from the same file.
- ``steps`` are strictly ascending weights in [0, 100]; ``promote`` is only set when the
  last step is 100 (a route is promoted to ``cutover`` only from 100%).
- A plan has at least one gate: a rollout that cannot see trouble could never roll back.
- A gate is a Prometheus query (``metric`` or ``query``, over a ``window``) or a
  ``verify`` of a mirrored queue (both brokers browsed as ``strangler verify`` does: a
  snapshot, so no window; it breaches above ``max`` messages missing on Amazon MQ).
- Gate names are unique within a plan and are plain names (letters, digits, ``_.-``), so
  they can be keys in ``state.gates``, facts and commit messages without quoting issues.
- ``state`` is written by the controller only; it is the whole memory of a rollout:
  ``since`` is when the controller last changed the weight (None: never, so the next
  step is due at its next pass, gates permitting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

# One number and one unit, a subset of PromQL's durations (so a window is also valid PromQL).
DURATION: Final = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
GATE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
# What a custom gate query may name: the route it measures and the gate's window.
QUERY_PLACEHOLDERS: Final = ("route", "window")


def parse_duration(text: str) -> Duration | None:
    """``"10m"`` -> Duration(600 s); None when ``text`` is not ``<integer><ms|s|m|h|d>``."""
    match = DURATION.fullmatch(text)
    if match is None:
        return None
    return Duration(int(match[1]) * _UNIT_SECONDS[match[2]], text)


@dataclass(frozen=True, slots=True)
class Duration:
    seconds: float
    text: str  # as written; valid PromQL (``[5m]``)

    def __str__(self) -> str:
        return self.text

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)


class GateMetric(StrEnum):
    """Built-in gates, each a query over the metrics every proxy exports (docs/rollout.md)."""

    FALLBACK_RATIO = "fallback_ratio"  # fallbacks / messages routed
    REJECT_RATIO = "reject_ratio"  # rejects / messages routed
    MIRROR_FAILURE_RATIO = "mirror_failure_ratio"  # mirror failures / messages routed
    IN_DOUBT_RATIO = "in_doubt_ratio"  # possibly stored twice / messages routed
    CONFIRM_P99_SECONDS = "confirm_p99_seconds"  # Amazon MQ confirmation latency, p99


class OnBreach(StrEnum):
    ROLLBACK = "rollback"  # weight 0, and the rollout stops until an operator restarts it
    HOLD = "hold"  # stay at this step until the gates pass again


class Phase(StrEnum):
    ROLLING = "rolling"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class Gate:
    """One condition for the next step.

    Exactly one of ``metric`` (built in), ``query`` (PromQL with ``$route`` and
    ``$window``), both measured over ``window`` across the fleet, and ``verify`` (a
    mirrored queue, ``/queue/NAME``, compared on both brokers when a step is due; no
    window); exactly one of ``max`` (breach above) and ``min`` (breach below; not for
    ``verify``). Fewer than ``min_messages`` messages (routed in the window; for
    ``verify``, held by legacy's queue) is "not enough data": neither a pass nor a breach.
    """

    name: str
    window: Duration | None  # None: a verify gate (a snapshot)
    min_messages: float
    metric: GateMetric | None = None
    query: str | None = None
    max: float | None = None
    min: float | None = None
    route: str | None = None  # the route measured; None: the plan's own route
    verify: str | None = None  # the mirrored queue compared on both brokers

    def __post_init__(self) -> None:
        kinds = [k for k in (self.metric, self.query, self.verify) if k is not None]
        if len(kinds) != 1:
            raise ValueError(f"Gate {self.name}: give exactly one of metric, query and verify")
        if (self.max is None) == (self.min is None):
            raise ValueError(f"Gate {self.name}: give exactly one of max and min")
        if (self.window is None) != (self.verify is not None):
            raise ValueError(f"Gate {self.name}: a window for Prometheus gates only")
        if self.verify is not None and (self.min is not None or self.route is not None):
            raise ValueError(f"Gate {self.name}: a verify gate has a max and no route")

    @property
    def over(self) -> str:
        """What the gate's messages are, for people: ``over 5m``, ``on legacy's /queue/x``."""
        if self.window is None:
            return f"on legacy's {self.verify}"
        return f"over {self.window}"

    def breached_by(self, value: float) -> bool:
        if self.max is not None:
            return value > self.max
        assert self.min is not None
        return value < self.min

    def threshold(self) -> str:
        """``"max 0.01"`` or ``"min 0.99"``, for people."""
        return f"max {self.max:g}" if self.max is not None else f"min {self.min:g}"

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.metric is not None:
            out["metric"] = str(self.metric)
        elif self.query is not None:
            out["query"] = self.query
        else:
            out["verify"] = self.verify
        out["max" if self.max is not None else "min"] = (
            self.max if self.max is not None else self.min
        )
        if self.window is not None:
            out["window"] = str(self.window)
        out["min_messages"] = self.min_messages
        if self.route is not None:
            out["route"] = self.route
        return out


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What ``strangler rollout`` wrote last: the phase, when the weight last changed, and
    the gate values that decided it (None: the gate had no value)."""

    phase: Phase = Phase.ROLLING
    since: datetime | None = None  # timezone-aware
    gates: tuple[tuple[str, float | None], ...] = ()


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    steps: tuple[float, ...]
    every: Duration
    gates: tuple[Gate, ...]
    on_breach: OnBreach = OnBreach.ROLLBACK
    promote: bool = False  # after the last step (100) passed: the route becomes cutover
    state: RolloutState | None = None

    def __post_init__(self) -> None:
        if not self.steps or any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("RolloutPlan: steps must be strictly ascending")
        if not all(0.0 <= s <= 100.0 for s in self.steps):
            raise ValueError("RolloutPlan: steps must be between 0 and 100")
        if self.promote and self.steps[-1] != 100.0:
            raise ValueError("RolloutPlan: promote needs a last step of 100")
        if not self.gates:
            raise ValueError("RolloutPlan: at least one gate")

    @property
    def phase(self) -> Phase:
        return Phase.ROLLING if self.state is None else self.state.phase

    @property
    def since(self) -> datetime | None:
        return None if self.state is None else self.state.since

    def next_weight(self, weight: float) -> float | None:
        """The first step above ``weight``; None when the last step is reached."""
        return next((step for step in self.steps if step > weight), None)

    def step_number(self, weight: float) -> int:
        """How many steps ``weight`` has reached (0 before the first, len(steps) at the last)."""
        return sum(1 for step in self.steps if step <= weight)

    def next_step_at(self) -> datetime | None:
        """When the next step (or completion) is due, gates permitting.

        None while rolling with no ``since`` (due at the controller's next pass) and once
        the rollout rolled back or completed (nothing is due).
        """
        if self.phase is not Phase.ROLLING or self.since is None:
            return None
        return self.since + self.every.delta

    def due(self, now: datetime) -> bool:
        at = self.next_step_at()
        return self.phase is Phase.ROLLING and (at is None or now >= at)

    def describe(self) -> str:
        """``rollout 1>5>25>50>100 every 10m`` (plus how it ends), for people."""
        text = "rollout " + ">".join(f"{s:g}" for s in self.steps) + f" every {self.every}"
        if self.promote:
            text += " then cutover"
        if self.phase is not Phase.ROLLING:
            text += f" ({self.phase})"
        return text

    def document(self, weight: float) -> dict[str, Any]:
        """The plan and where it stands, as /routes and /status show it."""
        next_at = self.next_step_at()
        return {
            "steps": list(self.steps),
            "every": str(self.every),
            "on_breach": str(self.on_breach),
            "promote": self.promote,
            "gates": [gate.document() for gate in self.gates],
            "phase": str(self.phase),
            "step": self.step_number(weight),
            "steps_total": len(self.steps),
            "weight": weight,
            "next_weight": self.next_weight(weight) if self.phase is Phase.ROLLING else None,
            "since": None if self.since is None else format_time(self.since),
            "next_step_at": None if next_at is None else format_time(next_at),
            "last_gates": {} if self.state is None else dict(self.state.gates),
        }


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as the controller writes ``since``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 timestamp with a timezone; None when not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
