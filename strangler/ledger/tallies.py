"""What the ledger counts: tallies per route, login and broker; violations; version windows.

Plain data with ``as_dict`` for ``--json``; the ledger (``book``) fills them, ``report``
renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .journeys import (
    ABORTED,
    CLOSED,
    CONFIRMED,
    FELL_BACK,
    FORWARDED,
    PENDING,
    REJECTED,
    UNRESOLVED,
    Journey,
)

MAX_LISTED: Final = 100_000  # violations / in-doubt messages listed; the counts are exact
OUTCOME_KEYS: Final = (CONFIRMED, FORWARDED, FELL_BACK, REJECTED, CLOSED, ABORTED, UNRESOLVED)
MIRROR_KEYS: Final = ("mirrored", "mirror_failed", "mirror_lost")
WHERE_KEYS: Final = ("on_legacy", "on_amazonmq", "on_both", "on_none", "on_unknown")
EXTRA_KEYS: Final = ("in_doubt", "resent", "partial_commit")


class Tally:
    """Counts of one group of messages (a route at one routes version, a login)."""

    __slots__ = ("counts", "mode")

    def __init__(self, mode: str = "") -> None:
        self.mode = mode
        self.counts: dict[str, int] = {}

    def add(self, j: Journey) -> None:
        c = self.counts
        c["messages"] = c.get("messages", 0) + 1
        c[j.outcome or UNRESOLVED] = c.get(j.outcome or UNRESOLVED, 0) + 1
        if j.mirror is not None:
            leg = "mirror_lost" if j.mirror == PENDING else j.mirror
            c[leg] = c.get(leg, 0) + 1
        where = "on_unknown" if j.outcome is None else "on_" + j.where
        c[where] = c.get(where, 0) + 1
        if j.unconfirmed and j.outcome != CLOSED:
            c[CLOSED] = c.get(CLOSED, 0) + 1
        if j.in_doubt:
            c["in_doubt"] = c.get("in_doubt", 0) + 1
        if j.resent:
            c["resent"] = c.get("resent", 0) + 1
        if j.partial:
            c["partial_commit"] = c.get("partial_commit", 0) + 1

    def get(self, key: str) -> int:
        return self.counts.get(key, 0)

    def as_dict(self) -> dict[str, int]:
        keys = ("messages", *OUTCOME_KEYS, *MIRROR_KEYS, *WHERE_KEYS, *EXTRA_KEYS)
        return {key: self.counts.get(key, 0) for key in keys}


@dataclass(slots=True)
class BrokerTally:
    confirmed: int = 0  # as the responsible broker (after a fallback too, for legacy)
    mirrored: int = 0  # mirror copies confirmed
    forwarded: int = 0  # legacy, no receipt asked
    failed: int = 0  # Amazon MQ: fell back, rejected, mirror copy failed
    in_doubt: int = 0  # messages that may hold a copy the outcome does not count
    resent: int = 0
    held: int = 0  # messages the facts place there

    def as_dict(self) -> dict[str, int]:
        return {
            "held": self.held,
            "confirmed": self.confirmed,
            "mirrored": self.mirrored,
            "forwarded": self.forwarded,
            "failed": self.failed,
            "in_doubt": self.in_doubt,
            "resent": self.resent,
        }


@dataclass(slots=True)
class Violation:
    trace_id: str
    problem: str
    where: str  # file:line of the fact that showed it (or of the session's end)
    route: str | None = None
    instance: str | None = None
    session: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "problem": self.problem,
            "at": self.where,
            "route": self.route,
            "instance": self.instance,
            "session": self.session,
        }


@dataclass(slots=True)
class VersionWindow:
    """When one routes version was in force, across the fleet."""

    version: str
    since: str  # the earliest start in any instance
    until: str  # the latest end in any instance
    seconds: float = 0.0  # summed over instances (replica-seconds)
    instances: set[str] = field(default_factory=set)
    messages: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "routes_version": self.version,
            "since": self.since,
            "until": self.until,
            "replica_seconds": round(self.seconds, 3),
            "instances": len(self.instances),
            "messages": self.messages,
        }


@dataclass
class Book:
    """What the ledger found: the audit's result."""

    routes: dict[tuple[str, str], Tally]
    logins: dict[str, Tally]
    brokers: dict[str, BrokerTally]
    versions: dict[str, VersionWindow]
    violations: list[Violation]
    violation_count: int
    unresolved: list[Journey]
    in_doubt: list[dict[str, Any]]
    in_doubt_count: int
    unjudged: list[Violation]
    instances: list[dict[str, Any]]
    messages: int
    settled_held: int

    @property
    def holds(self) -> bool:
        return self.violation_count == 0
