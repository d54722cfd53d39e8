"""The operator's view during a cutover: per route, where messages ended up recently.

A sampler snapshots the counters every ``interval`` seconds into a ring of
fixed size, so "the last minute" and "the last five minutes" are differences
between two snapshots: constant memory, nothing added to the data path.

The numbers are the metrics' (``ProxyMetrics``), so they follow the same rule:
a message counts on the broker that confirmed it (or on legacy once forwarded,
without a receipt); a fallback counts on legacy, never on Amazon MQ.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from prometheus_client import Counter, Gauge

from ..proxy import ProxyContext
from ..routes import AMAZONMQ, DEFAULT_RULE, LEGACY
from .metrics import ProxyMetrics

Totals = dict[tuple[str, str], float]  # (what, route[/broker]) -> value

# What each route shows, per window: the counter and its key in the report.
_COUNTED = (
    ("routed", "routed"),
    ("messages", "messages"),
    ("fallbacks", "fallbacks"),
    ("rejects", "rejects"),
    ("mirror_failures", "mirror_failures"),
    ("in_doubt", "in_doubt"),
)


def _values(metric: Counter | Gauge, name: str, totals: Totals) -> None:
    for family in metric.collect():
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            key = "/".join(labels[k] for k in ("route", "broker") if k in labels)
            totals[(name, key)] = totals.get((name, key), 0.0) + sample.value


class StatusWindow:
    def __init__(self, ctx: ProxyContext, metrics: ProxyMetrics, interval: float = 10.0) -> None:
        self._ctx = ctx
        self._metrics = metrics
        self.interval = interval
        # 5 minutes of snapshots plus the current one.
        self._ring: collections.deque[tuple[float, Totals]] = collections.deque(
            maxlen=int(300 / interval) + 2
        )
        self.sample()

    def totals(self) -> Totals:
        totals: Totals = {}
        for attribute, name in _COUNTED:
            _values(getattr(self._metrics, attribute), name, totals)
        return totals

    def sample(self) -> None:
        self._ring.append((time.monotonic(), self.totals()))

    def _since(self, seconds: float, now: Totals) -> Totals:
        cutoff = time.monotonic() - seconds
        base: Totals = {}
        for taken, totals in self._ring:
            if taken <= cutoff:
                base = totals
            else:
                if not base:
                    base = totals
                break
        return {k: v - base.get(k, 0.0) for k, v in now.items()}

    def report(self) -> dict[str, Any]:
        table = self._ctx.routes.table
        now = self.totals()
        windows = (
            ("total", now),
            ("last_1m", self._since(60, now)),
            ("last_5m", self._since(300, now)),
        )
        unresolved: Totals = {}
        _values(self._metrics.unresolved, "unresolved", unresolved)
        routes: list[dict[str, Any]] = []
        names = [(r.name, str(r.mode)) for r in table.routes] + [(DEFAULT_RULE, "legacy")]
        for name, mode in names:
            entry: dict[str, Any] = {
                "route": name,
                "mode": mode,
                "unresolved": unresolved.get(("unresolved", name), 0.0),
            }
            for label, values in windows:
                entry[label] = {
                    "routed": values.get(("routed", name), 0.0),
                    LEGACY: values.get(("messages", f"{name}/{LEGACY}"), 0.0),
                    AMAZONMQ: values.get(("messages", f"{name}/{AMAZONMQ}"), 0.0),
                    "fallbacks": values.get(("fallbacks", name), 0.0),
                    "rejects": values.get(("rejects", name), 0.0),
                    "mirror_failures": values.get(("mirror_failures", name), 0.0),
                    "in_doubt": sum(
                        values.get(("in_doubt", f"{name}/{b}"), 0.0) for b in (LEGACY, AMAZONMQ)
                    ),
                }
            routes.append(entry)
        return {
            "routes_version": table.version,
            "source": table.source,
            "dry_run": self._ctx.settings.dry_run,
            "brokers_up": dict(self._ctx.health.up),
            "routes": routes,
        }
