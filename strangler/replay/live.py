"""``replay --dry-run --facts FILE``: each captured SEND decided under its live trace id.

A split route without a sticky header decides by the message's trace id, which the live
proxy made at random for a SEND that carried none: a replay alone cannot know it. The
facts of the same run do. A capture written by ``strangler run --capture`` records, per
producer connection, the proxy's session id and the producer's address; the facts have
that session's ``client_connected`` (same id and address) and its ``message_routed``
facts in SEND order. So the n-th SEND of a captured session is the n-th
``message_routed`` of its session in the facts: replay takes that fact's trace id as
the message key and compares the two decisions.

Invariants:
- A captured session is joined to the facts' session with the same id and address
  whose ``client_connected`` is nearest after the capture opened it (ids repeat when a
  proxy restarts; addresses differ between producers, so replicas do not mix).
- A joined SEND whose destination differs from its fact's is not counted as joined
  (the join would be wrong); neither is one past the last fact of its session (the
  proxy closed the session before routing it, or the facts were cut).
- The agreement compares what a person compares in the report (``report.Outcome``):
  rule, targets, dry-run; the live targets of a dry-run decision are ``would_target``.
  For an unchanged routes file it is 100% (the test proves it for every mode).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from ..ledger import EachFact, FactReader
from ..routes import Decision
from .sources import CapturedMessage

_CLOCK_SLACK: Final = 5.0  # seconds a fact's clock may trail the capture's (same host)


@dataclass(frozen=True, slots=True)
class LiveSend:
    trace_id: str
    destination: str
    rule: str
    targets: tuple[str, ...]  # what the routes decided (would_target when dry-run)
    dry_run: bool
    routes_version: str


@dataclass(slots=True)
class _LiveSession:
    connected: float  # unix time of client_connected
    sends: list[LiveSend] = field(default_factory=list)


class LiveDecisions:
    """The live decisions in facts files, by proxy session (read once, kept compactly)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._by_session: dict[tuple[str, str], list[_LiveSession]] = {}
        self._current: dict[tuple[str, str], _LiveSession] = {}  # (instance, session)
        self.versions: set[str] = set()
        self.routed = 0
        reader = FactReader(paths)
        reader.read(EachFact(self._on_fact))
        self.files = reader.stats.files
        self._current.clear()

    def _on_fact(self, fact: dict[str, Any], instance: str) -> None:
        event = fact["event"]
        if event == "client_connected":
            session = _LiveSession(_seconds(fact.get("ts")))
            key = (str(fact.get("session")), str(fact.get("peer")))
            self._by_session.setdefault(key, []).append(session)
            self._current[(instance, key[0])] = session
        elif event == "message_routed":
            live = self._current.get((instance, str(fact.get("session"))))
            if live is None:  # its client_connected is not in the files
                return
            dry_run = bool(fact.get("dry_run"))
            targets = fact.get("would_target") if dry_run else fact.get("targets")
            version = str(fact.get("routes_version"))
            self.versions.add(version)
            self.routed += 1
            live.sends.append(
                LiveSend(
                    str(fact.get("trace_id")),
                    str(fact.get("destination")),
                    str(fact.get("rule")),
                    tuple(targets or ()),
                    dry_run,
                    version,
                )
            )

    def find(self, message: CapturedMessage) -> LiveSend | None:
        ref, index = message.proxy_session, message.send_index
        if ref is None or index is None:
            return None
        candidates = self._by_session.get((ref.session, ref.peer))
        if not candidates:
            return None
        after = [c for c in candidates if c.connected >= ref.opened_at - _CLOCK_SLACK]
        session = min(after or candidates, key=lambda c: abs(c.connected - ref.opened_at))
        if index >= len(session.sends):
            return None
        live = session.sends[index]
        return live if live.destination == message.destination else None


@dataclass(slots=True)
class Agreement:
    """How many replayed decisions agree with the live ones."""

    examples: int = 5
    captured: int = 0
    joined: int = 0
    agreed: int = 0
    other_version: int = 0  # joined SENDs decided live under another routes version
    differ: list[dict[str, Any]] = field(default_factory=list)
    unjoined: list[str] = field(default_factory=list)  # example keys

    def keyed(self, message: CapturedMessage, live: LiveSend | None) -> CapturedMessage:
        """``message`` with its live trace id as its key (counted as joined), or as is."""
        self.captured += 1
        if live is None:
            if len(self.unjoined) < self.examples:
                self.unjoined.append(f"{message.origin}#{message.index} {message.destination}")
            return message
        self.joined += 1
        return replace(message, live_trace_id=live.trace_id)

    def compare(self, live: LiveSend, decision: Decision, version: str) -> None:
        if live.routes_version != version:
            self.other_version += 1
        if (live.rule, live.targets) == (decision.rule, tuple(decision.targets)):
            self.agreed += 1
        elif len(self.differ) < self.examples:
            self.differ.append(
                {
                    "trace_id": live.trace_id,
                    "destination": live.destination,
                    "live": {"rule": live.rule, "targets": list(live.targets)},
                    "replayed": {"rule": decision.rule, "targets": list(decision.targets)},
                    "live_routes_version": live.routes_version,
                }
            )

    @property
    def percent(self) -> float:
        return 100.0 * self.agreed / self.joined if self.joined else 0.0

    def as_dict(self, files: list[str]) -> dict[str, Any]:
        return {
            "facts": files,
            "captured": self.captured,
            "joined": self.joined,
            "agreed": self.agreed,
            "agreement_percent": round(self.percent, 4),
            "decided_live_under_another_routes_version": self.other_version,
            "differ_examples": self.differ,
            "unjoined": self.captured - self.joined,
            "unjoined_examples": self.unjoined,
        }

    def render(self, files: list[str]) -> list[str]:
        lines = [
            f"Live agreement ({', '.join(files)}): {self.joined} of {self.captured} captured "
            f"SENDs joined to their live decision (by session and position); {self.agreed} "
            f"decided alike: {self.percent:.2f}%",
        ]
        if self.other_version:
            lines.append(
                f"  {self.other_version} were decided live under another routes version than "
                "the file's (it changed since, or a reload happened during the run)"
            )
        for d in self.differ:
            lines.append(
                f"  differs: {d['trace_id']} {d['destination']}: live {d['live']['rule']} -> "
                f"{'+'.join(d['live']['targets'])}, replayed {d['replayed']['rule']} -> "
                f"{'+'.join(d['replayed']['targets'])}"
            )
        if self.captured > self.joined:
            lines.append(
                f"  {self.captured - self.joined} captured SENDs found no live decision "
                f"(another proxy's capture, facts cut short, or a session closed before "
                f"routing them), e.g. {', '.join(self.unjoined)}"
            )
        return lines


def _seconds(ts: object) -> float:
    if not isinstance(ts, str):
        return 0.0
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return 0.0
