"""The ledger: every message of a set of fact streams, followed until it settles.

``Ledger.feed(fact, instance)`` takes facts as ``streams.FactReader`` hands them over
(each replica's in the order it wrote them); ``Ledger.close()`` judges what is left and
returns the ``Book``: counts per route and routes version, per producer login and per
broker, the violations of the promise, the messages left unresolved, the ones in doubt,
and when each routes version was in force.

Invariants:
- A message is held (a ``Journey``) only while it is open: once every leg has its
  outcome its counts are folded into the tallies and it is forgotten but for its trace
  id, kept compactly (``SettledIds``) so that a late fact about it (a second
  confirmation) is still recognised. Memory grows with the messages in flight, the
  unresolved ones and the violations, not with the input.
- A session's end (``client_disconnected``), its proxy's orderly stop
  (``proxy_stopped``) and its transaction's end settle its open messages by the rules in
  ``journeys``. A message whose proxy instance wrote no ``proxy_stopped`` and whose
  session never ended is *unresolved*: lost with the proxy (it crashed with the message
  in memory), or the proxy is still running.
- An outcome fact for a message never routed is held until the end of the input (the
  input may be out of order), then it is a violation. Where the instance recorded
  ``facts_dropped``, missing facts are expected: such findings are *unjudged*, not
  violations.
- Filters (``--route``, ``--since``/``--until``) select messages by their
  ``message_routed`` fact; everything is still read, so a message is judged with all
  its facts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .journeys import (
    AMAZONMQ,
    CONFIRMED,
    FELL_BACK,
    FORWARDED,
    LEGACY,
    MIRROR_FAILED,
    MIRRORED,
    REJECTED,
    UNRESOLVED,
    Journey,
)
from .settled import SettledIds
from .tallies import MAX_LISTED, Book, BrokerTally, Tally, VersionWindow, Violation


class _Session:
    __slots__ = ("connected", "key", "login", "open", "peer", "txs")

    def __init__(self, key: str, login: str | None, peer: str | None, connected: str) -> None:
        self.key = key
        self.login = login
        self.peer = peer
        self.connected = connected
        self.open: dict[str, Journey] = {}
        self.txs: dict[str, list[Journey]] = {}


class _Instance:
    __slots__ = (
        "dropped",
        "ended",
        "internal_errors",
        "key",
        "last",
        "sessions",
        "started",
        "stopped",
        "version",
        "version_since",
    )

    def __init__(self, key: str, ts: str) -> None:
        self.key = key
        self.started = ts
        self.last = ts
        self.stopped = False  # proxy_stopped written
        self.ended = False  # settled: stopped, or a later instance of its replica began
        self.dropped = 0
        self.internal_errors = 0
        self.version: str | None = None
        self.version_since = ts
        self.sessions: dict[str, _Session] = {}


OnSettled = Callable[[Journey], None]


class Ledger:
    def __init__(
        self,
        *,
        routes: frozenset[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        where: Callable[[], str] = lambda: "?",
        on_settled: OnSettled | None = None,
    ) -> None:
        self._routes = routes
        self._since = since
        self._until = until
        self._where = where
        self._on_settled = on_settled  # e.g. verify's per-message view
        self.open: dict[str, Journey] = {}
        self.settled = SettledIds()
        self._instances: dict[str, _Instance] = {}
        self._current: _Instance | None = None
        self._orphans: dict[str, list[tuple[dict[str, Any], str, str]]] = {}
        self._route_tallies: dict[tuple[str, str], Tally] = {}
        self._login_tallies: dict[str, Tally] = {}
        self._brokers: dict[str, BrokerTally] = {LEGACY: BrokerTally(), AMAZONMQ: BrokerTally()}
        self._versions: dict[str, VersionWindow] = {}
        self._violations: list[Violation] = []
        self._violation_count = 0
        self._missing: list[tuple[Violation, _Instance]] = []  # judged at the end (drops)
        self._unresolved: list[Journey] = []
        self._in_doubt: list[dict[str, Any]] = []
        self._in_doubt_count = 0
        self._messages = 0
        self._handlers: dict[str, Callable[[dict[str, Any], _Instance], None]] = {
            "message_routed": self._routed,
            "message_confirmed": self._outcome,
            "message_fell_back": self._outcome,
            "message_rejected": self._outcome,
            "message_mirror_failed": self._outcome,
            "message_resent": self._outcome,
            "client_connected": self._connected,
            "client_disconnected": self._disconnected,
            "transaction_committed": self._tx_ended,
            "transaction_aborted": self._tx_ended,
            "transaction_partial_commit": self._tx_ended,
            "routes_loaded": self._routes_in_force,
            "routes_applied": self._routes_in_force,
            "proxy_started": self._routes_in_force,
            "proxy_stopped": self._stopped,
            "facts_dropped": self._dropped,
            "internal_error": self._internal_error,
        }

    # -- facts in ----------------------------------------------------------------------------

    def feed(self, fact: dict[str, Any], instance: str) -> None:
        current = self._current
        if current is None or current.key != instance:
            current = self._instance(instance, fact)
        ts = fact.get("ts")
        if ts is not None:
            current.last = ts
        handler = self._handlers.get(fact["event"])
        if handler is not None:
            handler(fact, current)

    def _instance(self, key: str, fact: dict[str, Any]) -> _Instance:
        found = self._instances.get(key)
        if found is None:
            replica = key.rpartition("#")[0]
            for earlier in self._instances.values():  # a replica restarted: the old run ended
                if not earlier.ended and earlier.key.rpartition("#")[0] == replica:
                    self._end_instance(earlier)
            found = self._instances[key] = _Instance(key, fact.get("ts") or "")
        self._current = found
        return found

    def _session(self, inst: _Instance, fact: dict[str, Any]) -> _Session:
        name = fact.get("session") or "?"
        found = inst.sessions.get(name)
        if found is None:  # its client_connected is not in the input
            found = inst.sessions[name] = _Session(name, None, None, "")
        return found

    def _connected(self, fact: dict[str, Any], inst: _Instance) -> None:
        name = fact.get("session") or "?"
        if name in inst.sessions:  # a session id reused without a restart: end the old one
            self._end_session(inst, inst.sessions.pop(name), None)
        inst.sessions[name] = _Session(name, fact.get("login"), fact.get("peer"), fact["ts"])

    def _disconnected(self, fact: dict[str, Any], inst: _Instance) -> None:
        session = inst.sessions.pop(fact.get("session") or "?", None)
        if session is not None:
            self._end_session(inst, session, fact.get("reason"))

    def _routed(self, fact: dict[str, Any], inst: _Instance) -> None:
        trace = fact.get("trace_id")
        if not isinstance(trace, str):
            self._violate(Violation("?", "message_routed without a trace_id", self._where()))
            return
        if trace in self.open or trace in self.settled:
            self._violate(
                Violation(trace, "routed twice (one trace id, two messages)", self._where())
            )
            return
        session = self._session(inst, fact)
        j = Journey(fact, inst.key, session.key, session.login)
        self.settled.first_seen(trace)
        orphans = self._orphans.pop(trace, None) if self._orphans else None
        if j.settled and orphans is None:  # legacy, no receipt asked: nothing more to come
            self._settle(j)
            return
        self.open[trace] = j
        session.open[trace] = j
        if j.tx is not None:
            session.txs.setdefault(j.tx, []).append(j)
        for early, _instance, where in orphans or ():
            self._apply(j, early, where)

    def _outcome(self, fact: dict[str, Any], inst: _Instance) -> None:
        trace = fact.get("trace_id")
        j = self.open.get(trace) if isinstance(trace, str) else None
        if j is not None:
            self._apply(j, fact, None)
            return
        where = self._where()
        if not isinstance(trace, str):
            self._violate(Violation("?", f"{fact['event']} without a trace_id", where))
        elif trace in self.settled:
            if self._selected_fact(fact):
                self._violate(
                    Violation(
                        trace,
                        f"{_describe(fact)} after the message had settled",
                        where,
                        fact.get("rule"),
                        inst.key,
                        fact.get("session"),
                    )
                )
        else:
            self._orphans.setdefault(trace, []).append((fact, inst.key, where))

    def _apply(self, j: Journey, fact: dict[str, Any], where: str | None) -> None:
        event = fact["event"]
        if event == "message_confirmed":
            problem = j.confirmed(fact)
        elif event == "message_fell_back":
            problem = j.fell_back(fact)
        elif event == "message_rejected":
            problem = j.rejected(fact)
        elif event == "message_mirror_failed":
            problem = j.mirror_failed(fact)
        else:
            j.resent_to(fact)
            problem = None
        if problem is not None:
            self._violate_journey(j, problem, where or self._where())
        if j.settled:
            self._settle(j)

    def _tx_ended(self, fact: dict[str, Any], inst: _Instance) -> None:
        session = inst.sessions.get(fact.get("session") or "?")
        tx = fact.get("transaction")
        if session is None or tx is None:
            return
        journeys = session.txs.pop(tx, ())
        aborted = fact["event"] == "transaction_aborted"
        partial = fact["event"] == "transaction_partial_commit"
        for j in journeys:
            j.transaction_ended(aborted=aborted, partial=partial)
            if j.settled and j.trace in self.open:
                self._settle(j)

    def _routes_in_force(self, fact: dict[str, Any], inst: _Instance) -> None:
        version = fact.get("routes_version")
        if not isinstance(version, str) or version == inst.version:
            return
        if inst.version is not None:
            self._window(inst, fact.get("ts") or inst.last)
        inst.version, inst.version_since = version, fact.get("ts") or inst.last

    def _window(self, inst: _Instance, until: str) -> None:
        assert inst.version is not None
        window = self._versions.get(inst.version)
        if window is None:
            window = self._versions[inst.version] = VersionWindow(
                inst.version, inst.version_since, until
            )
        window.since = min(window.since, inst.version_since)
        window.until = max(window.until, until)
        window.seconds += max(0.0, _seconds(until) - _seconds(inst.version_since))
        window.instances.add(inst.key)

    def _stopped(self, fact: dict[str, Any], inst: _Instance) -> None:
        inst.stopped = True

    def _dropped(self, fact: dict[str, Any], inst: _Instance) -> None:
        count = fact.get("count")
        inst.dropped += count if isinstance(count, int) else 1

    def _internal_error(self, fact: dict[str, Any], inst: _Instance) -> None:
        inst.internal_errors += 1

    # -- settling ------------------------------------------------------------------------------

    def _end_session(self, inst: _Instance, session: _Session, reason: str | None) -> None:
        where = self._where()
        for j in list(session.open.values()):
            problem = j.session_ended(reason)
            if problem is not None:
                violation = self._journey_violation(j, problem, where)
                if violation is not None:
                    self._missing.append((violation, inst))
            self._settle(j)
        session.open.clear()
        session.txs.clear()

    def _end_instance(self, inst: _Instance) -> None:
        """The instance is over (stopped, restarted, or the input ended)."""
        inst.ended = True
        if inst.version is not None:
            self._window(inst, inst.last)
        for session in list(inst.sessions.values()):
            if inst.stopped:
                self._end_session(inst, session, "proxy stopped")
                continue
            for j in list(session.open.values()):
                self._unresolved_journey(j)
        inst.sessions.clear()

    def _unresolved_journey(self, j: Journey) -> None:
        self.open.pop(j.trace, None)
        if self._selected(j):
            self._unresolved.append(j)
            self._fold(j)

    def _settle(self, j: Journey) -> None:
        trace = j.trace
        if self.open.pop(trace, None) is not None:
            inst = self._instances.get(j.instance)
            session = inst.sessions.get(j.session) if inst is not None else None
            if session is not None:
                session.open.pop(trace, None)
        self.settled.add(trace)
        j.finish()
        if self._selected(j):
            self._fold(j)
            if self._on_settled is not None:
                self._on_settled(j)

    def _fold(self, j: Journey) -> None:
        self._messages += 1
        key = (j.rule, j.version)
        tally = self._route_tallies.get(key)
        if tally is None:
            tally = self._route_tallies[key] = Tally(j.mode)
        tally.add(j)
        login = j.login or "(unknown)"
        by_login = self._login_tallies.get(login)
        if by_login is None:
            by_login = self._login_tallies[login] = Tally()
        by_login.add(j)
        window = self._versions.get(j.version)
        if window is not None:
            window.messages += 1
        else:
            self._versions[j.version] = VersionWindow(j.version, j.ts, j.ts, messages=1)
        self._broker_counts(j)
        if j.in_doubt or j.resent:
            self._in_doubt_count += 1
            if len(self._in_doubt) < MAX_LISTED:
                self._in_doubt.append(
                    {
                        "trace_id": j.trace,
                        "route": j.rule,
                        "brokers": list(j.in_doubt),
                        "resent": j.resent,
                        "outcome": j.outcome or UNRESOLVED,
                        "mirror": j.mirror,
                        "instance": j.instance,
                        "session": j.session,
                    }
                )

    def _broker_counts(self, j: Journey) -> None:
        brokers = self._brokers
        outcome = j.outcome
        if outcome == CONFIRMED:
            brokers[j.primary].confirmed += 1
        elif outcome == FORWARDED:
            brokers[LEGACY].forwarded += 1
        elif outcome == FELL_BACK:
            if j.unconfirmed or not j.receipt:
                brokers[LEGACY].forwarded += 1
            else:
                brokers[LEGACY].confirmed += 1
        if outcome in (FELL_BACK, REJECTED) or j.mirror == MIRROR_FAILED:
            brokers[AMAZONMQ].failed += 1
        if j.mirror == MIRRORED:
            brokers[AMAZONMQ].mirrored += 1
        where = j.where if outcome is not None else "none"
        if where in (LEGACY, "both"):
            brokers[LEGACY].held += 1
        if where in (AMAZONMQ, "both"):
            brokers[AMAZONMQ].held += 1
        for broker in j.in_doubt:
            brokers.setdefault(broker, BrokerTally()).in_doubt += 1
        if j.resent:
            brokers[AMAZONMQ].resent += 1

    # -- filters and violations ------------------------------------------------------------------

    def _selected(self, j: Journey) -> bool:
        if self._routes is not None and j.rule not in self._routes:
            return False
        if self._since is not None and j.ts < self._since:
            return False
        return self._until is None or j.ts < self._until

    def _selected_fact(self, fact: dict[str, Any]) -> bool:
        if self._routes is not None and fact.get("rule") not in self._routes:
            return False
        ts = fact.get("ts") or ""
        if self._since is not None and ts < self._since:
            return False
        return self._until is None or ts < self._until

    def _journey_violation(self, j: Journey, problem: str, where: str) -> Violation | None:
        if not self._selected(j):
            return None
        return Violation(j.trace, problem, where, j.rule, j.instance, j.session)

    def _violate_journey(self, j: Journey, problem: str, where: str) -> None:
        violation = self._journey_violation(j, problem, where)
        if violation is not None:
            self._violate(violation)

    def _violate(self, violation: Violation) -> None:
        self._violation_count += 1
        if len(self._violations) < MAX_LISTED:
            self._violations.append(violation)

    # -- the end ---------------------------------------------------------------------------------

    def close(self) -> Book:
        for inst in list(self._instances.values()):
            if not inst.ended:
                self._end_instance(inst)
        unjudged: list[Violation] = []
        for violation, inst in self._missing:
            if inst.dropped:
                violation.problem += f" (its proxy dropped {inst.dropped} facts)"
                unjudged.append(violation)
            else:
                self._violate(violation)
        for trace, facts in self._orphans.items():
            fact, instance, where = facts[0]
            if not self._selected_fact(fact):
                continue
            owner = self._instances.get(instance)
            violation = Violation(
                trace,
                f"{_describe(fact)} for a message with no message_routed"
                + ("" if len(facts) == 1 else f" (and {len(facts) - 1} more facts)"),
                where,
                fact.get("rule"),
                instance,
                fact.get("session"),
            )
            if owner is not None and owner.dropped:
                violation.problem += f" (its proxy dropped {owner.dropped} facts)"
                unjudged.append(violation)
            else:
                self._violate(violation)
        self._violations.sort(key=lambda v: (v.instance or "", v.where))
        self._unresolved.sort(key=lambda j: (j.instance, j.ts, j.trace))
        return Book(
            routes=dict(sorted(self._route_tallies.items())),
            logins=dict(sorted(self._login_tallies.items())),
            brokers=self._brokers,
            versions=dict(sorted(self._versions.items(), key=lambda kv: kv[1].since)),
            violations=self._violations,
            violation_count=self._violation_count,
            unresolved=self._unresolved,
            in_doubt=self._in_doubt,
            in_doubt_count=self._in_doubt_count,
            unjudged=unjudged,
            instances=[
                {
                    "instance": inst.key,
                    "started": inst.started,
                    "last_fact": inst.last,
                    "stopped": inst.stopped,
                    "facts_dropped": inst.dropped,
                    "internal_errors": inst.internal_errors,
                }
                for inst in self._instances.values()
            ],
            messages=self._messages,
            settled_held=self.settled.held,
        )


def _describe(fact: dict[str, Any]) -> str:
    event = str(fact["event"])
    broker = fact.get("broker")
    return f"{event} ({broker})" if broker else event


def _seconds(ts: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return 0.0
