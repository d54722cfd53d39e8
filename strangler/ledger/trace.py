"""``strangler audit --trace ID``: one message's whole journey, across replicas.

ID is strangler's trace id, a producer's own trace id (``producer_trace_id``: every
attempt of a message a producer resent, through whichever replica took it), or a W3C
trace id / ``traceparent`` (``traceparent``: the producer's distributed trace). Every
fact naming a matching message is listed with its file and line, with its session's
``client_connected`` and ``client_disconnected`` around it, and the ledger's verdict.

Invariant: the tracer only looks at facts; the verdict is the ledger's (``Journey``),
so ``--trace`` and the report never disagree.
"""

from __future__ import annotations

from typing import Any

from .journeys import UNRESOLVED, Journey
from .streams import Position
from .tallies import Book

_CONTEXT = ("client_connected", "client_disconnected")
_SKIP_FIELDS = frozenset({"event", "ts", "session", "trace_id"})


class Tracer:
    def __init__(self, wanted: str, position: Position) -> None:
        self.wanted = wanted
        self._position = position
        self.traces: set[str] = set()
        self.facts: list[tuple[str, str, dict[str, Any]]] = []  # (file:line, instance, fact)
        self.journeys: dict[str, Journey] = {}
        self._connects: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._sessions: set[tuple[str, str]] = set()

    def see(self, fact: dict[str, Any], instance: str) -> None:
        event = fact["event"]
        session = (instance, str(fact.get("session")))
        if event == "client_connected":
            self._connects[session] = (str(self._position), fact)
            return
        if event == "client_disconnected":
            if session in self._sessions:
                self.facts.append((str(self._position), instance, fact))
            return
        trace = fact.get("trace_id")
        if trace is None:
            return
        if trace not in self.traces:
            if not self._matches(fact):
                return
            self.traces.add(trace)
            if session not in self._sessions:
                self._sessions.add(session)
                connect = self._connects.get(session)
                if connect is not None:
                    self.facts.append((connect[0], instance, connect[1]))
        self.facts.append((str(self._position), instance, fact))

    def _matches(self, fact: dict[str, Any]) -> bool:
        wanted = self.wanted
        if fact.get("trace_id") == wanted or fact.get("producer_trace_id") == wanted:
            return True
        traceparent = fact.get("traceparent")
        return isinstance(traceparent, str) and wanted in traceparent

    def settled(self, j: Journey) -> None:
        """The ledger's ``on_settled``: keep the verdicts of the traced messages."""
        if j.trace in self.traces:
            self.journeys[j.trace] = j

    # -- output -------------------------------------------------------------------------------

    def verdicts(self, book: Book) -> dict[str, dict[str, Any]]:
        for j in book.unresolved:
            if j.trace in self.traces:
                self.journeys[j.trace] = j
        out: dict[str, dict[str, Any]] = {}
        for trace in sorted(self.traces):
            found = self.journeys.get(trace)
            verdict: dict[str, Any] = {"trace_id": trace}
            if found is not None:
                verdict.update(
                    outcome=found.outcome or UNRESOLVED,
                    mirror=found.mirror,
                    held_on="unknown"
                    if found.waiting is not None or found.mirror == "pending"
                    else found.where,
                    in_doubt=list(found.in_doubt),
                    resent=found.resent,
                    summary=summary(found),
                )
            problems = [v.as_dict() for v in book.violations if v.trace_id == trace]
            verdict["violations"] = problems
            out[trace] = verdict
        return out

    def as_json(self, book: Book) -> dict[str, Any]:
        return {
            "trace": self.wanted,
            "found": bool(self.traces),
            "messages": list(self.verdicts(book).values()),
            "facts": [{"at": at, "instance": inst, **fact} for at, inst, fact in self.facts],
        }

    def render(self, book: Book) -> str:
        if not self.traces:
            return f"no fact names {self.wanted} (as trace_id, producer_trace_id or traceparent)"
        verdicts = self.verdicts(book)
        lines = [f"trace {self.wanted}: {len(self.traces)} message(s)"]
        instance = None
        for at, inst, fact in self.facts:
            if inst != instance:
                instance = inst
                lines.append(f"  {inst}")
            lines.append(f"    {at}  {fact.get('ts', '')}  {_line(fact)}")
        for trace, verdict in verdicts.items():
            text = verdict.get("summary", "not settled by the facts read")
            lines.append(f"  {trace}: {text}")
            lines += [f"    VIOLATION at {v['at']}: {v['problem']}" for v in verdict["violations"]]
        return "\n".join(lines)


def summary(j: Journey) -> str:
    outcome = UNRESOLVED if j.waiting is not None else j.outcome or UNRESOLVED
    parts = [
        {
            "confirmed": f"confirmed by {j.primary}",
            "forwarded": "forwarded to legacy (no receipt asked)",
            "fell_back": "fell back to legacy"
            + (" (connection closed before legacy confirmed)" if j.unconfirmed else ""),
            "rejected": "rejected (the producer got an ERROR)",
            "closed": "connection closed before the broker confirmed (no receipt)",
            "aborted": "its transaction was aborted",
            "missing": "NO outcome fact though its session ended",
            "unresolved": "unresolved: lost with the proxy (no outcome fact)",
        }[outcome]
    ]
    if j.mirror is not None:
        parts.append(
            {
                "mirrored": "mirror copy confirmed by amazonmq",
                "mirror_failed": "mirror copy failed",
                "pending": "mirror copy lost with the proxy",
                "mirror_missing": "NO outcome fact for its mirror copy though its session ended",
            }[j.mirror]
        )
    if j.in_doubt:
        parts.append(f"in doubt on {'+'.join(j.in_doubt)} (a copy may be there too)")
    if j.partial:
        parts.append("its transaction committed on amazonmq only")
    if j.waiting is not None or j.mirror == "pending":
        parts.append(f"may be on {'+'.join(j.may_be_on)}")
    else:
        parts.append(f"held on {j.where}")
    return "; ".join(parts)


def _line(fact: dict[str, Any]) -> str:
    event = fact["event"]
    fields = " ".join(
        f"{key}={_value(value)}"
        for key, value in fact.items()
        if key not in _SKIP_FIELDS and value is not None
    )
    session = fact.get("session")
    prefix = f"{event} [{session}]" if session else event
    trace = fact.get("trace_id")
    return f"{prefix} {trace + ' ' if trace else ''}{fields}"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(str(v) for v in value)
    if isinstance(value, dict):
        return "{...}"
    return str(value)
