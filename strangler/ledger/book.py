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
    FOLLOWED,
    OUTCOMES,
    SETTLED,
    UNRESOLVED,
    Journey,
    Signature,
    forwarded,
    plainly_confirmed,
    settles_by,
)
from .settled import SettledIds
from .streams import InputError
from .tallies import (
    MAX_LISTED,
    Book,
    InDoubt,
    Kind,
    Tally,
    VersionWindow,
    Violation,
    broker_tallies,
)


class _Session:
    __slots__ = ("connected", "instance", "key", "login", "open", "peer", "txs")

    def __init__(
        self, instance: str, key: str, login: str | None, peer: str | None, connected: str
    ) -> None:
        self.instance = instance
        self.key = key
        self.login = login
        self.peer = peer
        self.connected = connected
        self.open: dict[str, _Open] = {}
        self.txs: dict[str, list[Journey]] = {}


# An open message: its Journey, or a plain one (``journeys.plain``) as (its
# message_routed fact, its session, the broker whose confirmation settles it).
_Plain = tuple[dict[str, Any], _Session, str]
_Open = Journey | _Plain


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
        self._plain = on_settled is None  # a plain message settles without a Journey
        self.open: dict[str, _Open] = {}
        self.settled = SettledIds()
        self._instances: dict[str, _Instance] = {}
        self._current = _Instance("", "")  # until the first fact's instance is entered
        self._orphans: dict[str, list[tuple[dict[str, Any], str, str]]] = {}
        self._filtering = routes is not None or since is not None or until is not None
        self._kinds: dict[Signature, int] = {}  # settled messages, counted by signature
        self._versions: dict[str, VersionWindow] = {}
        self._violations: list[Violation] = []
        self._violation_count = 0
        self._missing: list[tuple[Violation, _Instance]] = []  # judged at the end (drops)
        self._unresolved: list[Journey] = []
        self._in_doubt: list[InDoubt] = []
        self._in_doubt_count = 0
        # The reader calls these directly: one call per fact (FactConsumer).
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "message_routed": self._routed,
            **dict.fromkeys(OUTCOMES, self._outcome),
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
        """One fact of ``instance`` (``FactReader.read(ledger)`` does the same, faster)."""
        if self._current.key != instance:
            self.enter(instance, fact)
        handler = self.handlers.get(fact["event"])
        if handler is None:
            self.other(fact)
            return
        try:
            handler(fact)
        except (KeyError, TypeError, IndexError) as exc:  # a field missing or mistyped
            raise InputError(
                f"{self._where()}: {fact['event']} without a usable {exc} field "
                "(not a fact as the proxy writes it)"
            ) from None

    def enter(self, instance: str, fact: dict[str, Any]) -> None:
        """The facts that follow are ``instance``'s (``fact`` is the first of them)."""
        self._instance(instance, fact)

    def other(self, fact: dict[str, Any]) -> None:
        """A fact no handler takes: it still says the instance was alive then."""
        ts = fact.get("ts")
        if ts is not None:
            self._current.last = ts

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

    def _connected(self, fact: dict[str, Any]) -> None:
        inst = self._current
        inst.last = fact["ts"]
        name = fact.get("session") or "?"
        if name in inst.sessions:  # a session id reused without a restart: end the old one
            self._end_session(inst, inst.sessions.pop(name), None)
        inst.sessions[name] = _Session(
            inst.key, name, fact.get("login"), fact.get("peer"), fact["ts"]
        )

    def _disconnected(self, fact: dict[str, Any]) -> None:
        inst = self._current
        inst.last = fact["ts"]
        session = inst.sessions.pop(fact.get("session") or "?", None)
        if session is not None:
            self._end_session(inst, session, fact.get("reason"))

    def _routed(self, fact: dict[str, Any]) -> None:
        inst = self._current
        # Fields the proxy always writes are read with [] (a KeyError is reported by feed).
        trace = fact["trace_id"]
        if type(trace) is not str:
            raise TypeError("trace_id")
        if trace in self.open or self.settled.routed(trace):
            self._violate(
                Violation(trace, "routed twice (one trace id, two messages)", self._where())
            )
            return
        inst.last = fact["ts"]
        name = fact["session"]
        session = inst.sessions.get(name)
        if session is None:  # its client_connected is not in the input
            session = inst.sessions[name] = _Session(inst.key, name, None, None, "")
        orphans = self._orphans.pop(trace, None) if self._orphans else None
        if orphans is None:
            by = settles_by(fact)
            if by is SETTLED:  # legacy, no receipt asked: nothing more to come
                self.settled.add(trace)
                if not self._filtering or self._selected_fact(fact):
                    signature = forwarded(fact, session.login)
                    self._kinds[signature] = self._kinds.get(signature, 0) + 1
                return
            if by is not FOLLOWED and self._plain:
                entry = (fact, session, by)
                self.open[trace] = entry
                session.open[trace] = entry
                return
        j = Journey(fact, inst.key, session.login, session)
        self.open[trace] = j
        session.open[trace] = j
        if j.tx is not None:
            session.txs.setdefault(j.tx, []).append(j)
        for early, _instance, where in orphans or ():
            self._apply(j, early, where)

    def _outcome(self, fact: dict[str, Any]) -> None:
        inst = self._current
        trace = fact["trace_id"]
        if type(trace) is not str:
            raise TypeError("trace_id")
        entry = self.open.get(trace)
        if entry is not None:
            if type(entry) is tuple:
                routed, session, broker = entry
                if (
                    fact["event"] == "message_confirmed"
                    and fact["broker"] == broker
                    and fact.get("role", "primary") == "primary"
                ):  # what it waited for: settled
                    del self.open[trace], session.open[trace]
                    self.settled.add(trace)
                    if not self._filtering or self._selected_fact(routed):
                        signature = plainly_confirmed(routed, session.login)
                        self._kinds[signature] = self._kinds.get(signature, 0) + 1
                    return
            j = self._journey(trace, entry)
            problem = OUTCOMES[fact["event"]](j, fact)
            if problem is not None:
                self._violate_journey(j, problem, self._where())
            if j.settled:
                self._settle(j)
            return
        where = self._where()
        if trace in self.settled:
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

    def _journey(self, trace: str, entry: _Open) -> Journey:
        """The open message as a Journey (a plain one becomes one now)."""
        if isinstance(entry, Journey):
            return entry
        routed, session, _broker = entry
        j = Journey(routed, session.instance, session.login, session)
        self.open[trace] = session.open[trace] = j
        return j

    def _apply(self, j: Journey, fact: dict[str, Any], where: str) -> None:
        problem = OUTCOMES[fact["event"]](j, fact)
        if problem is not None:
            self._violate_journey(j, problem, where)
        if j.settled:
            self._settle(j)

    def _tx_ended(self, fact: dict[str, Any]) -> None:
        inst = self._current
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

    def _routes_in_force(self, fact: dict[str, Any]) -> None:
        inst = self._current
        inst.last = fact.get("ts") or inst.last
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

    def _stopped(self, fact: dict[str, Any]) -> None:
        inst = self._current
        inst.last = fact.get("ts") or inst.last
        inst.stopped = True

    def _dropped(self, fact: dict[str, Any]) -> None:
        inst = self._current
        count = fact.get("count")
        inst.dropped += count if isinstance(count, int) else 1

    def _internal_error(self, fact: dict[str, Any]) -> None:
        inst = self._current
        inst.internal_errors += 1

    # -- settling ------------------------------------------------------------------------------

    def _end_session(self, inst: _Instance, session: _Session, reason: str | None) -> None:
        where = self._where()
        for trace, entry in list(session.open.items()):
            j = self._journey(trace, entry)
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
            for trace, entry in list(session.open.items()):
                self._unresolved_journey(self._journey(trace, entry))
        inst.sessions.clear()

    def _unresolved_journey(self, j: Journey) -> None:
        self.open.pop(j.trace, None)
        if not self._filtering or self._selected(j):
            self._unresolved.append(j)
            self._count(j)

    def _settle(self, j: Journey) -> None:
        trace = j.trace
        if self.open.pop(trace, None) is not None:
            j.owner.open.pop(trace, None)
        self.settled.add(trace)
        if j.aborted:
            j.finish()
        if not self._filtering or self._selected(j):
            self._count(j)
            if self._on_settled is not None:
                self._on_settled(j)

    def _count(self, j: Journey) -> None:
        signature = j.signature()
        kinds = self._kinds
        kinds[signature] = kinds.get(signature, 0) + 1
        if j.in_doubt or j.resent:
            self._in_doubt_count += 1
            if len(self._in_doubt) < MAX_LISTED:  # a tuple: ~100 bytes a listed message
                self._in_doubt.append(
                    InDoubt(
                        j.trace,
                        j.rule,
                        j.in_doubt,
                        j.resent,
                        j.outcome or UNRESOLVED,
                        j.mirror,
                        j.instance,
                        j.session,
                    )
                )

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
        kinds = {Kind._make(signature): n for signature, n in self._kinds.items()}
        routes: dict[tuple[str, str], Tally] = {}
        logins: dict[str, Tally] = {}
        for kind, n in kinds.items():
            by_route = routes.get((kind.rule, kind.version))
            if by_route is None:
                by_route = routes[(kind.rule, kind.version)] = Tally(kind.mode)
            by_route.add(kind, n)
            login = kind.login or "(unknown)"
            by_login = logins.get(login)
            if by_login is None:
                by_login = logins[login] = Tally()
            by_login.add(kind, n)
            window = self._versions.get(kind.version)
            if window is None:
                window = self._versions[kind.version] = VersionWindow(kind.version, "", "")
            window.messages += n
        return Book(
            routes=dict(sorted(routes.items())),
            logins=dict(sorted(logins.items())),
            brokers=broker_tallies(kinds),
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
            messages=sum(kinds.values()),
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
