"""Prometheus metrics, derived from facts (every name and label: docs/metrics.md).

Counters are fed by a fact listener (facts are the one record of what happened,
metrics are their running totals), so there is no second set of calls in the
data path. The listener runs on the fact writer's thread, as facts are written:
a scrape first waits (up to a second) for the writer to catch up. Gauges that
describe current state (connections, upstream health, routes version, dropped
facts) are read at scrape time by a collector.

Invariants:
- ``strangler_messages_total{route,broker}`` counts where a message ended up: the
  broker whose confirmation (``message_confirmed``) was seen, or legacy once a
  message that asked no receipt was forwarded there (``message_routed``, or
  ``message_fell_back`` with ``receipt: false``). A fallback is counted on legacy,
  never on Amazon MQ. A mirror route's message counts on both brokers when both hold it.
- Every route x broker series (and every route series) exists, at 0, from the
  moment the route is known: the table in force at start-up, ``routes_loaded``,
  and the routes a ``routes_applied`` adds; a removed route keeps its series.
  So ``increase(...) > 0`` sees the first event after a restart or a reload.
- ``strangler_unresolved_messages{route}`` is the number of outcome facts still due
  (a broker confirmation, a fallback, a rejection, a mirror failure). It never goes
  below 0; what a session still owed when it closed (a legacy receipt that never
  came) is forgotten at its ``client_disconnected``: no fact will resolve it.

Labels are route names, broker names, roles and reload results only: never
destinations, trace ids or anything a client controls, so cardinality is bounded
by routes.yaml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from ..facts import Fact
from ..proxy import ProxyContext
from ..routes import AMAZONMQ, DEFAULT_RULE, LEGACY

# *_created series double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BROKERS: Final = (LEGACY, AMAZONMQ)
PRIMARY: Final = "primary"
MIRROR: Final = "mirror"
# The (broker, role) pairs a confirmation can have: legacy is never a mirror.
CONFIRMATIONS: Final = ((LEGACY, PRIMARY), (AMAZONMQ, PRIMARY), (AMAZONMQ, MIRROR))
RELOAD_RESULTS: Final = ("applied", "rejected", "unchanged")
# Facts the proxy is gaining (HELPERS.md); matched by name until the vocabulary has them.
INTERNAL_ERROR: Final = "internal_error"
ROUTES_UNCHANGED: Final = "routes_unchanged"


class _RouteSeries:
    """One route's children of every labelled metric, created (at 0) together."""

    __slots__ = (
        "confirm_seconds",
        "confirmed",
        "fallbacks",
        "in_doubt",
        "messages",
        "mirror_failures",
        "rejects",
        "routed",
    )

    def __init__(self, metrics: ProxyMetrics, route: str) -> None:
        self.routed = metrics.routed.labels(route)
        self.messages = {b: metrics.messages.labels(route, b) for b in BROKERS}
        self.confirmed = {(b, r): metrics.confirmed.labels(route, b, r) for b, r in CONFIRMATIONS}
        self.confirm_seconds = {b: metrics.confirm_seconds.labels(route, b) for b in BROKERS}
        self.fallbacks = metrics.fallbacks.labels(route)
        self.rejects = metrics.rejects.labels(route)
        self.mirror_failures = metrics.mirror_failures.labels(route)
        self.in_doubt = {b: metrics.in_doubt.labels(route, b) for b in BROKERS}


class ProxyMetrics:
    def __init__(self, ctx: ProxyContext, open_sessions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "strangler_messages",
            "Messages by the broker they ended up on: the one that confirmed them, or legacy "
            "once forwarded for a SEND without a receipt",
            ["route", "broker"],
            registry=r,
        )
        self.routed = Counter(
            "strangler_messages_routed",
            "SENDs decided, dry-run included, by route",
            ["route"],
            registry=r,
        )
        self.confirmed = Counter(
            "strangler_confirmed",
            "Broker confirmations (receipts), by role: primary (the producer's) or mirror",
            ["route", "broker", "role"],
            registry=r,
        )
        self.confirm_seconds = Histogram(
            "strangler_confirm_seconds",
            "Time from forwarding a message to the broker's receipt",
            ["route", "broker"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "strangler_fallbacks",
            "Messages sent to legacy after Amazon MQ failed (on_failure: legacy)",
            ["route"],
            registry=r,
        )
        self.rejects = Counter(
            "strangler_rejects",
            "Messages refused with an ERROR (on_failure: reject)",
            ["route"],
            registry=r,
        )
        self.mirror_failures = Counter(
            "strangler_mirror_failures",
            "Mirror copies Amazon MQ did not confirm",
            ["route"],
            registry=r,
        )
        self.in_doubt = Counter(
            "strangler_in_doubt",
            "Fallbacks, rejects and mirror failures of frames written to the broker and never "
            "answered: possibly stored there (a possible duplicate, named by its fact)",
            ["route", "broker"],
            registry=r,
        )
        self.internal_errors = Counter(
            "strangler_internal_errors",
            "Unexpected exceptions in a session (its pending frames got their on_failure)",
            registry=r,
        )
        self.reloads = Counter(
            "strangler_routes_reloads", "routes.yaml reloads by result", ["result"], registry=r
        )
        self.protocol_errors = Counter(
            "strangler_client_protocol_errors", "Clients closed for a malformed frame", registry=r
        )
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)
        self._routes: dict[str, _RouteSeries] = {}
        # Outcomes still due, per route (strangler_unresolved_messages) and per session and
        # route: what a session owed when it closed is dropped then (module docstring).
        # Plain ints written on the writer thread only (a Gauge's lock per message cost more
        # than the rest of the bookkeeping); a scrape reads a copy.
        self.unresolved: dict[str, int] = {}
        self._due: dict[str | None, dict[str, int]] = {}
        r.register(_StateCollector(ctx, open_sessions, self.unresolved))
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            Fact.MESSAGE_ROUTED: self._routed,
            Fact.MESSAGE_CONFIRMED: self._confirmed,
            Fact.MESSAGE_FELL_BACK: self._fell_back,
            Fact.MESSAGE_REJECTED: self._rejected,
            Fact.MESSAGE_MIRROR_FAILED: self._mirror_failed,
            Fact.CLIENT_DISCONNECTED: self._disconnected,
            Fact.CLIENT_PROTOCOL_ERROR: lambda f: self.protocol_errors.inc(),
            INTERNAL_ERROR: lambda f: self.internal_errors.inc(),
            Fact.ROUTES_LOADED: self._loaded,
            Fact.ROUTES_APPLIED: self._applied,
            Fact.ROUTES_REJECTED: lambda f: self.reloads.labels("rejected").inc(),
            ROUTES_UNCHANGED: lambda f: self.reloads.labels("unchanged").inc(),
        }
        self.add_routes([route.name for route in ctx.routes.table.routes])

    # -- series -----------------------------------------------------------------------

    def add_routes(self, names: Iterable[str]) -> None:
        """Create every series of these routes (and of ``default``) at 0."""
        for name in (*names, DEFAULT_RULE):
            self.series(name)

    def series(self, route: str) -> _RouteSeries:
        found = self._routes.get(route)
        if found is None:
            found = self._routes[route] = _RouteSeries(self, route)
            self.unresolved.setdefault(route, 0)
        return found

    def on_fact(self, fact: str, fields: Mapping[str, Any]) -> None:
        handler = self._handlers.get(fact)
        if handler is not None:
            handler(fields)

    # -- outcomes still due -----------------------------------------------------------

    def _owe(self, fields: Mapping[str, Any], route: str, count: int = 1) -> None:
        by_route = self._due.setdefault(fields.get("session"), {})
        by_route[route] = by_route.get(route, 0) + count
        self.unresolved[route] += count

    def _settle(self, fields: Mapping[str, Any], route: str) -> None:
        by_route = self._due.get(fields.get("session"))
        owed = by_route.get(route, 0) if by_route is not None else 0
        if owed <= 0:  # a second outcome for one frame (a transaction's): nothing was due
            return
        assert by_route is not None
        by_route[route] = owed - 1
        self.unresolved[route] -= 1

    # -- facts ------------------------------------------------------------------------

    def on_facts(self, fact: str, fields: Mapping[str, Any], count: int) -> None:
        """``count`` facts alike but for their trace ids (a template's, in one batch)."""
        if fact == Fact.MESSAGE_ROUTED:
            self._routed(fields, count)
            return
        handler = self._handlers.get(fact)
        if handler is not None:
            for _ in range(count):
                handler(fields)

    def _routed(self, fields: Mapping[str, Any], count: int = 1) -> None:
        route = fields["rule"]
        series = self.series(route)
        series.routed.inc(count)
        targets = fields["targets"]
        due = int(AMAZONMQ in targets)
        if LEGACY in targets:
            if fields.get("receipt"):
                due += 1  # legacy's message_confirmed follows
            else:
                series.messages[LEGACY].inc(count)  # nothing confirms it: forwarded is final
        if due:
            self._owe(fields, route, due * count)

    def _confirmed(self, fields: Mapping[str, Any]) -> None:
        route = fields.get("rule", DEFAULT_RULE)
        broker = fields["broker"]
        if broker not in BROKERS:
            return
        series = self.series(route)
        role = fields.get("role", PRIMARY)
        confirmed = series.confirmed.get((broker, role))
        if confirmed is not None:
            confirmed.inc()
        series.messages[broker].inc()
        latency = fields.get("latency_ms")
        if latency is not None:
            series.confirm_seconds[broker].observe(latency / 1000)
        self._settle(fields, route)

    def _fell_back(self, fields: Mapping[str, Any]) -> None:
        route = fields["rule"]
        series = self._failed(fields, route)
        series.fallbacks.inc()
        # Until the proxy says (`receipt`), assume the producer asked for one: legacy's
        # confirmation then counts the message, and no fallback is counted twice.
        if fields.get("receipt", True):
            self._owe(fields, route)
        else:
            series.messages[LEGACY].inc()

    def _rejected(self, fields: Mapping[str, Any]) -> None:
        self._failed(fields, fields["rule"]).rejects.inc()

    def _mirror_failed(self, fields: Mapping[str, Any]) -> None:
        self._failed(fields, fields["rule"]).mirror_failures.inc()

    def _failed(self, fields: Mapping[str, Any], route: str) -> _RouteSeries:
        """Amazon MQ's part of a message ended without a confirmation."""
        series = self.series(route)
        if fields.get("possibly_stored"):
            series.in_doubt[AMAZONMQ].inc()
        self._settle(fields, route)
        return series

    def _disconnected(self, fields: Mapping[str, Any]) -> None:
        owed = self._due.pop(fields.get("session"), None)
        for route, count in (owed or {}).items():
            if count > 0:
                self.unresolved[route] -= count

    def _loaded(self, fields: Mapping[str, Any]) -> None:
        self.add_routes(fields.get("routes") or ())

    def _applied(self, fields: Mapping[str, Any]) -> None:
        self.reloads.labels("applied").inc()
        plan = fields.get("plan") or {}
        self.add_routes(c["route"] for c in plan.get("routes", ()) if c.get("change") == "added")


class _StateCollector(Collector):
    def __init__(
        self, ctx: ProxyContext, open_sessions: Callable[[], int], unresolved: dict[str, int]
    ) -> None:
        self._ctx = ctx
        self._open_sessions = open_sessions
        self._unresolved = unresolved

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily | InfoMetricFamily]:
        ctx = self._ctx
        yield GaugeMetricFamily(
            "strangler_client_connections", "Open producer connections", value=self._open_sessions()
        )
        up = GaugeMetricFamily(
            "strangler_upstream_up",
            "1 when the last connection attempt to the broker succeeded (absent: not tried yet)",
            labels=["broker"],
        )
        for broker, state in sorted(ctx.health.up.items()):
            up.add_metric([broker], 1.0 if state else 0.0)
        yield up
        table = ctx.routes.table
        info = InfoMetricFamily("strangler_routes", "The routes table in force")
        info.add_metric([], {"version": table.version, "source": table.source})
        yield info
        yield CounterMetricFamily(
            "strangler_facts_dropped",
            "Facts not written: the writer could not keep up, or the output failed",
            value=ctx.facts.dropped_total,
        )
        yield GaugeMetricFamily(
            "strangler_dry_run", "1 when the proxy runs with --dry-run", value=ctx.settings.dry_run
        )
        unresolved = GaugeMetricFamily(
            "strangler_unresolved_messages",
            "Outcome facts still due for messages routed (confirmations, fallbacks, rejects, "
            "mirror failures)",
            labels=["route"],
        )
        for route, count in sorted(dict(self._unresolved).items()):  # a copy: the writer adds
            unresolved.add_metric([route], count)
        yield unresolved
