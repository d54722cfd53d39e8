"""What changes between two route tables: the "plan" of a reload (Kroxylicious:
detect, plan, apply) and of ``strangler plan``.

Pure: compares two loaded tables, no I/O. Routes are matched by name; a route
whose fields or position changed is "changed" (position matters: first match
wins). Broker and table-wide settings changes are listed separately.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .model import Route
from .table import RouteTable

_COMPARED = tuple(f.name for f in fields(Route) if f.name not in ("name", "line"))


@dataclass(frozen=True, slots=True)
class RouteChange:
    name: str
    kind: str  # "added" | "removed" | "changed"
    before: Route | None
    after: Route | None
    changed_fields: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"route": self.name, "change": self.kind}
        if self.before is not None:
            out["mode_before"] = str(self.before.mode)
        if self.after is not None:
            out["mode_after"] = str(self.after.mode)
        if self.changed_fields:
            out["fields"] = list(self.changed_fields)
        return out


@dataclass(frozen=True, slots=True)
class RoutesPlan:
    old_version: str
    new_version: str
    changes: tuple[RouteChange, ...]
    brokers_changed: tuple[str, ...]
    settings_changed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.changes or self.brokers_changed or self.settings_changed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "routes": [c.as_dict() for c in self.changes],
            "brokers_changed": list(self.brokers_changed),
            "settings_changed": list(self.settings_changed),
        }


def plan_change(old: RouteTable, new: RouteTable) -> RoutesPlan:
    old_routes = {r.name: (i, r) for i, r in enumerate(old.routes)}
    new_routes = {r.name: (i, r) for i, r in enumerate(new.routes)}
    changes: list[RouteChange] = []
    for name, (_, route) in old_routes.items():
        if name not in new_routes:
            changes.append(RouteChange(name, "removed", route, None))
    for name, (index, route) in new_routes.items():
        if name not in old_routes:
            changes.append(RouteChange(name, "added", None, route))
            continue
        old_index, before = old_routes[name]
        differing = [f for f in _COMPARED if getattr(before, f) != getattr(route, f)]
        if old_index != index:
            differing.append("position")
        if differing:
            changes.append(RouteChange(name, "changed", before, route, tuple(differing)))
    brokers = sorted(
        name
        for name in set(old.brokers) | set(new.brokers)
        if old.brokers.get(name) != new.brokers.get(name)
    )
    settings = [
        name for name in ("dry_run", "trace_header") if getattr(old, name) != getattr(new, name)
    ]
    return RoutesPlan(old.version, new.version, tuple(changes), tuple(brokers), tuple(settings))
