"""One controller pass over the routes file, and the loop that repeats it.

A pass reads the file, and for every split route whose rollout is rolling: measures its
gates, decides (``decide_step``), and when the decision changes the file, edits it and
writes it through the target (one write, so one commit, per step). Then it records the
decision as a fact with the gate values. Routes are taken one at a time, each on the
file as the previous one left it.

Invariants:
- No state between passes: a pass starts from the file (and the remote's head, for git),
  so a controller restarted at any point resumes where the file says.
- A fact is written after the step took effect (file replaced, commit pushed), never
  before; a step that could not be written is a ``rollout_held`` with the reason.
- When the file changed under a step (``Conflict``), the step is decided again on the new
  content with the same gate measurements, up to ``retries`` times, then reported held.
- ``dry_run`` evaluates, decides and builds the edit (so the would-be routes version is
  known and the edit is checked) but writes nothing; its facts say ``dry_run: true``.
- Verify gates (both brokers browsed) run only when every other gate passes and the step
  is due, once per decision, on the routes file as it is then; until then they are
  ``not_run``. Each run writes its ``verify_finished`` fact before the step's fact.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from ..facts import Fact, FactSink
from ..routes import Route, RoutesError, RouteTable, parse_routes
from ..routes.rollout import Phase, format_time
from .decide import Action, Step, decide_step
from .edit import EditError, RouteEdit, edit_routes
from .gates import GateResult, Query, Verdict, Verifier, evaluate
from .targets import Conflict, Target, TargetError

_FACTS = {
    Action.ADVANCE: Fact.ROLLOUT_ADVANCED,
    Action.HOLD: Fact.ROLLOUT_HELD,
    Action.ROLL_BACK: Fact.ROLLOUT_ROLLED_BACK,
    Action.COMPLETE: Fact.ROLLOUT_COMPLETED,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    route: str
    step: Step
    gates: tuple[GateResult, ...]
    written: bool
    routes_version: str | None = None  # after the step (would be, in a dry run)
    commit: str | None = None


class RolloutController:
    def __init__(
        self,
        target: Target,
        query: Query,
        facts: FactSink,
        *,
        dry_run: bool = False,
        retries: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        out: TextIO | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.target = target
        self.query = query
        self.verifier = verifier
        self.facts = facts
        self.dry_run = dry_run
        self.retries = retries
        self.clock = clock
        self.out = out  # None: sys.stderr as it is when a line is written

    # -- one pass -------------------------------------------------------------------------

    def run_pass(self) -> list[Outcome]:
        """Decide every rolling route once; raises ``RoutesError``/``TargetError`` when
        the file cannot be read at all (nothing was decided)."""
        self.target.prepare()
        table = self._load(self.target.read())
        outcomes = []
        for name in [route.name for route in table.routes if _rolling(route)]:
            route = next(r for r in self._load(self.target.read()).routes if r.name == name)
            if not _rolling(route):
                continue
            assert route.rollout is not None
            gates = evaluate(route.rollout.gates, route.name, self.query)
            outcome = self._step(name, gates)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _step(self, name: str, gates: tuple[GateResult, ...]) -> Outcome | None:
        for _ in range(self.retries + 1):
            before = self.target.read()
            table = self._load(before)
            route = next((r for r in table.routes if r.name == name), None)
            if route is None or not _rolling(route):
                return None  # changed by someone else meanwhile: theirs wins
            now = self.clock()
            step = decide_step(route, gates, now)
            if step.awaiting_verify:
                gates = self._verify(gates, table)
                step = decide_step(route, gates, now)
            if not step.writes:
                return self._record(table, Outcome(name, step, gates, written=False))
            try:
                after, new_table = edit_routes(before, table.source, _edit_of(name, step))
            except EditError as exc:
                return self._held(table, name, step, gates, f"cannot edit the routes file: {exc}")
            if self.dry_run:
                outcome = Outcome(name, step, gates, False, new_table.version)
                return self._record(table, outcome)
            message = commit_message(route, step, gates, table.version, new_table.version)
            try:
                commit = self.target.write(before, after, message)
            except Conflict:
                self.target.prepare()
                continue
            except TargetError as exc:
                return self._held(table, name, step, gates, f"not written: {exc}")
            return self._record(table, Outcome(name, step, gates, True, new_table.version, commit))
        table = self._load(self.target.read())
        return self._held(
            table,
            name,
            step,
            gates,
            f"not written: the routes file changed under the step {self.retries + 1} times",
        )

    def _verify(self, gates: tuple[GateResult, ...], table: RouteTable) -> tuple[GateResult, ...]:
        """The verify gates not run yet, run now (the other results are kept)."""
        return tuple(
            self._verify_one(result, table) if result.verdict is Verdict.NOT_RUN else result
            for result in gates
        )

    def _verify_one(self, result: GateResult, table: RouteTable) -> GateResult:
        if self.verifier is None:
            why = "this controller was started without a verifier for verify gates"
            return GateResult(result.gate, result.route, Verdict.ERROR, error=why)
        return self.verifier(result.gate, table)

    def _load(self, data: bytes) -> RouteTable:
        return parse_routes(data, str(self.target.path))

    def _held(
        self, table: RouteTable, name: str, step: Step, gates: tuple[GateResult, ...], why: str
    ) -> Outcome:
        held = Step(Action.HOLD, step.weight, step.weight, f"{step.action} {why}")
        return self._record(table, Outcome(name, held, gates, written=False))

    def _record(self, table: RouteTable, outcome: Outcome) -> Outcome:
        step = outcome.step
        fields: dict[str, Any] = {
            "route": outcome.route,
            "gates": [result.as_fact() for result in outcome.gates],
            "reason": step.reason,
            "dry_run": self.dry_run,
            "target": self.target.describe(),
        }
        if step.action is Action.HOLD:
            fields["weight"] = step.weight
            fields["next_step_at"] = (
                None if step.next_step_at is None else format_time(step.next_step_at)
            )
            fields["routes_version"] = table.version
        else:
            fields["from_weight"] = step.weight
            fields["to_weight"] = step.new_weight
            fields["routes_version"] = outcome.routes_version
            fields["previous_version"] = table.version
            fields["written"] = outcome.written
            fields["commit"] = outcome.commit
        if step.action is Action.COMPLETE:
            fields["promoted"] = step.promote
        if step.action is Action.ROLL_BACK:
            fields["breached"] = [r.gate.name for r in outcome.gates if r.verdict is Verdict.BREACH]
        self.facts.emit(_FACTS[step.action], **fields)
        self._say(outcome)
        return outcome

    def _say(self, outcome: Outcome) -> None:
        step = outcome.step
        if step.action is Action.HOLD:
            head = f"held at {step.weight:g}%"
        elif step.action is Action.COMPLETE:
            head = "completed" + (", promoted to cutover" if step.promote else "")
        else:
            verb = "advanced" if step.action is Action.ADVANCE else "rolled back"
            head = f"{verb} {step.weight:g}% -> {step.new_weight:g}%"
        dry = " (dry run: not written)" if self.dry_run and step.writes else ""
        print(f"rollout {outcome.route}: {head}{dry}: {step.reason}", file=self._out(), flush=True)

    def _out(self) -> TextIO:
        return self.out if self.out is not None else sys.stderr

    # -- the loop -------------------------------------------------------------------------

    def run_forever(self, interval: float, stop: threading.Event) -> None:
        """A pass every ``interval`` seconds (from pass start to pass start) until ``stop``."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_pass()
            except (RoutesError, TargetError) as exc:
                print(f"rollout: pass skipped: {exc}", file=self._out(), flush=True)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))


def _rolling(route: Route) -> bool:
    return route.rollout is not None and route.rollout.phase is Phase.ROLLING


def _edit_of(name: str, step: Step) -> RouteEdit:
    if step.promote:
        return RouteEdit(name, promote=True)
    weight = None if step.new_weight == step.weight else step.new_weight
    return RouteEdit(name, weight=weight, state=step.state)


def commit_message(
    route: Route, step: Step, gates: tuple[GateResult, ...], old_version: str, new_version: str
) -> str:
    """The commit of one step: what changed in the subject, the gate values in the body."""
    if step.action is Action.COMPLETE:
        subject = f"rollout {route.name}: completed at {step.weight:g}%" + (
            ", promoted to cutover" if step.promote else ""
        )
    elif step.action is Action.ROLL_BACK:
        subject = f"rollout {route.name}: rolled back {step.weight:g}% -> 0%"
    else:
        plan = route.rollout
        assert plan is not None
        subject = (
            f"rollout {route.name}: weight {step.weight:g}% -> {step.new_weight:g}% "
            f"(step {plan.step_number(step.new_weight)} of {len(plan.steps)})"
        )
    lines = [subject, "", step.reason, "", "gates:"]
    lines += [f"  {result.describe()}" for result in gates]
    lines += ["", f"routes version {old_version} -> {new_version}", "by strangler rollout"]
    return "\n".join(lines) + "\n"
