"""What the routes decide for captured SENDs: counts per route and destination, and diffs.

Invariants:
- ``decide_message`` is the live proxy's decision (``ClientSession._on_send``): the same
  ``strangler.routes.decide_send`` (the sticky value from the matched route's
  ``sticky_header``), with the trace id as message key (``CapturedMessage.key``).
- Counts are of decisions (``Decision.targets``: what the routes say), as facts report
  them in ``would_target`` for dry-run routes; a route in dry-run is flagged, since the
  proxy then still sends only to legacy.
- Two decisions "differ" when the rule, the targets, the Amazon MQ destination or the
  dry-run flag differ; each difference group keeps its first few keys as examples.
- Output is deterministic for the same input: rows in route-file order / sorted by
  destination, changes sorted by destination then count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..routes import AMAZONMQ, DEFAULT_RULE, LEGACY, Decision, RouteTable, decide_send
from .sources import CapturedMessage, SourceStats

BOTH: Final = "both"
LABELS: Final = (LEGACY, AMAZONMQ, BOTH)
DEFAULT_EXAMPLES: Final = 5


def targets_label(targets: Sequence[str]) -> str:
    """The targets as one word: legacy, amazonmq or both (a mirror)."""
    return BOTH if len(targets) > 1 else targets[0]


def decide_message(table: RouteTable, message: CapturedMessage) -> Decision:
    """The decision the live proxy makes for this SEND under ``table``."""
    return decide_send(table, message.destination, message.header, message.key(table.trace_header))


@dataclass(frozen=True, slots=True)
class Outcome:
    """The parts of a decision a person compares."""

    rule: str
    targets: tuple[str, ...]
    dry_run: bool
    amazonmq_destination: str | None

    @classmethod
    def of(cls, decision: Decision) -> Outcome:
        return cls(decision.rule, decision.targets, decision.dry_run, decision.amazonmq_destination)

    @property
    def label(self) -> str:
        return targets_label(self.targets)

    def describe(self, destination: str) -> str:
        text = f"{self.rule}: {self.label}"
        if self.amazonmq_destination not in (None, destination):
            text += f" (as {self.amazonmq_destination})"
        if self.dry_run:
            text += " (dry-run)"
        return text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "targets": list(self.targets),
            "dry_run": self.dry_run,
        }
        if self.amazonmq_destination is not None:
            out["amazonmq_destination"] = self.amazonmq_destination
        return out


@dataclass(slots=True)
class Counts:
    legacy: int = 0
    amazonmq: int = 0
    both: int = 0

    def add(self, label: str) -> None:
        setattr(self, label, getattr(self, label) + 1)

    @property
    def total(self) -> int:
        return self.legacy + self.amazonmq + self.both

    def as_dict(self) -> dict[str, int]:
        return {
            LEGACY: self.legacy,
            AMAZONMQ: self.amazonmq,
            BOTH: self.both,
            "total": self.total,
        }


@dataclass(slots=True)
class RouteRow:
    rule: str
    mode: str
    match: str
    dry_run: bool
    counts: Counts = field(default_factory=Counts)


@dataclass(slots=True)
class DestinationRow:
    destination: str
    rule: str
    amazonmq_destination: str | None
    counts: Counts = field(default_factory=Counts)


@dataclass(slots=True)
class Change:
    destination: str
    before: Outcome
    after: Outcome
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "from": self.before.as_dict(),
            "to": self.after.as_dict(),
            "count": self.count,
            "examples": self.examples,
        }


class Report:
    """Accumulates decisions for messages; ``against`` adds the old table's for a diff."""

    def __init__(
        self,
        table: RouteTable,
        against: RouteTable | None = None,
        *,
        examples: int = DEFAULT_EXAMPLES,
    ) -> None:
        self.table = table
        self.against = against
        self.examples = examples
        self.messages = 0
        self.stable_keys = 0  # SENDs keyed by a derived id (no trace header, no fact)
        self.routes: dict[str, RouteRow] = {
            route.name: RouteRow(
                route.name, str(route.mode), f"{route.match_kind} {route.pattern}", route.dry_run
            )
            for route in table.routes
        }
        self.routes[DEFAULT_RULE] = RouteRow(DEFAULT_RULE, LEGACY, "anything else", table.dry_run)
        self.destinations: dict[str, DestinationRow] = {}
        self.changes: dict[tuple[str, Outcome, Outcome], Change] = {}
        self.changed = 0

    def add(self, message: CapturedMessage) -> Decision:
        """Count ``message``; return its decision under the (new) table."""
        decision = decide_message(self.table, message)
        label = targets_label(decision.targets)
        self.messages += 1
        if (
            message.trace_id is None
            and message.live_trace_id is None
            and message.header(self.table.trace_header) is None
        ):
            self.stable_keys += 1
        self.routes[decision.rule].counts.add(label)
        row = self.destinations.get(message.destination)
        if row is None:
            row = self.destinations[message.destination] = DestinationRow(
                message.destination, decision.rule, decision.amazonmq_destination
            )
        row.counts.add(label)
        if self.against is not None:
            self._compare(message, decision)
        return decision

    def add_all(self, messages: Iterable[CapturedMessage]) -> Report:
        for message in messages:
            self.add(message)
        return self

    def _compare(self, message: CapturedMessage, decision: Decision) -> None:
        assert self.against is not None
        before = Outcome.of(decide_message(self.against, message))
        after = Outcome.of(decision)
        if before == after:
            return
        self.changed += 1
        group = (message.destination, before, after)
        change = self.changes.get(group)
        if change is None:
            change = self.changes[group] = Change(message.destination, before, after)
        change.count += 1
        if len(change.examples) < self.examples:
            change.examples.append(message.key(self.table.trace_header))

    # -- output -----------------------------------------------------------------------------

    def sorted_changes(self) -> list[Change]:
        return sorted(self.changes.values(), key=lambda c: (c.destination, -c.count))

    def notes(self, stats: SourceStats | None) -> list[str]:
        notes: list[str] = []
        if stats is not None and "facts" in stats.kinds:
            notes.append(
                "facts hold no sticky-header values: split decisions use each message's "
                "trace id as key"
            )
        if self.stable_keys:
            notes.append(
                f"{self.stable_keys} SENDs carried no {self.table.trace_header} header: "
                "keyed by a stable id from flow and frame index (the live proxy made a "
                "random one), so their split decisions are reproducible but may differ "
                "from the live ones"
            )
        if stats is not None:
            if stats.uncommitted:
                notes.append(f"{stats.uncommitted} SENDs in aborted/uncommitted transactions")
            if stats.incomplete:
                notes.append(f"{stats.incomplete} sessions ended inside a frame")
            if stats.truncated:
                notes.append(f"{stats.truncated} capture sessions were cut (memory bound)")
            if stats.skipped_flows:
                notes.append(f"{stats.skipped_flows} non-TCP flows skipped")
            notes.extend(stats.errors)
        return notes

    def as_dict(self, stats: SourceStats | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "routes_file": self.table.source,
            "routes_version": self.table.version,
            "messages": self.messages,
            "by_route": [
                {"rule": r.rule, "mode": r.mode, "match": r.match, "dry_run": r.dry_run}
                | r.counts.as_dict()
                for r in self.routes.values()
            ],
            "by_destination": [
                {"destination": d.destination, "rule": d.rule}
                | (
                    {"amazonmq_destination": d.amazonmq_destination}
                    if d.amazonmq_destination
                    else {}
                )
                | d.counts.as_dict()
                for d in sorted(self.destinations.values(), key=lambda d: d.destination)
            ],
            "notes": self.notes(stats),
        }
        if stats is not None:
            out["source"] = stats.as_dict()
        if self.against is not None:
            out["against_file"] = self.against.source
            out["against_version"] = self.against.version
            out["changed"] = {
                "messages": self.changed,
                "changes": [c.as_dict() for c in self.sorted_changes()],
            }
        return out

    def render(self, stats: SourceStats | None = None, *, title: str = "") -> str:
        lines: list[str] = []
        if title:
            lines.append(title)
        lines.append(
            f"{self.messages} SENDs decided with {self.table.source} "
            f"(routes version {self.table.version})"
        )
        lines.append("")
        lines += _table(
            ("route", "mode", "match", LEGACY, AMAZONMQ, BOTH, "total"),
            [
                (
                    r.rule + (" (dry-run)" if r.dry_run else ""),
                    r.mode,
                    r.match,
                    *_numbers(r.counts),
                )
                for r in self.routes.values()
            ],
        )
        lines.append("")
        destinations = sorted(self.destinations.values(), key=lambda d: d.destination)
        lines += _table(
            ("destination", "route", LEGACY, AMAZONMQ, BOTH, "total"),
            [
                (
                    d.destination
                    + (
                        f" (as {d.amazonmq_destination})"
                        if d.amazonmq_destination not in (None, d.destination)
                        else ""
                    ),
                    d.rule,
                    *_numbers(d.counts),
                )
                for d in destinations
            ]
            or [("(no SENDs)", "", "", "", "", "")],
        )
        if self.against is not None:
            lines.append("")
            lines += self.render_changes()
        notes = self.notes(stats)
        if notes:
            lines.append("")
            lines += [f"note: {note}" for note in notes]
        return "\n".join(lines)

    def render_changes(self) -> list[str]:
        assert self.against is not None
        lines = [
            f"{self.changed} of {self.messages} SENDs decided differently than with "
            f"{self.against.source} (routes version {self.against.version})"
        ]
        if self.changes:
            lines += _table(
                ("destination", "before", "after", "messages", "e.g. trace ids"),
                [
                    (
                        c.destination,
                        c.before.describe(c.destination),
                        c.after.describe(c.destination),
                        str(c.count),
                        ", ".join(c.examples[:3]),
                    )
                    for c in self.sorted_changes()
                ],
            )
        return lines


def _numbers(counts: Counts) -> tuple[str, ...]:
    return tuple(str(n) for n in (counts.legacy, counts.amazonmq, counts.both, counts.total))


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Plain-text columns: text left-aligned, numbers right-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    numeric = [all(row[i].isdigit() or not row[i] for row in rows) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [line(header), *(line(row) for row in rows)]
