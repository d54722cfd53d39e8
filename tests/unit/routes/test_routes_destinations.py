"""Routes decide on the destinations the broker uses, not on the header as written.

The expected names here were checked against the real ActiveMQ 5.17 broker
(tests/integration/test_activemq_reading.py sends the same forms there)."""

from __future__ import annotations

from textwrap import dedent

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strangler.routes import Mode, RouteTable, decide, parse_routes
from strangler.routes.destinations import IllegalDestination, broker_destinations

BROKERS = dedent("""\
    brokers:
      legacy:
        url: stomp://127.0.0.1:61611
      amazonmq:
        url: stomp+ssl://127.0.0.1:61614
    """)


def table_of(routes_yaml: str) -> RouteTable:
    return parse_routes(BROKERS + "routes:\n" + dedent(routes_yaml), "routes.yaml")


def stomp_names(value: str) -> list[str]:
    return [d.stomp for d in broker_destinations(value)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/queue/x", ["/queue/x"]),
        (" /queue/x\t", ["/queue/x"]),
        ("/queue/ x ", ["/queue/x"]),
        ("x", ["/queue/x"]),
        ("/queue/a,/queue/x", ["/queue/a", "/queue/x"]),
        ("/queue/ a , b ,", ["/queue/a", "/queue/b"]),
        ("/queue/a?consumer.prefetchSize=1,/queue/b", ["/queue/a"]),
        ("/topic/t,/queue/q", ["/topic/t", "/queue/q"]),
        ("queue://q", ["/queue/queue://q"]),
        ("/queue/topic://t", ["/queue/topic://t"]),
        ("/queue/a,topic://b", ["/queue/a", "/queue/topic://b"]),
        ("/queue/a , /topic/b", ["/queue/a", "/queue//topic/b"]),
        ("/queue/d,/queue/d", ["/queue/d"]),
        ("a,", ["/queue/a"]),
        ("/temp-queue/reply", ["/temp-queue/reply"]),
        ("/remote-temp-queue/ID:c-1:1", ["/remote-temp-queue/ID:c-1:1"]),
    ],
)
def test_broker_destinations_follow_activemq(value: str, expected: list[str]) -> None:
    assert stomp_names(value) == expected


@pytest.mark.parametrize("value", ["", " ", "\t", "/queue/", "/queue/ ", ",", " , "])
def test_names_the_broker_refuses_are_illegal(value: str) -> None:
    with pytest.raises(IllegalDestination):
        broker_destinations(value)


def test_connection_temporary_destinations_are_marked() -> None:
    (temp,) = broker_destinations("/temp-queue/reply")
    assert temp.connection_temp and temp.temporary
    (remote,) = broker_destinations("/remote-temp-queue/ID:c-1:1")
    assert remote.temporary and not remote.connection_temp


CUTOVER = """\
    - {name: moved, match: {prefix: /queue/orders}, mode: cutover, on_failure: reject}
    - {name: copied, match: {exact: /queue/audit}, mode: mirror}
    - {name: pinned, match: {exact: /queue/pinned}, mode: legacy}
    """


@pytest.mark.parametrize(
    "value",
    [" /queue/orders", "/queue/orders\t", "/queue/ orders", "orders", "/queue/orders?x=1"],
)
def test_padded_and_unprefixed_forms_take_the_route_of_the_name_the_broker_uses(
    value: str,
) -> None:
    decision = decide(table_of(CUTOVER), value, None, "k")
    assert (decision.rule, decision.targets) == ("moved", ("amazonmq",))
    assert decision.amazonmq_destination == "/queue/orders"


def test_a_composite_of_one_route_is_decided_once_and_sent_whole() -> None:
    decision = decide(table_of(CUTOVER), "/queue/orders.eu,/queue/orders.us", None, "k")
    assert (decision.rule, decision.targets, decision.refusal) == ("moved", ("amazonmq",), None)
    assert decision.amazonmq_destination == "/queue/orders.eu,/queue/orders.us"


def test_a_composite_of_legacy_only_parts_passes_through() -> None:
    table = table_of(CUTOVER)
    decision = decide(table, "/queue/pinned,/queue/elsewhere", None, "k")
    assert decision.targets == ("legacy",) and decision.refusal is None
    assert table.resolve("/queue/pinned,/queue/elsewhere").destinations == (
        "/queue/pinned",
        "/queue/elsewhere",
    )


@pytest.mark.parametrize(
    "value",
    ["/queue/elsewhere,/queue/orders", "/queue/audit,/queue/orders", "/queue/audit,/queue/x"],
)
def test_a_composite_whose_parts_need_different_brokers_is_refused_naming_them(
    value: str,
) -> None:
    decision = decide(table_of(CUTOVER), value, None, "k")
    assert decision.refusal is not None
    assert "different brokers" in decision.refusal
    for name in value.split(","):
        assert name in decision.refusal


def test_a_connection_temporary_destination_stays_on_legacy_whatever_the_routes() -> None:
    table = table_of("- {name: all, match: {glob: '*'}, mode: cutover, on_failure: reject}\n")
    assert decide(table, "/temp-queue/reply", None, "k").targets == ("legacy",)
    assert decide(table, "/queue/x", None, "k").targets == ("amazonmq",)


def test_an_illegal_name_is_left_to_legacy_to_refuse() -> None:
    table = table_of("- {name: all, match: {glob: '*'}, mode: cutover, on_failure: reject}\n")
    decision = decide(table, "/queue/", None, "k")
    assert (decision.rule, decision.mode, decision.targets) == ("default", Mode.LEGACY, ("legacy",))


NAME = st.text(alphabet="ab.-_/:", min_size=1, max_size=8).filter(lambda s: s.strip() == s)
PAD = st.text(alphabet=" \t\r\x0b\x0c\x01", max_size=3)


@given(name=NAME, left=PAD, right=PAD, kind=st.sampled_from(["/queue/", "/topic/"]))
def test_whitespace_around_a_name_never_changes_the_decision(
    name: str, left: str, right: str, kind: str
) -> None:
    table = table_of("""\
        - {name: a, match: {glob: "/queue/a*"}, mode: cutover, on_failure: legacy}
        - {name: t, match: {prefix: /topic/}, mode: mirror}
        - {name: s, match: {exact: /queue/b}, mode: split, weight: 50, on_failure: legacy}
        """)
    canonical = kind + name
    assert decide(table, left + canonical + right, None, "k") == decide(table, canonical, None, "k")
