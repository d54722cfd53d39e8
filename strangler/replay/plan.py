"""``strangler plan old.yaml new.yaml``: what a routes change would do, like a terraform plan.

Three layers, each from the one before it:
1. routes added / removed / changed (``strangler.routes.plan.plan_change``), plus broker
   and table-wide settings changes;
2. destinations that change broker: every destination an *exact* route names in either
   file (prefix and glob routes name no destination), compared by what it would get;
3. with captures or facts files: every destination seen there, with how many of its
   messages would move from where to where (``report.Report`` with ``against``).

Invariants:
- Pure apart from reading the given files; no broker is contacted.
- ``changed`` is False exactly when all three layers are empty (exit code 0; else 3).
- A destination "changes broker" when its routing profile differs: targets (or split
  weight and key), Amazon MQ destination name, or dry-run; a rule rename alone does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..routes import Route, RouteTable
from ..routes.plan import RouteChange, RoutesPlan, plan_change
from .report import Outcome, Report
from .sources import SourceStats


@dataclass(frozen=True, slots=True)
class Profile:
    """How a destination is routed, independent of any one message."""

    rule: str
    kind: str  # "legacy" | "amazonmq" | "both" | "split 25% by JMSXGroupID"
    dry_run: bool
    amazonmq_destination: str | None

    def describe(self, destination: str) -> str:
        text = f"{self.rule}: {self.kind}"
        if self.amazonmq_destination not in (None, destination):
            text += f" (as {self.amazonmq_destination})"
        return text + (" (dry-run)" if self.dry_run else "")

    def moves_from(self, other: Profile) -> bool:
        return (self.kind, self.dry_run, self.amazonmq_destination) != (
            other.kind,
            other.dry_run,
            other.amazonmq_destination,
        )


def profile(table: RouteTable, destination: str) -> Profile:
    resolution = table.resolve(destination)
    if resolution.weight is None:
        outcome = Outcome.of(resolution.hit)
        return Profile(outcome.rule, outcome.label, outcome.dry_run, outcome.amazonmq_destination)
    route = resolution.route
    assert route is not None  # only split routes have a weight
    kind = f"split {resolution.weight:g}% to amazonmq by {route.sticky_header or 'trace id'}"
    hit = resolution.hit
    return Profile(hit.rule, kind, hit.dry_run, hit.amazonmq_destination)


@dataclass(frozen=True, slots=True)
class DestinationMove:
    destination: str
    before: Profile
    after: Profile

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "from": self.before.describe(self.destination),
            "to": self.after.describe(self.destination),
        }


@dataclass
class Plan:
    old: RouteTable
    new: RouteTable
    routes: RoutesPlan
    destinations: list[DestinationMove]
    messages: Report | None = None
    stats: SourceStats | None = None

    @property
    def changed(self) -> bool:
        moved = self.messages is not None and self.messages.changed > 0
        return not self.routes.empty or bool(self.destinations) or moved

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "old": self.old.source,
            "new": self.new.source,
            "changed": self.changed,
            **self.routes.as_dict(),
            "destinations": [move.as_dict() for move in self.destinations],
        }
        if self.messages is not None:
            report = self.messages.as_dict(self.stats)
            out["messages"] = {
                "read": self.messages.messages,
                "changed": report["changed"]["messages"],
                "changes": report["changed"]["changes"],
                "notes": report["notes"],
            }
        return out

    def render(self) -> str:
        lines = [
            f"strangler plan: {self.old.source} (version {self.old.version}) -> "
            f"{self.new.source} (version {self.new.version})",
            "",
        ]
        if not self.changed:
            lines.append("No changes: the new routes decide every destination as the old ones do.")
            return "\n".join(lines)
        if self.routes.changes:
            lines.append("Routes:")
            lines += [f"  {_change_text(change)}" for change in self.routes.changes]
        if self.routes.brokers_changed:
            lines.append(f"Brokers changed: {', '.join(self.routes.brokers_changed)}")
        if self.routes.settings_changed:
            settings = ", ".join(
                f"{name} {getattr(self.old, name)!r} -> {getattr(self.new, name)!r}"
                for name in self.routes.settings_changed
            )
            lines.append(f"Settings changed: {settings}")
        if self.destinations:
            lines += ["", "Destinations changing broker (named by exact routes):"]
            width = max(len(move.destination) for move in self.destinations)
            lines += [
                f"  {move.destination.ljust(width)}  {move.before.describe(move.destination)}"
                f"  ->  {move.after.describe(move.destination)}"
                for move in self.destinations
            ]
        if self.messages is not None:
            files = ", ".join(self.stats.files) if self.stats is not None else "the capture"
            lines += ["", f"Messages in {files}:"]
            lines += [f"  {line}" for line in self.messages.render_changes()]
            lines += [f"  note: {note}" for note in self.messages.notes(self.stats)]
        lines += ["", self.summary()]
        return "\n".join(lines)

    def summary(self) -> str:
        kinds = [change.kind for change in self.routes.changes]
        text = (
            f"Plan: {kinds.count('added')} route(s) to add, {kinds.count('changed')} to "
            f"change, {kinds.count('removed')} to remove; {len(self.destinations)} named "
            "destination(s) change broker"
        )
        if self.messages is not None:
            moved, read = self.messages.changed, self.messages.messages
            text += f"; {moved} of {read} messages decided differently"
        return text + "."


def make_plan(old: RouteTable, new: RouteTable) -> Plan:
    named = sorted(
        {
            route.pattern
            for table in (old, new)
            for route in table.routes
            if route.match_kind == "exact"
        }
    )
    moves = []
    for destination in named:
        before, after = profile(old, destination), profile(new, destination)
        if after.moves_from(before):
            moves.append(DestinationMove(destination, before, after))
    return Plan(old, new, plan_change(old, new), moves)


def _route_text(route: Route) -> str:
    return f"{route.describe()}  [{route.match_kind} {route.pattern}]"


def _change_text(change: RouteChange) -> str:
    if change.kind == "added":
        assert change.after is not None
        return f"+ {change.name}: {_route_text(change.after)}"
    if change.kind == "removed":
        assert change.before is not None
        return f"- {change.name}: {_route_text(change.before)}"
    assert change.before is not None and change.after is not None
    return (
        f"~ {change.name}: {_route_text(change.before)}  ->  {_route_text(change.after)}"
        f"  (changed: {', '.join(change.changed_fields)})"
    )
