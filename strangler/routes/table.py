"""The route table: first-match-wins lookup with a bounded per-destination cache.

Invariants:
- First match wins in *file order*, across match kinds: an earlier glob or prefix beats a
  later exact. ``match`` is observably identical to a linear scan of ``routes``.
- Exact patterns are found through a dict, so even an uncached lookup only scans the globs
  and prefixes that come *before* the exact hit (or all of them when there is none).
- After the first lookup of a destination, ``resolve`` is one dict hit: the Decision objects
  for that destination are built once and reused, so deciding a message allocates no
  Decision. The cache holds at most ``cache_limit`` destinations and is cleared when full,
  so a client inventing destinations cannot grow memory without bound.
- The table is immutable after construction; the cache is a pure memo of ``routes``, so
  clearing it never changes an answer. Mutation of the cache is a single dict operation, so
  concurrent use from threads can only cost recomputation, never a wrong answer.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from .model import (
    AMAZONMQ,
    DEFAULT_RULE,
    DEFAULT_TRACE_HEADER,
    LEGACY,
    BrokerConfig,
    Decision,
    Mode,
    Route,
)

DEFAULT_CACHE_LIMIT: Final = 65_536

_LEGACY_ONLY: Final = (LEGACY,)
_AMAZONMQ_ONLY: Final = (AMAZONMQ,)
_MIRRORED: Final = (LEGACY, AMAZONMQ)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Everything ``decide`` needs for one destination, precomputed.

    ``weight is None`` means the answer does not depend on the message: always ``hit``.
    Otherwise the message goes to ``hit`` (Amazon MQ) iff its split bucket < ``weight``,
    else to ``miss`` (legacy).
    """

    route: Route | None
    weight: float | None
    hit: Decision
    miss: Decision


# (file index, route, compiled glob or None for a prefix)
_Scanned = tuple[int, Route, re.Pattern[str] | None]


class RouteTable:
    __slots__ = (
        "_brokers",
        "_cache",
        "_cache_limit",
        "_default",
        "_dry_run",
        "_exact",
        "_fixed",
        "_routes",
        "_scan",
        "_source",
        "_trace_header",
        "_version",
        "_warnings",
    )

    def __init__(
        self,
        *,
        version: str,
        source: str,
        brokers: Mapping[str, BrokerConfig],
        routes: Iterable[Route],
        dry_run: bool = False,
        trace_header: str = DEFAULT_TRACE_HEADER,
        warnings: Iterable[str] = (),
        cache_limit: int = DEFAULT_CACHE_LIMIT,
    ) -> None:
        if cache_limit < 1:
            raise ValueError("cache_limit must be >= 1")
        self._version = version
        self._source = source
        self._brokers: Mapping[str, BrokerConfig] = MappingProxyType(dict(brokers))
        self._routes = tuple(routes)
        self._dry_run = dry_run
        self._trace_header = trace_header
        self._cache_limit = cache_limit
        self._cache: dict[str, Resolution] = {}

        self._exact: dict[str, int] = {}
        scan: list[_Scanned] = []
        for index, route in enumerate(self._routes):
            if route.match_kind == "exact":
                # setdefault: a repeated exact pattern is shadowed by its first occurrence.
                self._exact.setdefault(route.pattern, index)
            elif route.match_kind == "glob":
                scan.append((index, route, _compile_glob(route.pattern)))
            else:
                scan.append((index, route, None))
        self._scan: tuple[_Scanned, ...] = tuple(scan)

        default = Decision(
            rule=DEFAULT_RULE,
            mode=Mode.LEGACY,
            targets=_LEGACY_ONLY,
            primary=LEGACY,
            amazonmq_destination=None,
            on_failure=None,
            dry_run=dry_run,
            routes_version=version,
        )
        self._default = Resolution(route=None, weight=None, hit=default, miss=default)
        # Routes whose decisions do not depend on the destination share one Resolution.
        self._fixed: dict[int, Resolution] = {
            index: self._resolution(route, route.target_destination or "")
            for index, route in enumerate(self._routes)
            if route.mode is Mode.LEGACY or route.target_destination is not None
        }
        self._warnings = tuple(warnings) + _shadowing(self._routes)

    # -- read-only view ---------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self._version

    @property
    def source(self) -> str:
        return self._source

    @property
    def brokers(self) -> Mapping[str, BrokerConfig]:
        return self._brokers

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes

    @property
    def dry_run(self) -> bool:
        return self._dry_run

    @property
    def trace_header(self) -> str:
        return self._trace_header

    @property
    def needs_amazonmq(self) -> bool:
        return any(route.mode is not Mode.LEGACY for route in self._routes)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Valid-but-suspicious configuration (unreachable routes), for logging at load."""
        return self._warnings

    @property
    def cache_limit(self) -> int:
        return self._cache_limit

    @property
    def cached_destinations(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return (
            f"RouteTable(version={self._version!r}, source={self._source!r}, "
            f"routes={len(self._routes)})"
        )

    # -- lookup -----------------------------------------------------------------------------

    def match(self, destination: str) -> Route | None:
        """The first route, in file order, matching ``destination``; None if none does."""
        return self.resolve(destination).route

    def resolve(self, destination: str) -> Resolution:
        """Cached precomputed decisions for ``destination`` (what ``decide`` uses)."""
        cached = self._cache.get(destination)
        if cached is not None:
            return cached
        index = self._first_match(destination)
        if index is None:
            resolution = self._default
        else:
            fixed = self._fixed.get(index)
            if fixed is not None:
                resolution = fixed
            else:
                resolution = self._resolution(self._routes[index], destination)
        if len(self._cache) >= self._cache_limit:
            self._cache.clear()
        self._cache[destination] = resolution
        return resolution

    def _first_match(self, destination: str) -> int | None:
        exact = self._exact.get(destination)
        for index, route, glob in self._scan:
            # Only routes earlier than the exact hit can beat it.
            if exact is not None and index > exact:
                break
            if glob is None:
                if destination.startswith(route.pattern):
                    return index
            elif glob.match(destination) is not None:
                return index
        return exact

    def _resolution(self, route: Route, destination: str) -> Resolution:
        amazonmq_destination = route.target_destination or destination

        def make(targets: tuple[str, ...]) -> Decision:
            return Decision(
                rule=route.name,
                mode=route.mode,
                targets=targets,
                primary=targets[0],
                amazonmq_destination=amazonmq_destination if AMAZONMQ in targets else None,
                on_failure=route.on_failure,
                dry_run=route.dry_run,
                routes_version=self._version,
            )

        if route.mode is Mode.LEGACY:
            legacy = make(_LEGACY_ONLY)
            return Resolution(route=route, weight=None, hit=legacy, miss=legacy)
        if route.mode is Mode.MIRROR:
            mirrored = make(_MIRRORED)
            return Resolution(route=route, weight=None, hit=mirrored, miss=mirrored)
        if route.mode is Mode.CUTOVER:
            cutover = make(_AMAZONMQ_ONLY)
            return Resolution(route=route, weight=None, hit=cutover, miss=cutover)
        hit, miss = make(_AMAZONMQ_ONLY), make(_LEGACY_ONLY)
        weight = route.weight
        assert weight is not None  # Route.__post_init__: split always has a weight
        # Buckets lie in [0, 100): weight 0 never hits and 100 always does, so skip the hash.
        if weight <= 0.0:
            return Resolution(route=route, weight=None, hit=miss, miss=miss)
        if weight >= 100.0:
            return Resolution(route=route, weight=None, hit=hit, miss=hit)
        return Resolution(route=route, weight=weight, hit=hit, miss=miss)


def _compile_glob(pattern: str) -> re.Pattern[str]:
    # fnmatchcase semantics: case-sensitive on every OS, '*' also crosses '/' and '.'.
    return re.compile(fnmatch.translate(pattern))


_GLOB_SPECIALS: Final = frozenset("*?[")


def _literal_head(glob: str) -> str:
    """The fixed text every match of ``glob`` starts with."""
    for position, char in enumerate(glob):
        if char in _GLOB_SPECIALS:
            return glob[:position]
    return glob


def _covers(earlier: Route, later: Route) -> bool:
    """True when every destination ``later`` matches is certainly matched by ``earlier``.

    Conservative: False means "could not prove it", not "reachable".
    """
    if later.match_kind == "exact":
        if earlier.match_kind == "exact":
            return earlier.pattern == later.pattern
        if earlier.match_kind == "prefix":
            return later.pattern.startswith(earlier.pattern)
        return fnmatch.fnmatchcase(later.pattern, earlier.pattern)
    head = later.pattern if later.match_kind == "prefix" else _literal_head(later.pattern)
    if earlier.match_kind == "prefix":
        return head.startswith(earlier.pattern)
    if earlier.match_kind == "glob":
        if later.match_kind == "glob" and earlier.pattern == later.pattern:
            return True
        # "X*" with no other wildcard behaves exactly like prefix "X".
        earlier_head = _literal_head(earlier.pattern)
        return earlier.pattern == earlier_head + "*" and head.startswith(earlier_head)
    return False


def _shadowing(routes: tuple[Route, ...]) -> tuple[str, ...]:
    # Unreachable routes are warnings, not errors: putting a catch-all legacy route first is
    # the emergency rollback, and that must load.
    found: list[str] = []
    for later_index, later in enumerate(routes):
        for earlier_index in range(later_index):
            earlier = routes[earlier_index]
            if _covers(earlier, later):
                found.append(
                    f"routes[{later_index}] '{later.name}' (line {later.line}) can never match: "
                    f"routes[{earlier_index}] '{earlier.name}' (line {earlier.line}) comes "
                    "first and matches everything it would"
                )
                break
    return tuple(found)
