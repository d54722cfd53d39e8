"""The operator's view during a cutover: per route, what moved recently.

A sampler snapshots the counters every ``interval`` seconds into a ring of
fixed size, so "the last minute" and "the last five minutes" are differences
between two snapshots: constant memory, nothing added to the data path.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from prometheus_client import Counter

from ..proxy import ProxyContext
from .metrics import ProxyMetrics

Totals = dict[tuple[str, str], float]  # (metric, route[/broker]) -> value


def _counter_values(counter: Counter, name: str) -> Totals:
    totals: Totals = {}
    for family in counter.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            key = "/".join(labels[k] for k in ("route", "broker") if k in labels)
            totals[(name, key)] = sample.value
    return totals


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
        m = self._metrics
        totals: Totals = {}
        totals.update(_counter_values(m.messages, "messages"))
        totals.update(_counter_values(m.mirror_failures, "mirror_failures"))
        totals.update(_counter_values(m.fallbacks, "fallbacks"))
        totals.update(_counter_values(m.rejects, "rejects"))
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
        last_1m, last_5m = self._since(60, now), self._since(300, now)
        routes: list[dict[str, Any]] = []
        names = [(r.name, str(r.mode)) for r in table.routes] + [("default", "legacy")]
        rollouts = {r.name: r.rollout.document(r.weight or 0.0) for r in table.routes if r.rollout}
        for name, mode in names:
            entry: dict[str, Any] = {"route": name, "mode": mode}
            if name in rollouts:
                entry["rollout"] = rollouts[name]
            for label, values in (("total", now), ("last_1m", last_1m), ("last_5m", last_5m)):
                entry[label] = {
                    "legacy": values.get(("messages", f"{name}/legacy"), 0.0),
                    "amazonmq": values.get(("messages", f"{name}/amazonmq"), 0.0),
                    "mirror_failures": values.get(("mirror_failures", name), 0.0),
                    "fallbacks": values.get(("fallbacks", name), 0.0),
                    "rejects": values.get(("rejects", name), 0.0),
                }
            routes.append(entry)
        return {
            "routes_version": table.version,
            "source": table.source,
            "dry_run": self._ctx.settings.dry_run,
            "brokers_up": dict(self._ctx.health.up),
            "routes": routes,
        }
