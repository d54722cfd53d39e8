"""What a valid routes.yaml turns into: defaults, inheritance, paths, version."""

from __future__ import annotations

import hashlib
from pathlib import Path
from textwrap import dedent

from strangler.routes import (
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_TRACE_HEADER,
    BrokerEndpoint,
    Credentials,
    Mode,
    OnFailure,
    Route,
    decide,
    load_routes,
    parse_routes,
)

LEGACY_ONLY = "brokers:\n  legacy:\n    url: stomp://127.0.0.1:61611\n"
BROKERS = LEGACY_ONLY + "  amazonmq:\n    url: stomp+ssl://127.0.0.1:61614\n"


def test_legacy_broker_alone_with_no_routes_is_valid_and_routes_everything_to_legacy() -> None:
    table = parse_routes(LEGACY_ONLY, "r.yaml")
    assert table.routes == ()
    assert not table.needs_amazonmq
    assert list(table.brokers) == ["legacy"]
    decision = decide(table, "/queue/anything", None, "k")
    assert (decision.rule, decision.mode, decision.targets, decision.primary) == (
        "default",
        Mode.LEGACY,
        ("legacy",),
        "legacy",
    )
    assert decision.amazonmq_destination is None
    assert decision.routes_version == table.version


def test_empty_and_null_routes_are_both_valid() -> None:
    assert parse_routes(LEGACY_ONLY + "routes: []\n", "r").routes == ()
    assert parse_routes(LEGACY_ONLY + "routes:\n", "r").routes == ()


def test_amazonmq_broker_is_allowed_when_no_route_needs_it() -> None:
    table = parse_routes(BROKERS + "routes: []\n", "r")
    assert set(table.brokers) == {"legacy", "amazonmq"}
    assert not table.needs_amazonmq


def test_legacy_only_routes_do_not_need_amazonmq() -> None:
    text = LEGACY_ONLY + "routes:\n  - name: pin\n    match: {prefix: /queue/}\n    mode: legacy\n"
    assert not parse_routes(text, "r").needs_amazonmq


def test_defaults_for_optional_fields() -> None:
    table = parse_routes(BROKERS, "r")
    assert table.dry_run is False
    assert table.trace_header == DEFAULT_TRACE_HEADER == "strangler-trace-id"
    legacy = table.brokers["legacy"]
    assert legacy.heartbeat_ms == DEFAULT_HEARTBEAT_MS == 10_000
    assert legacy.ca_file is None
    assert legacy.credentials is None


def test_urls_list_keeps_active_standby_order() -> None:
    text = dedent("""\
        brokers:
          legacy:
            url: stomp://legacy.internal:61613
          amazonmq:
            urls: [stomp+ssl://b-2.example:61614, "stomp+ssl://B-1.example:61614"]
            heartbeat_ms: 0
        """)
    amazonmq = parse_routes(text, "r").brokers["amazonmq"]
    assert amazonmq.endpoints == (
        BrokerEndpoint("stomp+ssl", "b-2.example", 61614),
        BrokerEndpoint("stomp+ssl", "b-1.example", 61614),
    )
    assert amazonmq.heartbeat_ms == 0
    assert all(endpoint.tls for endpoint in amazonmq.endpoints)


def test_broker_endpoint_str_is_a_usable_url_including_ipv6() -> None:
    text = "brokers:\n  legacy:\n    urls: ['stomp://[::1]:61613', stomp://h:1]\n"
    endpoints = parse_routes(text, "r").brokers["legacy"].endpoints
    assert [str(e) for e in endpoints] == ["stomp://[::1]:61613", "stomp://h:1"]
    assert not endpoints[0].tls


def test_relative_paths_resolve_against_the_routes_folder(tmp_path: Path) -> None:
    text = BROKERS + (
        "    ca_file: certs/ca.pem\n    credentials: {file: ../secrets/amazonmq.yaml}\n"
    )
    table = parse_routes(text, str(tmp_path / "conf" / "routes.yaml"))
    amazonmq = table.brokers["amazonmq"]
    assert amazonmq.ca_file == str(tmp_path / "conf" / "certs" / "ca.pem")
    assert amazonmq.credentials == Credentials(file=str(tmp_path / "secrets" / "amazonmq.yaml"))


def test_absolute_ca_file_is_kept_and_not_opened_at_load_time() -> None:
    table = parse_routes(BROKERS + "    ca_file: /does/not/exist.pem\n", "r")
    assert table.brokers["amazonmq"].ca_file == "/does/not/exist.pem"


def test_credential_env_names_are_stored_not_read() -> None:
    text = BROKERS + "    credentials: {username_env: NOT_SET_X, password_env: NOT_SET_Y}\n"
    credentials = parse_routes(text, "r").brokers["amazonmq"].credentials
    assert credentials == Credentials(username_env="NOT_SET_X", password_env="NOT_SET_Y")


def test_route_fields_are_parsed_with_their_line() -> None:
    text = BROKERS + dedent("""\
        routes:
          - name: payments-split
            match: {prefix: /queue/payments.}
            mode: split
            weight: 12.5
            sticky_header: JMSXGroupID
            on_failure: reject
            target_destination: /queue/payments.v2
        """)
    (route,) = parse_routes(text, "r").routes
    assert route == Route(
        name="payments-split",
        match_kind="prefix",
        pattern="/queue/payments.",
        mode=Mode.SPLIT,
        weight=12.5,
        sticky_header="JMSXGroupID",
        on_failure=OnFailure.REJECT,
        target_destination="/queue/payments.v2",
        dry_run=False,
        line=7,
    )


def test_integer_weight_becomes_float() -> None:
    text = BROKERS + (
        "routes:\n  - {name: s, match: {exact: /q}, mode: split, weight: 10, on_failure: legacy}\n"
    )
    (route,) = parse_routes(text, "r").routes
    assert route.weight == 10.0
    assert isinstance(route.weight, float)


def test_route_dry_run_inherits_the_global_default_unless_overridden() -> None:
    text = BROKERS + dedent("""\
        dry_run: true
        routes:
          - {name: inherits, match: {exact: /queue/a}, mode: mirror}
          - name: overrides
            match: {exact: /queue/b}
            mode: cutover
            on_failure: reject
            dry_run: false
        """)
    table = parse_routes(text, "r")
    inherits, overrides = table.routes
    assert (inherits.dry_run, overrides.dry_run) == (True, False)
    assert decide(table, "/queue/a", None, "k").dry_run is True
    assert decide(table, "/queue/b", None, "k").dry_run is False
    # No route matched: the table default applies.
    assert decide(table, "/elsewhere", None, "k").dry_run is True


def test_route_dry_run_true_overrides_global_false() -> None:
    text = BROKERS + (
        "routes:\n  - {name: a, match: {exact: /queue/a}, mode: mirror, dry_run: true}\n"
    )
    table = parse_routes(text, "r")
    assert decide(table, "/queue/a", None, "k").dry_run is True
    assert decide(table, "/z", None, "k").dry_run is False


def test_custom_trace_header_is_kept() -> None:
    assert parse_routes(BROKERS + "trace_header: x-trace\n", "r").trace_header == "x-trace"


def test_version_is_first_12_hex_of_sha256_of_the_exact_bytes() -> None:
    text = BROKERS + "routes: []\n"
    table = parse_routes(text, "r")
    assert table.version == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert len(table.version) == 12
    # A comment-only change is still a new version: it is a different file.
    assert parse_routes(text + "# note\n", "r").version != table.version
    assert parse_routes(text.encode(), "r").version == table.version


def test_load_routes_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_bytes(BROKERS.encode())
    table = load_routes(path)
    assert table.source == str(path)
    assert table.version == hashlib.sha256(BROKERS.encode()).hexdigest()[:12]


def test_utf8_bom_is_accepted() -> None:
    assert parse_routes(b"\xef\xbb\xbf" + BROKERS.encode(), "r").brokers["legacy"]


def test_unreachable_routes_load_but_are_reported_as_warnings() -> None:
    text = BROKERS + dedent("""\
        routes:
          - {name: rollback-all, match: {prefix: /queue/}, mode: legacy}
          - {name: orders, match: {exact: /queue/orders}, mode: mirror}
          - {name: topics, match: {glob: "/topic/*"}, mode: mirror}
          - {name: topics-a, match: {prefix: /topic/a.}, mode: mirror}
        """)
    table = parse_routes(text, "r")
    assert len(table.routes) == 4
    assert len(table.warnings) == 2
    assert table.warnings[0].startswith("routes[1] 'orders' (line 8) can never match")
    assert "routes[0] 'rollback-all'" in table.warnings[0]
    assert table.warnings[1].startswith("routes[3] 'topics-a' (line 10) can never match")
