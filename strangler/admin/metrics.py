"""Prometheus metrics, derived from facts.

Counters are fed by a fact listener (facts are the one record of what happened,
metrics are their running totals), so there is no second set of calls in the
data path. The listener runs on the fact writer's thread, as facts are written:
a scrape first waits (up to a second) for the writer to catch up; facts dropped
for a full sink are counted by ``strangler_facts_dropped`` only. Gauges that
describe current state (connections, upstream health, routes version, dropped
facts) are read at scrape time by a collector.

Labels are route names and broker names only: never destinations, trace ids or
anything a client controls, so cardinality is bounded by routes.yaml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from ..facts import Fact
from ..proxy import ProxyContext

# *_created series double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ProxyMetrics:
    def __init__(self, ctx: ProxyContext, open_sessions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "strangler_messages",
            "SEND frames routed, by route and by broker they were sent to",
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
            "strangler_confirmed", "Messages a broker confirmed", ["route", "broker"], registry=r
        )
        self.confirm_seconds = Histogram(
            "strangler_confirm_seconds",
            "Time from forwarding a message to the broker's receipt",
            ["broker"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.mirror_failures = Counter(
            "strangler_mirror_failures",
            "Mirror copies Amazon MQ did not confirm",
            ["route"],
            registry=r,
        )
        self.fallbacks = Counter(
            "strangler_fallbacks",
            "Messages sent to legacy after Amazon MQ failed",
            ["route"],
            registry=r,
        )
        self.rejects = Counter(
            "strangler_rejects",
            "Messages refused with an ERROR (on_failure: reject)",
            ["route"],
            registry=r,
        )
        self.reloads = Counter(
            "strangler_routes_reloads", "routes.yaml reloads by result", ["result"], registry=r
        )
        self.protocol_errors = Counter(
            "strangler_client_protocol_errors", "Clients closed for a malformed frame", registry=r
        )
        r.register(_StateCollector(ctx, open_sessions))
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            Fact.MESSAGE_ROUTED: self._routed,
            Fact.MESSAGE_CONFIRMED: self._confirmed,
            Fact.MESSAGE_MIRROR_FAILED: lambda f: self.mirror_failures.labels(f["rule"]).inc(),
            Fact.MESSAGE_FELL_BACK: lambda f: self.fallbacks.labels(f["rule"]).inc(),
            Fact.MESSAGE_REJECTED: lambda f: self.rejects.labels(f["rule"]).inc(),
            Fact.ROUTES_APPLIED: lambda f: self.reloads.labels("applied").inc(),
            Fact.ROUTES_REJECTED: lambda f: self.reloads.labels("rejected").inc(),
            Fact.CLIENT_PROTOCOL_ERROR: lambda f: self.protocol_errors.inc(),
        }
        # Children cached per metric and label values: .labels() takes a lock and builds
        # its key on every call, and two facts a message reach these handlers.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def on_fact(self, fact: str, fields: Mapping[str, Any]) -> None:
        handler = self._handlers.get(fact)
        if handler is not None:
            handler(fields)

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _routed(self, fields: Mapping[str, Any]) -> None:
        rule = fields["rule"]
        self._child(self.routed, rule).inc()
        for broker in fields["targets"]:
            self._child(self.messages, rule, broker).inc()

    def _confirmed(self, fields: Mapping[str, Any]) -> None:
        broker = fields["broker"]
        self._child(self.confirmed, fields.get("rule", "default"), broker).inc()
        latency = fields.get("latency_ms")
        if latency is not None:
            self._child(self.confirm_seconds, broker).observe(latency / 1000)


class _StateCollector(Collector):
    def __init__(self, ctx: ProxyContext, open_sessions: Callable[[], int]) -> None:
        self._ctx = ctx
        self._open_sessions = open_sessions

    def collect(self) -> Iterable[GaugeMetricFamily | InfoMetricFamily]:
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
        yield GaugeMetricFamily(
            "strangler_facts_dropped",
            "Facts dropped because the writer could not keep up",
            value=ctx.facts.dropped_total,
        )
        yield GaugeMetricFamily(
            "strangler_dry_run", "1 when the proxy runs with --dry-run", value=ctx.settings.dry_run
        )
