"""First match wins in file order across match kinds; lookups are cached and bounded."""

from __future__ import annotations

from textwrap import dedent

import pytest

from strangler.routes import (
    DEFAULT_CACHE_LIMIT,
    Mode,
    OnFailure,
    Route,
    RouteTable,
    decide,
    parse_routes,
)

BROKERS = dedent("""\
    brokers:
      legacy:
        url: stomp://127.0.0.1:61611
      amazonmq:
        url: stomp+ssl://127.0.0.1:61614
    """)


def table_of(routes_yaml: str) -> RouteTable:
    return parse_routes(BROKERS + "routes:\n" + dedent(routes_yaml), "routes.yaml")


def names(table: RouteTable, *destinations: str) -> list[str | None]:
    return [route.name if (route := table.match(d)) else None for d in destinations]


def test_exact_matches_only_the_identical_destination() -> None:
    table = table_of("- {name: e, match: {exact: /queue/orders}, mode: mirror}\n")
    assert names(table, "/queue/orders", "/queue/orders.x", "/queue/order", "/QUEUE/orders") == [
        "e",
        None,
        None,
        None,
    ]


def test_prefix_matches_by_startswith_including_itself() -> None:
    table = table_of("- {name: p, match: {prefix: /queue/pay.}, mode: mirror}\n")
    assert names(table, "/queue/pay.", "/queue/pay.eu", "/queue/pay", "/queue/payx") == [
        "p",
        "p",
        None,
        None,
    ]


def test_glob_is_case_sensitive_fnmatch_where_star_crosses_dots_and_slashes() -> None:
    table = table_of("""\
        - {name: g, match: {glob: "/queue/billing.*"}, mode: mirror}
        - {name: q, match: {glob: "/topic/t?.[ab]"}, mode: mirror}
        """)
    assert names(
        table,
        "/queue/billing.",
        "/queue/billing.eu.v2/x",
        "/queue/Billing.eu",
        "/queue/billingx",
        "/topic/t1.a",
        "/topic/t1.c",
        "/topic/t12.a",
    ) == ["g", "g", None, None, "q", None, None]


def test_earlier_glob_beats_later_exact() -> None:
    table = table_of("""\
        - {name: glob-first, match: {glob: "/queue/*"}, mode: cutover, on_failure: legacy}
        - {name: exact-later, match: {exact: /queue/orders}, mode: mirror}
        """)
    assert names(table, "/queue/orders") == ["glob-first"]
    assert decide(table, "/queue/orders", None, "k").mode is Mode.CUTOVER


def test_earlier_exact_beats_later_prefix_and_glob() -> None:
    table = table_of("""\
        - {name: exact-first, match: {exact: /queue/orders}, mode: legacy}
        - {name: prefix, match: {prefix: /queue/}, mode: mirror}
        - {name: glob, match: {glob: "*"}, mode: mirror}
        """)
    assert names(table, "/queue/orders", "/queue/other", "/topic/x") == [
        "exact-first",
        "prefix",
        "glob",
    ]


def test_earlier_prefix_beats_later_glob_and_exact_but_not_earlier_ones() -> None:
    table = table_of("""\
        - {name: g1, match: {glob: "/queue/a.special"}, mode: legacy}
        - {name: p, match: {prefix: /queue/a.}, mode: mirror}
        - {name: e, match: {exact: /queue/a.b}, mode: legacy}
        - {name: g2, match: {glob: "/queue/a.*"}, mode: legacy}
        """)
    assert names(table, "/queue/a.special", "/queue/a.b", "/queue/a.c") == ["g1", "p", "p"]


def test_repeated_exact_pattern_uses_the_first_occurrence() -> None:
    table = table_of("""\
        - {name: first, match: {exact: /queue/q}, mode: mirror}
        - {name: second, match: {exact: /queue/q}, mode: legacy}
        """)
    assert names(table, "/queue/q") == ["first"]
    assert len(table.warnings) == 1


def test_unmatched_destination_gets_the_default_legacy_decision() -> None:
    table = table_of(
        "- {name: e, match: {exact: /queue/orders}, mode: cutover, on_failure: reject}\n"
    )
    decision = decide(table, "/queue/other", None, "k")
    assert decision.rule == "default"
    assert decision.mode is Mode.LEGACY
    assert decision.targets == ("legacy",)
    assert decision.primary == "legacy"
    assert decision.amazonmq_destination is None
    assert decision.on_failure is None


def test_mode_decisions_have_documented_targets_and_primary() -> None:
    table = table_of("""\
        - {name: l, match: {exact: /queue/l}, mode: legacy}
        - {name: m, match: {exact: /queue/m}, mode: mirror}
        - {name: c, match: {exact: /queue/c}, mode: cutover, on_failure: reject}
        """)
    legacy, mirror, cutover = (
        decide(table, d, None, "k") for d in ("/queue/l", "/queue/m", "/queue/c")
    )
    assert (legacy.targets, legacy.primary, legacy.amazonmq_destination) == (
        ("legacy",),
        "legacy",
        None,
    )
    assert (mirror.targets, mirror.primary, mirror.amazonmq_destination) == (
        ("legacy", "amazonmq"),
        "legacy",
        "/queue/m",
    )
    assert (cutover.targets, cutover.primary, cutover.amazonmq_destination) == (
        ("amazonmq",),
        "amazonmq",
        "/queue/c",
    )
    assert (mirror.on_failure, cutover.on_failure) == (None, OnFailure.REJECT)


def test_target_destination_renames_on_amazonmq_only() -> None:
    table = table_of("""\
        - name: rename
          match: {prefix: /queue/orders}
          mode: mirror
          target_destination: /queue/orders.v2
        - name: keep
          match: {prefix: /queue/keep.}
          mode: cutover
          on_failure: legacy
        - name: split-rename
          match: {exact: /queue/s}
          mode: split
          weight: 50
          on_failure: legacy
          target_destination: /queue/s.v2
        """)
    assert decide(table, "/queue/orders.eu", None, "k").amazonmq_destination == "/queue/orders.v2"
    assert decide(table, "/queue/keep.x", None, "k").amazonmq_destination == "/queue/keep.x"
    by_target = {
        d.targets: d.amazonmq_destination
        for d in (decide(table, "/queue/s", None, f"key-{i}") for i in range(50))
    }
    assert by_target == {("amazonmq",): "/queue/s.v2", ("legacy",): None}


def test_decisions_are_cached_and_identical_objects_per_destination() -> None:
    table = table_of("""\
        - {name: m, match: {prefix: /queue/}, mode: mirror}
        - {name: s, match: {glob: "/topic/*"}, mode: split, weight: 50, on_failure: legacy}
        """)
    first = decide(table, "/queue/a", None, "k1")
    assert decide(table, "/queue/a", "sticky", "k2") is first
    assert decide(table, "/queue/b", None, "k1") is not first  # destination differs
    split = {id(decide(table, "/topic/t", None, f"k{i}")) for i in range(200)}
    assert len(split) == 2  # one precomputed Decision per side, reused for every message
    assert table.cached_destinations == 3


def test_destination_independent_routes_share_one_decision_across_destinations() -> None:
    table = table_of("""\
        - {name: pin, match: {prefix: /queue/old.}, mode: legacy}
        - {name: fan-in, match: {prefix: /queue/new.}, mode: mirror, target_destination: /queue/all}
        """)
    assert decide(table, "/queue/old.a", None, "k") is decide(table, "/queue/old.b", None, "k")
    assert decide(table, "/queue/new.a", None, "k") is decide(table, "/queue/new.b", None, "k")
    assert decide(table, "/queue/x", None, "k") is decide(table, "/queue/y", None, "k")


def test_default_cache_limit_is_65536() -> None:
    assert DEFAULT_CACHE_LIMIT == 65_536
    assert parse_routes(BROKERS, "r").cache_limit == DEFAULT_CACHE_LIMIT


def test_cache_is_cleared_when_full_and_answers_stay_correct() -> None:
    routes = [Route(name="p", match_kind="prefix", pattern="/queue/q/", mode=Mode.MIRROR)]
    table = RouteTable(version="v", source="s", brokers={}, routes=routes, cache_limit=3)
    for destination in ("/queue/q/1", "/queue/q/2", "/queue/q/3"):
        table.resolve(destination)
    assert table.cached_destinations == 3
    table.resolve("/queue/q/4")
    assert table.cached_destinations == 1  # cleared, then the new entry added
    assert decide(table, "/queue/q/1", None, "k").amazonmq_destination == "/queue/q/1"
    assert decide(table, "/queue/x", None, "k").rule == "default"
    assert table.cached_destinations == 3


def test_cache_never_exceeds_its_limit_with_many_distinct_destinations() -> None:
    table = table_of("- {name: p, match: {prefix: /queue/}, mode: mirror}\n")
    for i in range(DEFAULT_CACHE_LIMIT + 10):
        decide(table, f"/queue/{i}", None, "k")
        assert table.cached_destinations <= DEFAULT_CACHE_LIMIT
    assert table.cached_destinations == 10


def test_cache_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RouteTable(version="v", source="s", brokers={}, routes=(), cache_limit=0)


def test_route_table_exposes_read_only_views() -> None:
    table = table_of("- {name: m, match: {exact: /queue/q}, mode: mirror}\n")
    with pytest.raises(TypeError):
        table.brokers["legacy"] = table.brokers["amazonmq"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        table.version = "other"  # type: ignore[misc]
    assert isinstance(table.routes, tuple)
