"""Properties over random route tables: the cached fast path equals a naive linear scan,
and the loader reads back exactly the routes that were written."""

from __future__ import annotations

import fnmatch
from dataclasses import replace

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.routes import (
    MATCH_KINDS,
    Decision,
    MatchKind,
    Mode,
    OnFailure,
    Route,
    RouteTable,
    decide,
    parse_routes,
    split_bucket,
)
from strangler.routes.table import _literal_head

# A tiny alphabet so that random patterns and destinations actually collide. Destinations
# are in the form the broker uses (``/queue/...``): other forms are normalised first
# (test_routes_destinations.py).
DESTINATION = st.text(alphabet="ab./", min_size=1, max_size=5).map(lambda s: "/queue/" + s)
GLOB = st.text(alphabet="ab./*?", min_size=1, max_size=5).map(lambda s: "/queue/" + s) | (
    st.sampled_from(["*", "/queue/[ab]*", "/queue/a?"])
)
WEIGHT = st.sampled_from([0.0, 100.0, 50.0, 0.01, 99.99]) | st.floats(0, 100, allow_nan=False)


@st.composite
def routes(draw: st.DrawFn, index: int) -> Route:
    kind: MatchKind = draw(st.sampled_from(MATCH_KINDS))
    pattern = draw(GLOB if kind == "glob" else DESTINATION)
    mode = draw(st.sampled_from(list(Mode)))
    split = mode is Mode.SPLIT
    return Route(
        name=f"r{index}",
        match_kind=kind,
        pattern=pattern,
        mode=mode,
        weight=draw(WEIGHT) if split else None,
        sticky_header=draw(st.none() | st.just("JMSXGroupID")) if split else None,
        on_failure=draw(st.sampled_from(list(OnFailure)))
        if mode in (Mode.SPLIT, Mode.CUTOVER)
        else None,
        target_destination=draw(st.none() | DESTINATION) if mode is not Mode.LEGACY else None,
        dry_run=draw(st.booleans()),
        line=index + 1,
    )


@st.composite
def route_lists(draw: st.DrawFn) -> list[Route]:
    count = draw(st.integers(0, 8))
    return [draw(routes(i)) for i in range(count)]


def matches(route: Route, destination: str) -> bool:
    if route.match_kind == "exact":
        return destination == route.pattern
    if route.match_kind == "prefix":
        return destination.startswith(route.pattern)
    return fnmatch.fnmatchcase(destination, route.pattern)


def naive_decide(
    routes: list[Route],
    table_dry_run: bool,
    version: str,
    destination: str,
    sticky_value: str | None,
    message_key: str,
) -> Decision:
    route = next((r for r in routes if matches(r, destination)), None)
    if route is None:
        return Decision(
            "default", Mode.LEGACY, ("legacy",), "legacy", None, None, table_dry_run, version
        )
    targets: tuple[str, ...]
    if route.mode is Mode.LEGACY:
        targets = ("legacy",)
    elif route.mode is Mode.MIRROR:
        targets = ("legacy", "amazonmq")
    elif route.mode is Mode.CUTOVER:
        targets = ("amazonmq",)
    else:
        assert route.weight is not None
        key = message_key if sticky_value is None else sticky_value
        targets = ("amazonmq",) if split_bucket(key) < route.weight else ("legacy",)
    return Decision(
        rule=route.name,
        mode=route.mode,
        targets=targets,
        primary=targets[0],
        amazonmq_destination=(route.target_destination or destination)
        if "amazonmq" in targets
        else None,
        on_failure=route.on_failure,
        dry_run=route.dry_run,
        routes_version=version,
    )


MESSAGES = st.lists(
    st.tuples(DESTINATION, st.none() | st.text(max_size=4), st.text(max_size=6)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(
    routes=route_lists(),
    table_dry_run=st.booleans(),
    cache_limit=st.integers(1, 6),
    messages=MESSAGES,
)
def test_cached_decide_equals_naive_linear_scan(
    routes: list[Route],
    table_dry_run: bool,
    cache_limit: int,
    messages: list[tuple[str, str | None, str]],
) -> None:
    table = RouteTable(
        version="v1",
        source="prop",
        brokers={},
        routes=routes,
        dry_run=table_dry_run,
        cache_limit=cache_limit,
    )
    # Twice over: the second pass is served from the (small, often cleared) cache.
    for _ in range(2):
        for destination, sticky, key in messages:
            expected = naive_decide(routes, table_dry_run, "v1", destination, sticky, key)
            assert decide(table, destination, sticky, key) == expected
            first = next((r for r in routes if matches(r, destination)), None)
            assert table.match(destination) is first
            assert table.cached_destinations <= cache_limit


def covers(earlier: Route, later: Route) -> bool:
    """The shadowing rule, pair by pair (the table indexes it instead)."""
    if later.match_kind == "exact":
        if earlier.match_kind == "exact":
            return earlier.pattern == later.pattern
        return matches(earlier, later.pattern)
    head = later.pattern if later.match_kind == "prefix" else _literal_head(later.pattern)
    if earlier.match_kind == "prefix":
        return head.startswith(earlier.pattern)
    if earlier.match_kind == "glob":
        if later.match_kind == "glob" and earlier.pattern == later.pattern:
            return True
        earlier_head = _literal_head(earlier.pattern)
        return earlier.pattern == earlier_head + "*" and head.startswith(earlier_head)
    return False


@settings(max_examples=400, deadline=None)
@given(routes=route_lists())
def test_shadowing_names_the_first_earlier_route_that_covers_each_route(
    routes: list[Route],
) -> None:
    expected = []
    for later_index, later in enumerate(routes):
        first = next((i for i in range(later_index) if covers(routes[i], later)), None)
        if first is not None:
            expected.append(
                f"routes[{later_index}] '{later.name}' (line {later.line}) can never match: "
                f"routes[{first}] '{routes[first].name}' (line {routes[first].line}) comes first"
            )
    table = RouteTable(version="v", source="prop", brokers={}, routes=routes)
    assert [w.split(" and matches")[0] for w in table.warnings] == expected


def to_yaml(routes: list[Route]) -> str:
    document = {
        "brokers": {
            "legacy": {"url": "stomp://127.0.0.1:61611"},
            "amazonmq": {"url": "stomp+ssl://127.0.0.1:61614"},
        },
        "routes": [
            {
                key: value
                for key, value in {
                    "name": r.name,
                    "match": {r.match_kind: r.pattern},
                    "mode": str(r.mode),
                    "weight": r.weight,
                    "sticky_header": r.sticky_header,
                    "on_failure": None if r.on_failure is None else str(r.on_failure),
                    "target_destination": r.target_destination,
                    "dry_run": r.dry_run,
                }.items()
                if value is not None
            }
            for r in routes
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


@settings(max_examples=200, deadline=None)
@given(routes=route_lists())
def test_loader_reads_back_exactly_the_routes_written(routes: list[Route]) -> None:
    loaded = parse_routes(to_yaml(routes), "prop.yaml").routes
    assert all(route.line > 0 for route in loaded)
    assert [replace(route, line=0) for route in loaded] == [
        replace(route, line=0) for route in routes
    ]
