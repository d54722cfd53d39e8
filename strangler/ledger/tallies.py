"""What the ledger counts: tallies per route, login and broker; violations; version windows.

Plain data with ``as_dict`` for ``--json``; the ledger (``book``) fills them, ``report``
renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from .journeys import (
    ABORTED,
    AMAZONMQ,
    CLOSED,
    CONFIRMED,
    FELL_BACK,
    FORWARDED,
    LEGACY,
    MIRROR_FAILED,
    MIRRORED,
    MISSING,
    PENDING,
    REJECTED,
    UNRESOLVED,
    Journey,
)

MAX_LISTED: Final = 100_000  # violations / in-doubt messages listed; the counts are exact
OUTCOME_KEYS: Final = (
    CONFIRMED,
    FORWARDED,
    FELL_BACK,
    REJECTED,
    CLOSED,
    ABORTED,
    MISSING,
    UNRESOLVED,
)
MIRROR_KEYS: Final = ("mirrored", "mirror_failed", "mirror_lost", "mirror_missing")
WHERE_KEYS: Final = ("on_legacy", "on_amazonmq", "on_both", "on_none", "on_unknown")
EXTRA_KEYS: Final = ("in_doubt", "resent", "partial_commit")


class Kind(NamedTuple):
    """A ``Journey.signature()``: what a settled message is counted by."""

    rule: str
    version: str
    mode: str
    login: str | None
    primary: str
    receipt: bool
    outcome: str
    mirror: str | None  # None: no mirror leg; "pending": lost with the proxy
    where: str  # legacy, amazonmq, both, none, unknown
    unconfirmed: bool  # its connection closed while legacy's receipt was due
    in_doubt: tuple[str, ...]
    resent: bool
    partial: bool


class InDoubt(NamedTuple):
    """A message that may hold a copy its outcome does not count (listed in the report)."""

    trace_id: str
    route: str
    brokers: tuple[str, ...]
    resent: int
    outcome: str
    mirror: str | None
    instance: str
    session: str

    def as_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "brokers": list(self.brokers)}


class Tally:
    """Counts of one group of messages (a route at one routes version, a login)."""

    __slots__ = ("counts", "mode")

    def __init__(self, mode: str = "") -> None:
        self.mode = mode
        self.counts: dict[str, int] = {}

    def add(self, kind: Kind, n: int) -> None:
        c = self.counts
        keys = ["messages", kind.outcome, "on_" + kind.where]
        if kind.mirror is not None:
            keys.append("mirror_lost" if kind.mirror == PENDING else kind.mirror)
            if kind.mirror == PENDING and kind.outcome != UNRESOLVED:
                keys.append(UNRESOLVED)  # a leg left open: the message is unresolved
        if kind.unconfirmed and kind.outcome != CLOSED:
            keys.append(CLOSED)
        if kind.in_doubt:
            keys.append("in_doubt")
        if kind.resent:
            keys.append("resent")
        if kind.partial:
            keys.append("partial_commit")
        for key in keys:
            c[key] = c.get(key, 0) + n

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


def broker_tallies(kinds: dict[Kind, int]) -> dict[str, BrokerTally]:
    """Per broker: what it holds by the facts, confirmed, failed, and what is in doubt."""
    brokers = {LEGACY: BrokerTally(), AMAZONMQ: BrokerTally()}
    for kind, n in kinds.items():
        outcome = kind.outcome
        if outcome == CONFIRMED:
            brokers[kind.primary].confirmed += n
        elif outcome == FORWARDED:
            brokers[LEGACY].forwarded += n
        elif outcome == FELL_BACK:
            if kind.unconfirmed or not kind.receipt:
                brokers[LEGACY].forwarded += n
            else:
                brokers[LEGACY].confirmed += n
        if outcome in (FELL_BACK, REJECTED) or kind.mirror == MIRROR_FAILED:
            brokers[AMAZONMQ].failed += n
        if kind.mirror == MIRRORED:
            brokers[AMAZONMQ].mirrored += n
        if kind.where in (LEGACY, "both"):
            brokers[LEGACY].held += n
        if kind.where in (AMAZONMQ, "both"):
            brokers[AMAZONMQ].held += n
        for broker in kind.in_doubt:
            brokers.setdefault(broker, BrokerTally()).in_doubt += n
        if kind.resent:
            brokers[AMAZONMQ].resent += n
    return brokers


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
    in_doubt: list[InDoubt]
    in_doubt_count: int
    unjudged: list[Violation]
    instances: list[dict[str, Any]]
    messages: int
    settled_held: int

    @property
    def holds(self) -> bool:
        return self.violation_count == 0
