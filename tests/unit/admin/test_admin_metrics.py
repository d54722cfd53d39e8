"""ProxyMetrics fed fact sequences (as the fact writer feeds it): names, labels, values.

Each scenario is the facts the proxy writes for it (HELPERS.md's vocabulary, including
``possibly_stored``, ``receipt`` on ``message_fell_back`` and ``role`` on
``message_confirmed``), emitted through a real FactSink whose writer thread calls the
metrics, then read back from the Prometheus exposition text.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from strangler.admin import ProxyMetrics, StatusWindow
from strangler.admin.client import render
from strangler.facts import Fact, FactSink
from strangler.proxy import ProxyContext, ProxySettings, RoutesHolder
from strangler.routes import parse_routes

ROUTES = """\
brokers:
  legacy: {url: "stomp://127.0.0.1:61613"}
  amazonmq:
    url: "stomp+ssl://127.0.0.1:61614"
    credentials: {username_env: U, password_env: P}
routes:
  - {name: orders, match: {exact: /queue/orders}, mode: mirror}
  - {name: billing, match: {exact: /queue/billing}, mode: cutover, on_failure: legacy}
"""
ROUTES_AFTER = ROUTES + "  - {name: audit, match: {prefix: /topic/audit.}, mode: legacy}\n"

BROKER_SERIES = (
    "strangler_messages_total",
    "strangler_in_doubt_total",
    "strangler_confirm_seconds_count",
)
ROUTE_SERIES = (
    "strangler_messages_routed_total",
    "strangler_fallbacks_total",
    "strangler_rejects_total",
    "strangler_mirror_failures_total",
    "strangler_unresolved_messages",
)
CONFIRMATIONS = (("legacy", "primary"), ("amazonmq", "primary"), ("amazonmq", "mirror"))


Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


class Proxy:
    """The metrics of a proxy whose facts go through a real sink's writer thread."""

    def __init__(self, routes: str = ROUTES, *, dry_run: bool = False) -> None:
        self.sink = FactSink(io.StringIO(), interval=0.01)
        self.ctx = ProxyContext(
            ProxySettings(dry_run=dry_run),
            RoutesHolder(parse_routes(routes, "routes.yaml")),
            self.sink,
        )
        self.metrics = ProxyMetrics(self.ctx, open_sessions=lambda: 0)
        self.sink.writer_listeners.append(self.metrics.on_fact)
        self.sink.writer_counters.append(self.metrics.on_facts)

    def emit(self, event: str, **fields: Any) -> None:
        self.sink.emit(event, **fields)  # type: ignore[arg-type]  # names a test chose

    def samples(self) -> dict[Key, float]:
        assert self.sink.flush(5.0)
        text = generate_latest(self.metrics.registry).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.samples()[key(name, **labels)]

    def close(self) -> None:
        self.sink.close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    running = Proxy()
    yield running
    running.close()


def routed(
    rule: str, targets: list[str], *, receipt: bool, session: str = "s1", **extra: Any
) -> dict[str, Any]:
    return {
        "trace_id": extra.pop("trace_id", "t1"),
        "destination": f"/queue/{rule}",
        "rule": rule,
        "targets": targets,
        "receipt": receipt,
        "dry_run": False,
        "session": session,
        **extra,
    }


def assert_all_series_at_zero(proxy: Proxy, routes: tuple[str, ...], *, applied: float = 0) -> None:
    samples = proxy.samples()
    for route in routes:
        for name in ROUTE_SERIES:
            assert samples[key(name, route=route)] == 0, (name, route)
        for name in BROKER_SERIES:
            for broker in ("legacy", "amazonmq"):
                assert samples[key(name, route=route, broker=broker)] == 0, (name, route, broker)
        for broker, role in CONFIRMATIONS:
            confirmed = key("strangler_confirmed_total", route=route, broker=broker, role=role)
            assert samples[confirmed] == 0, (route, broker, role)
    for result, expected in (("applied", applied), ("rejected", 0), ("unchanged", 0)):
        assert samples[key("strangler_routes_reloads_total", result=result)] == expected
    for name in (
        "strangler_internal_errors_total",
        "strangler_facts_dropped_total",
        "strangler_client_protocol_errors_total",
    ):
        assert samples[key(name)] == 0, name


def test_every_series_exists_at_zero_from_start(proxy: Proxy) -> None:
    assert_all_series_at_zero(proxy, ("orders", "billing", "default"))


def test_a_reload_creates_the_new_routes_series_at_zero(proxy: Proxy) -> None:
    new = parse_routes(ROUTES_AFTER, "routes.yaml")
    proxy.ctx.routes.table = new
    proxy.emit(
        "routes_applied",
        trigger="SIGHUP",
        routes_version=new.version,
        previous_version="x",
        plan={"routes": [{"route": "audit", "change": "added", "mode_after": "legacy"}]},
    )
    assert_all_series_at_zero(proxy, ("orders", "billing", "default", "audit"), applied=1)
    info = [k for k in proxy.samples() if k[0] == "strangler_routes_info"]
    assert info == [key("strangler_routes_info", source="routes.yaml", version=new.version)]


def test_routes_loaded_names_routes_the_metrics_did_not_know(proxy: Proxy) -> None:
    proxy.emit("routes_loaded", source="routes.yaml", routes_version="v", routes=["late"])
    assert proxy.value("strangler_fallbacks_total", route="late") == 0
    assert proxy.value("strangler_messages_total", route="late", broker="amazonmq") == 0


def test_reload_results_are_counted_by_result(proxy: Proxy) -> None:
    proxy.emit("routes_rejected", trigger="SIGHUP", file="routes.yaml", line=3, reason="x")
    proxy.emit("routes_unchanged", trigger="SIGHUP", routes_version="v")
    proxy.emit("routes_unchanged", trigger="file changed", routes_version="v")
    assert proxy.value("strangler_routes_reloads_total", result="rejected") == 1
    assert proxy.value("strangler_routes_reloads_total", result="unchanged") == 2
    assert proxy.value("strangler_routes_reloads_total", result="applied") == 0


def test_during_an_outage_fallbacks_count_on_legacy_not_amazonmq(proxy: Proxy) -> None:
    for i in range(4):
        trace = f"t{i}"
        proxy.emit(
            "message_routed", **routed("billing", ["amazonmq"], receipt=True, trace_id=trace)
        )
        proxy.emit(
            "message_fell_back",
            trace_id=trace,
            rule="billing",
            reason="amazonmq unavailable",
            to="legacy",
            possibly_stored=False,
            receipt=True,
            session="s1",
        )
    # Fell back, legacy's receipt still due: nowhere yet, four outcomes awaited.
    assert proxy.value("strangler_unresolved_messages", route="billing") == 4
    assert proxy.value("strangler_messages_total", route="billing", broker="legacy") == 0
    for i in range(4):
        proxy.emit(
            "message_confirmed",
            trace_id=f"t{i}",
            rule="billing",
            broker="legacy",
            role="primary",
            latency_ms=1.5,
            session="s1",
        )
    assert proxy.value("strangler_messages_total", route="billing", broker="legacy") == 4
    assert proxy.value("strangler_messages_total", route="billing", broker="amazonmq") == 0
    assert proxy.value("strangler_fallbacks_total", route="billing") == 4
    assert proxy.value("strangler_messages_routed_total", route="billing") == 4
    assert (
        proxy.value("strangler_confirmed_total", route="billing", broker="legacy", role="primary")
        == 4
    )
    assert proxy.value("strangler_confirm_seconds_count", route="billing", broker="legacy") == 4
    assert proxy.value("strangler_unresolved_messages", route="billing") == 0
    assert proxy.value("strangler_in_doubt_total", route="billing", broker="amazonmq") == 0


def test_a_fallback_without_a_receipt_counts_on_legacy_when_forwarded(proxy: Proxy) -> None:
    proxy.emit("message_routed", **routed("billing", ["amazonmq"], receipt=False))
    proxy.emit(
        "message_fell_back",
        trace_id="t1",
        rule="billing",
        reason="timeout",
        to="legacy",
        possibly_stored=True,
        receipt=False,
        session="s1",
    )
    assert proxy.value("strangler_messages_total", route="billing", broker="legacy") == 1
    assert proxy.value("strangler_messages_total", route="billing", broker="amazonmq") == 0
    assert proxy.value("strangler_in_doubt_total", route="billing", broker="amazonmq") == 1
    assert proxy.value("strangler_unresolved_messages", route="billing") == 0


def test_facts_from_a_template_count_as_the_same_facts_recorded_one_by_one() -> None:
    """The hot path's facts reach the metrics counted per batch (``on_facts``): the series
    must read as if each fact had come alone, owed outcomes included."""
    kinds = (
        routed("billing", ["legacy"], receipt=False),
        routed("billing", ["legacy"], receipt=True),
        routed("orders", ["legacy", "amazonmq"], receipt=False),
        routed("orders", ["amazonmq"], receipt=True, session="s2"),
    )
    one_by_one, templated = Proxy(), Proxy()
    try:
        for fields in kinds:
            template = templated.sink.template(Fact.MESSAGE_ROUTED, fields)
            for n in range(7):
                one_by_one.sink.record(Fact.MESSAGE_ROUTED, {**fields, "trace_id": f"t{n}"})
                templated.sink.record_from(template, f"t{n}", 1.0)
        expected = one_by_one.samples()
        assert expected[key("strangler_messages_total", route="billing", broker="legacy")] == 7
        assert expected[key("strangler_unresolved_messages", route="orders")] == 14
        assert templated.samples() == expected
    finally:
        one_by_one.close()
        templated.close()


def test_a_cutover_confirmed_by_amazonmq_counts_there(proxy: Proxy) -> None:
    proxy.emit("message_routed", **routed("billing", ["amazonmq"], receipt=True))
    assert proxy.value("strangler_unresolved_messages", route="billing") == 1
    proxy.emit(
        "message_confirmed",
        trace_id="t1",
        rule="billing",
        broker="amazonmq",
        role="primary",
        latency_ms=12.0,
        session="s1",
    )
    assert proxy.value("strangler_messages_total", route="billing", broker="amazonmq") == 1
    assert proxy.value("strangler_messages_total", route="billing", broker="legacy") == 0
    assert proxy.value("strangler_confirm_seconds_sum", route="billing", broker="amazonmq") == (
        pytest.approx(0.012)
    )
    assert proxy.value("strangler_unresolved_messages", route="billing") == 0


def test_rejected_and_in_doubt(proxy: Proxy) -> None:
    proxy.emit("message_routed", **routed("billing", ["amazonmq"], receipt=True))
    proxy.emit(
        "message_rejected",
        trace_id="t1",
        rule="billing",
        reason="no answer",
        possibly_stored=True,
        session="s1",
    )
    assert proxy.value("strangler_rejects_total", route="billing") == 1
    assert proxy.value("strangler_in_doubt_total", route="billing", broker="amazonmq") == 1
    assert proxy.value("strangler_messages_total", route="billing", broker="legacy") == 0
    assert proxy.value("strangler_messages_total", route="billing", broker="amazonmq") == 0
    assert proxy.value("strangler_unresolved_messages", route="billing") == 0


def test_a_mirrored_message_counts_on_each_broker_that_holds_it(proxy: Proxy) -> None:
    proxy.emit("message_routed", **routed("orders", ["legacy", "amazonmq"], receipt=False))
    assert proxy.value("strangler_messages_total", route="orders", broker="legacy") == 1
    proxy.emit(
        "message_confirmed",
        trace_id="t1",
        rule="orders",
        broker="amazonmq",
        role="mirror",
        latency_ms=3.0,
        session="s1",
    )
    proxy.emit(
        "message_routed", **routed("orders", ["legacy", "amazonmq"], receipt=False, trace_id="t2")
    )
    proxy.emit(
        "message_mirror_failed",
        trace_id="t2",
        rule="orders",
        reason="connection lost",
        possibly_stored=False,
        session="s1",
    )
    assert proxy.value("strangler_messages_total", route="orders", broker="legacy") == 2
    assert proxy.value("strangler_messages_total", route="orders", broker="amazonmq") == 1
    assert (
        proxy.value("strangler_confirmed_total", route="orders", broker="amazonmq", role="mirror")
        == 1
    )
    assert (
        proxy.value("strangler_confirmed_total", route="orders", broker="amazonmq", role="primary")
        == 0
    )
    assert proxy.value("strangler_mirror_failures_total", route="orders") == 1
    assert proxy.value("strangler_unresolved_messages", route="orders") == 0


def test_what_a_closed_session_still_owed_is_no_longer_unresolved(proxy: Proxy) -> None:
    proxy.emit("message_routed", **routed("default", ["legacy"], receipt=True, session="s7"))
    proxy.emit("message_routed", **routed("default", ["legacy"], receipt=True, session="s8"))
    assert proxy.value("strangler_unresolved_messages", route="default") == 2
    proxy.emit(
        "client_disconnected", reason="legacy closed the connection", messages=1, session="s7"
    )
    assert proxy.value("strangler_unresolved_messages", route="default") == 1
    # An outcome for a frame nothing is owed for does not push the gauge below zero.
    proxy.emit(
        "message_confirmed",
        trace_id="t1",
        rule="default",
        broker="legacy",
        role="primary",
        latency_ms=1.0,
        session="s7",
    )
    assert proxy.value("strangler_unresolved_messages", route="default") == 1


def test_dry_run_messages_are_routed_and_counted_on_legacy() -> None:
    proxy = Proxy(dry_run=True)
    try:
        proxy.emit(
            "message_routed",
            **routed("billing", ["legacy"], receipt=False, would_target=["amazonmq"]),
        )
        assert proxy.value("strangler_messages_routed_total", route="billing") == 1
        assert proxy.value("strangler_messages_total", route="billing", broker="legacy") == 1
        assert proxy.value("strangler_dry_run") == 1
    finally:
        proxy.close()


def test_internal_errors_and_protocol_errors_are_counted(proxy: Proxy) -> None:
    proxy.emit("internal_error", reason="KeyError('x')", session="s1", where="on_send")
    proxy.emit("client_protocol_error", reason="bad frame", session="s2")
    assert proxy.value("strangler_internal_errors_total") == 1
    assert proxy.value("strangler_client_protocol_errors_total") == 1


def test_facts_dropped_is_a_counter(proxy: Proxy) -> None:
    proxy.sink.dropped_total = 3
    text = generate_latest(proxy.metrics.registry).decode()
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "strangler_facts_dropped"
    )
    assert family.type == "counter"
    assert [s.value for s in family.samples] == [3]


def test_labels_are_routes_brokers_roles_and_results_only(proxy: Proxy) -> None:
    proxy.emit("message_routed", **routed("orders", ["legacy", "amazonmq"], receipt=True))
    allowed = {"route", "broker", "role", "result", "version", "source", "le"}
    for name, labels in proxy.samples():
        assert {k for k, _ in labels} <= allowed, name
        assert "/queue/orders" not in dict(labels).values()


def test_status_shows_where_messages_were_confirmed_during_an_outage(proxy: Proxy) -> None:
    window = StatusWindow(proxy.ctx, proxy.metrics)
    for i in range(4):
        proxy.emit(
            "message_routed", **routed("billing", ["amazonmq"], receipt=True, trace_id=f"t{i}")
        )
        proxy.emit(
            "message_fell_back",
            trace_id=f"t{i}",
            rule="billing",
            reason="down",
            to="legacy",
            possibly_stored=False,
            receipt=True,
            session="s1",
        )
        proxy.emit(
            "message_confirmed",
            trace_id=f"t{i}",
            rule="billing",
            broker="legacy",
            role="primary",
            latency_ms=1.0,
            session="s1",
        )
    assert proxy.sink.flush(5.0)
    report = window.report()
    billing = next(r for r in report["routes"] if r["route"] == "billing")
    assert billing["total"]["legacy"] == 4
    assert billing["total"]["amazonmq"] == 0
    assert billing["total"]["fallbacks"] == 4
    assert billing["last_1m"]["legacy"] == 4
    assert billing["unresolved"] == 0
    text = render(report)
    line = next(line for line in text.splitlines() if line.startswith("billing"))
    assert line.split()[2:8] == ["4", "/", "4", "0", "/", "0"]


def test_docs_metrics_md_documents_exactly_the_metrics_exported(proxy: Proxy) -> None:
    docs = (Path(__file__).parents[3] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(strangler_[a-z_]+)`", docs, re.MULTILINE))
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in proxy.metrics.registry.collect()
    }
    exported = {name + "_info" if name == "strangler_routes" else name for name in exported}
    assert documented == exported
    labels = set(re.findall(r"^\| `([a-z]+)` \|", docs, re.MULTILINE))
    used = {label for _, pairs in proxy.samples() for label, _ in pairs} - {"le"}
    assert used <= labels
