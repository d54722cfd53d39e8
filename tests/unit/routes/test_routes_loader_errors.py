"""Every way routes.yaml can be wrong is reported with the right line and a field-naming reason.

Each case marks the line the error must point at with a trailing ``# <-`` comment.
"""

from __future__ import annotations

import os
from pathlib import Path
from textwrap import dedent

import pytest
from refusals import assert_refused

from strangler.routes import RoutesError, load_routes, parse_routes
from strangler.routes.loader import MAX_ROUTES_BYTES

BROKERS = """\
brokers:
  legacy:
    url: stomp://127.0.0.1:61611
  amazonmq:
    url: stomp+ssl://127.0.0.1:61614
"""

# (id, yaml text with "# <-" on the expected line, substring the reason must contain)
CASES: list[tuple[str, str, str]] = [
    (
        "unknown_top_level_key",
        BROKERS + "dryrun: true  # <-\n",
        "top level: unknown key 'dryrun' (did you mean 'dry_run'?)",
    ),
    (
        "unknown_broker_key",
        "brokers:\n  legacy:\n    url: stomp://h:1\n    heartbeat: 5  # <-\n",
        "brokers.legacy: unknown key 'heartbeat'",
    ),
    (
        "unknown_broker_name",
        "brokers:\n  legacy:\n    url: stomp://h:1\n  rabbit:  # <-\n    url: stomp://h:2\n",
        "brokers: unknown broker 'rabbit'",
    ),
    (
        "unknown_credentials_key",
        BROKERS + "    credentials:\n      user_env: A  # <-\n",
        "brokers.amazonmq.credentials: unknown key 'user_env'",
    ),
    (
        "unknown_route_key",
        BROKERS
        + dedent("""\
            routes:
              - name: p
                match: {prefix: /queue/p.}
                mode: split
                wieght: 10  # <-
                on_failure: legacy
            """),
        "routes[0]: unknown key 'wieght' (did you mean 'weight'?)",
    ),
    (
        "unknown_match_key",
        BROKERS + "routes:\n  - name: a\n    match: {regex: /q}  # <-\n    mode: mirror\n",
        "routes[0].match: unknown key 'regex'",
    ),
    (
        "bad_mode",
        BROKERS
        + dedent("""\
            routes:
              - name: a
                match: {exact: /queue/a}
                mode: mirror
              - name: b
                match: {exact: /queue/b}
                mode: legacy
              - name: c
                match: {exact: /queue/c}
                mode: mirorr  # <-
            """),
        "routes[2].mode: 'mirorr' is not one of legacy, mirror, split, cutover",
    ),
    (
        "missing_weight_for_split",
        BROKERS
        + dedent("""\
            routes:
              - name: a
                match: {exact: /queue/a}
                mode: mirror
              - name: b  # <-
                match: {exact: /queue/b}
                mode: split
                on_failure: legacy
            """),
        "routes[1].weight: required for mode split",
    ),
    (
        "weight_above_100",
        BROKERS
        + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: split\n"
        + "    weight: 150  # <-\n    on_failure: legacy\n",
        "routes[0].weight: 150 is out of range; must be between 0 and 100",
    ),
    (
        "weight_negative",
        BROKERS
        + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: split\n"
        + "    weight: -0.5  # <-\n    on_failure: legacy\n",
        "routes[0].weight: -0.5 is out of range",
    ),
    (
        "weight_not_a_number",
        BROKERS
        + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: split\n"
        + "    weight: '10%'  # <-\n    on_failure: legacy\n",
        "routes[0].weight: must be a number, got a string",
    ),
    (
        "weight_nan",
        BROKERS
        + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: split\n"
        + "    weight: .nan  # <-\n    on_failure: legacy\n",
        "routes[0].weight: must be a finite number",
    ),
    (
        "sticky_header_on_cutover",
        BROKERS
        + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: cutover\n"
        + "    on_failure: reject\n    sticky_header: JMSXGroupID  # <-\n",
        "routes[0].sticky_header: not allowed for mode cutover",
    ),
    (
        "on_failure_missing_for_cutover",
        BROKERS + "routes:\n  - name: a  # <-\n    match: {exact: /q}\n    mode: cutover\n",
        "routes[0].on_failure: required for mode cutover",
    ),
    (
        "on_failure_missing_for_split",
        BROKERS
        + "routes:\n  - name: a  # <-\n    match: {exact: /q}\n    mode: split\n    weight: 5\n",
        "routes[0].on_failure: required for mode split",
    ),
    (
        "on_failure_bad_value",
        BROKERS
        + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: cutover\n"
        + "    on_failure: retry  # <-\n",
        "routes[0].on_failure: 'retry' is not one of legacy, reject",
    ),
    (
        "duplicate_route_names",
        BROKERS
        + dedent("""\
            routes:
              - name: orders
                match: {exact: /queue/a}
                mode: mirror
              - name: orders  # <-
                match: {exact: /queue/b}
                mode: mirror
            """),
        "routes[1].name: duplicate route name 'orders' (first at line 7)",
    ),
    (
        "route_name_with_space",
        BROKERS + "routes:\n  - name: my route  # <-\n    match: {exact: /q}\n    mode: mirror\n",
        "routes[0].name: 'my route' may only contain",
    ),
    (
        "route_name_default_is_reserved",
        BROKERS + "routes:\n  - name: default  # <-\n    match: {exact: /q}\n    mode: mirror\n",
        "routes[0].name: 'default' is reserved",
    ),
    (
        "route_name_missing",
        BROKERS + "routes:\n  - match: {exact: /q}  # <-\n    mode: mirror\n",
        "routes[0].name: required",
    ),
    (
        "route_name_not_a_string",
        BROKERS + "routes:\n  - name: 42  # <-\n    match: {exact: /q}\n    mode: mirror\n",
        "routes[0].name: must be a string, got a number (42); quote it",
    ),
    (
        "match_missing",
        BROKERS + "routes:\n  - name: a  # <-\n    mode: mirror\n",
        "routes[0].match: required",
    ),
    (
        "match_with_two_kinds",
        BROKERS
        + "routes:\n  - name: a\n    match:\n      exact: /q\n      prefix: /q  # <-\n"
        + "    mode: mirror\n",
        "routes[0].match: has both 'exact' and 'prefix'",
    ),
    (
        "match_with_no_kind",
        BROKERS + "routes:\n  - name: a\n    match: {}  # <-\n    mode: mirror\n",
        "routes[0].match: needs exactly one of exact, glob, prefix",
    ),
    (
        "match_as_plain_string",
        BROKERS + "routes:\n  - name: a\n    match: /queue/a  # <-\n    mode: mirror\n",
        "routes[0].match: must be a mapping like {exact: /queue/x}, got a string",
    ),
    (
        "empty_pattern",
        BROKERS + "routes:\n  - name: a\n    match: {prefix: ''}  # <-\n    mode: mirror\n",
        "routes[0].match.prefix: must not be empty",
    ),
    (
        "routes_not_a_list",
        BROKERS + "routes:\n  name: a  # <-\n",
        "routes: must be a list, got a mapping",
    ),
    (
        "duplicate_yaml_key_in_route",
        BROKERS
        + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: mirror\n"
        + "    mode: legacy  # <-\n",
        "routes[0]: duplicate key 'mode' (first at line 9)",
    ),
    (
        "duplicate_yaml_key_at_top_level",
        BROKERS + "dry_run: true\ndry_run: false  # <-\n",
        "top level: duplicate key 'dry_run' (first at line 6)",
    ),
    (
        "duplicate_broker",
        BROKERS + "  legacy:  # <-\n    url: stomp://h:1\n",
        "brokers: duplicate key 'legacy'",
    ),
    (
        "bad_url_scheme",
        "brokers:\n  legacy:\n    url: tcp://127.0.0.1:61616  # <-\n",
        "brokers.legacy.url: scheme 'tcp' is not supported; use stomp:// or stomp+ssl://",
    ),
    (
        "url_without_scheme",
        "brokers:\n  legacy:\n    url: 127.0.0.1:61613  # <-\n",
        "brokers.legacy.url: '127.0.0.1:61613' is not a URL",
    ),
    (
        "url_missing_port",
        "brokers:\n  legacy:\n    url: stomp://127.0.0.1  # <-\n",
        "brokers.legacy.url: missing port",
    ),
    (
        "url_bad_port",
        "brokers:\n  legacy:\n    url: stomp://127.0.0.1:99999  # <-\n",
        "brokers.legacy.url: 'stomp://127.0.0.1:99999' is not a valid URL",
    ),
    (
        "url_missing_host",
        "brokers:\n  legacy:\n    url: stomp://:61613  # <-\n",
        "brokers.legacy.url: missing host",
    ),
    (
        "url_with_path",
        "brokers:\n  legacy:\n    url: stomp://h:61613/vhost  # <-\n",
        "brokers.legacy.url: 'stomp://h:61613/vhost' must be just scheme://host:port",
    ),
    (
        "activemq_failover_url",
        "brokers:\n  legacy:\n    url: failover:(stomp://a:1,stomp://b:1)  # <-\n",
        "brokers.legacy.url: ActiveMQ failover: URLs are not supported",
    ),
    (
        "url_in_urls_list_is_checked",
        "brokers:\n  legacy:\n    urls:\n      - stomp://a:1\n      - stomp://b  # <-\n",
        "brokers.legacy.urls[1]: missing port",
    ),
    (
        "duplicate_url_in_urls",
        "brokers:\n  legacy:\n    urls: [stomp://a:1, stomp://a:1]  # <-\n",
        "brokers.legacy.urls[1]: duplicate of brokers.legacy.urls[0]",
    ),
    (
        "empty_urls",
        "brokers:\n  legacy:\n    urls: []  # <-\n",
        "brokers.legacy.urls: must list at least one URL",
    ),
    (
        "both_url_and_urls",
        "brokers:\n  legacy:\n    url: stomp://a:1\n    urls: [stomp://b:1]  # <-\n",
        "brokers.legacy: has both 'url' and 'urls'",
    ),
    (
        "neither_url_nor_urls",
        "brokers:\n  legacy:  # <-\n    heartbeat_ms: 5000\n",
        "brokers.legacy: needs 'url'",
    ),
    (
        "ca_file_without_tls",
        "brokers:\n  legacy:\n    url: stomp://a:1\n    ca_file: ca.pem  # <-\n",
        "brokers.legacy.ca_file: only used with stomp+ssl:// URLs",
    ),
    (
        "heartbeat_not_an_integer",
        "brokers:\n  legacy:\n    url: stomp://a:1\n    heartbeat_ms: 1.5  # <-\n",
        "brokers.legacy.heartbeat_ms: must be an integer",
    ),
    (
        "heartbeat_negative",
        "brokers:\n  legacy:\n    url: stomp://a:1\n    heartbeat_ms: -1  # <-\n",
        "brokers.legacy.heartbeat_ms: -1 is out of range",
    ),
    (
        "credentials_env_and_file_together",
        BROKERS
        + "    credentials:  # <-\n      file: s.yaml\n"
        + "      username_env: U\n      password_env: P\n",
        "brokers.amazonmq.credentials: use either 'file' or 'username_env' + 'password_env'",
    ),
    (
        "credentials_only_username_env",
        BROKERS + "    credentials:  # <-\n      username_env: U\n",
        "brokers.amazonmq.credentials.password_env: required together with username_env",
    ),
    (
        "credentials_empty",
        BROKERS + "    credentials: {}  # <-\n",
        "brokers.amazonmq.credentials: needs 'username_env' and 'password_env', or 'file'",
    ),
    (
        "credentials_env_name_invalid",
        BROKERS
        + "    credentials:\n      username_env: U\n      password_env: 'p@ss w0rd'  # <-\n",
        "brokers.amazonmq.credentials.password_env: must be the NAME of an environment variable",
    ),
    (
        "missing_legacy_broker",
        "brokers:  # <-\n  amazonmq:\n    url: stomp+ssl://h:1\n",
        "brokers.legacy: required",
    ),
    (
        "missing_brokers",
        "dry_run: false  # <-\nroutes: []\n",
        "brokers: required",
    ),
    (
        "amazonmq_needed_but_missing",
        dedent("""\
            brokers:
              legacy:
                url: stomp://127.0.0.1:61611
            routes:
              - name: a
                match: {exact: /queue/a}
                mode: legacy
              - name: b
                match: {glob: /queue/b.*}
                mode: mirror  # <-
            """),
        "routes[1].mode: mode mirror sends to Amazon MQ, but brokers.amazonmq is not configured",
    ),
    (
        "yaml_syntax_error",
        BROKERS + "routes:\n  - name: a\n   match: {exact: /q}  # <-\n",
        "YAML syntax error",
    ),
    (
        "yaml_unclosed_flow_mapping",
        BROKERS + "routes:\n  - name: a\n    match: {exact: /q\n    mode: mirror  # <-\n",
        "YAML syntax error",
    ),
    (
        "yaml_tab_indentation",
        BROKERS + "routes:\n\t- name: a  # <-\n",
        "YAML syntax error: a tab character: YAML indents with spaces only",
    ),
    (
        "yaml_second_document",
        BROKERS + "---  # <-\nroutes: []\n",
        "YAML syntax error: found another document",
    ),
    (
        "top_level_is_a_list",
        "- brokers  # <-\n",
        "top level: must be a mapping, got a list",
    ),
    (
        "unsafe_python_tag",
        "brokers: !!python/object:os.system {}  # <-\n",
        "brokers: YAML tag '!!python/object:os.system' is refused: routes.yaml is read with "
        "YAML's safe loader",
    ),
    (
        "unsafe_python_tag_on_scalar",
        "brokers:\n  legacy:\n    url: !!python/name:os.system  # <-\n",
        "brokers.legacy.url: YAML tag '!!python/name:os.system' is refused",
    ),
    (
        "unknown_scalar_tag",
        "brokers:\n  legacy:\n    url: !env LEGACY_URL  # <-\n",
        "brokers.legacy.url: YAML tag '!env' is refused",
    ),
    (
        "python_tag_on_a_broker",
        "brokers:\n  legacy: !!python/object/apply:os.system ['echo hi']  # <-\n",
        "brokers.legacy: YAML tag '!!python/object/apply:os.system' is refused",
    ),
    (
        "key_indented_more_than_its_siblings",
        BROKERS + "routes:\n  - name: a\n    match: {exact: /q}\n     mode: legacy  # <-\n",
        "YAML syntax error: this line is indented more than the keys before it (the block "
        "that starts at line 7); the keys of one mapping must start in the same column",
    ),
    (
        "tab_in_a_mapping",
        "brokers:\n  legacy:\n\turl: stomp://h:1  # <-\n",
        "YAML syntax error: a tab character: YAML indents with spaces only; replace the tab",
    ),
    (
        "inline_password",
        "brokers:\n  legacy:\n    url: stomp://h:1\n    credentials: {password: hunter2}  # <-\n",
        "brokers.legacy.credentials: 'password': secrets never go in this file: name "
        "environment variables (username_env, password_env), a file (file: PATH) or a "
        "Secrets Manager secret (secret_id: NAME)",
    ),
    (
        "inline_passcode_on_a_broker",
        "brokers:\n  legacy:\n    url: stomp://h:1\n    passcode: hunter2  # <-\n",
        "brokers.legacy: 'passcode': secrets never go in this file",
    ),
    (
        "yaml_merge_key",
        "brokers:\n  legacy:\n    <<: {url: stomp://h:1}  # <-\n",
        "brokers.legacy: YAML merge keys ('<<') are not supported",
    ),
    (
        "dry_run_not_boolean",
        BROKERS + "dry_run: 'yes'  # <-\n",
        "dry_run: must be true or false, got a string",
    ),
    (
        "trace_header_reserved",
        BROKERS + "trace_header: receipt  # <-\n",
        "trace_header: 'receipt' is a STOMP header the proxy relies on",
    ),
    (
        "trace_header_with_colon",
        BROKERS + "trace_header: 'a:b'  # <-\n",
        "trace_header: 'a:b' is not a valid STOMP header name",
    ),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_routes_report_line_and_field_specific_reason(text: str, reason: str) -> None:
    assert_refused(text, reason)


def test_error_reports_column_of_offending_node() -> None:
    with pytest.raises(RoutesError) as caught:
        parse_routes(BROKERS + "routes:\n  - {name: a, match: {exact: /q}, mode: bogus}\n", "r")
    assert (caught.value.line, caught.value.column) == (7, 41)


def test_embedded_url_password_is_rejected_without_echoing_it() -> None:
    text = "brokers:\n  legacy:\n    url: stomp://admin:s3cr3t@h:61613\n"
    with pytest.raises(RoutesError) as caught:
        parse_routes(text, "r.yaml")
    assert caught.value.line == 3
    assert "must not embed a username or password" in caught.value.reason
    assert "s3cr3t" not in str(caught.value)


def test_invalid_env_name_is_not_echoed_because_it_may_be_the_secret() -> None:
    text = BROKERS + "    credentials: {username_env: U, password_env: 'hunter2!'}\n"
    with pytest.raises(RoutesError) as caught:
        parse_routes(text, "r.yaml")
    assert "hunter2" not in str(caught.value)


def test_empty_file_is_an_error_without_line() -> None:
    with pytest.raises(RoutesError) as caught:
        parse_routes("# only a comment\n", "routes.yaml")
    assert caught.value.line is None
    assert str(caught.value) == f"routes.yaml: {caught.value.reason}"
    assert "empty" in caught.value.reason


def test_non_utf8_bytes_are_an_error_without_line() -> None:
    with pytest.raises(RoutesError) as caught:
        parse_routes(b"brokers: \xff\n", "routes.yaml")
    assert caught.value.line is None
    assert "UTF-8" in caught.value.reason


def test_unreadable_file_is_a_routes_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RoutesError) as caught:
        load_routes(missing)
    assert caught.value.file == str(missing)
    assert caught.value.line is None
    assert "cannot read routes file" in caught.value.reason


@pytest.mark.timeout(10)  # before: open() of a FIFO waited for a writer forever
def test_a_fifo_dev_zero_or_huge_file_in_place_of_routes_is_refused_unread(tmp_path: Path) -> None:
    fifo, zero, huge = tmp_path / "fifo.yaml", tmp_path / "zero.yaml", tmp_path / "huge.yaml"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    with open(huge, "wb") as f:
        f.truncate(MAX_ROUTES_BYTES + 1)
    reasons = []
    for path in (fifo, zero, huge):
        with pytest.raises(RoutesError) as caught:
            load_routes(path)
        assert caught.value.file == str(path)
        reasons.append(caught.value.reason)
    assert reasons == [
        "cannot read routes file: not a regular file (a FIFO)",
        "cannot read routes file: not a regular file (a character device)",
        f"cannot read routes file: larger than {MAX_ROUTES_BYTES} bytes "
        f"({MAX_ROUTES_BYTES + 1} bytes)",
    ]


def test_load_routes_errors_carry_the_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(BROKERS + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: nope\n")
    with pytest.raises(RoutesError) as caught:
        load_routes(path)
    assert str(caught.value).startswith(f"{path}:9: routes[0].mode:")


def test_text_with_lone_surrogates_is_an_encoding_error_not_a_crash() -> None:
    with pytest.raises(RoutesError) as caught:
        parse_routes("brokers: \udcff\n", "routes.yaml")
    assert "UTF-8" in caught.value.reason


@pytest.mark.parametrize(
    ("mode", "key", "value"),
    [
        ("mirror", "weight", "5"),
        ("mirror", "on_failure", "legacy"),
        ("legacy", "on_failure", "reject"),
        ("legacy", "target_destination", "/q2"),
        ("legacy", "weight", "10"),
        ("legacy", "sticky_header", "JMSXGroupID"),
    ],
)
def test_rollback_modes_ignore_other_modes_keys_with_a_warning_naming_the_line(
    mode: str, key: str, value: str
) -> None:
    # Rolling back is one edited line: `mode: cutover` -> `mode: legacy` keeps loading.
    text = BROKERS + f"routes:\n  - name: a\n    match: {{exact: /q}}\n    mode: {mode}\n"
    text += f"    {key}: {value}\n"
    table = parse_routes(text, "routes.yaml")
    line = text.count("\n")
    assert any(
        w.startswith(f"routes.yaml:{line}: routes[0].{key}: ignored for mode {mode}")
        for w in table.warnings
    ), table.warnings
    route = table.routes[0]
    assert route.weight is None and route.on_failure is None
    assert route.target_destination is None and route.sticky_header is None


def test_split_and_cutover_still_refuse_keys_that_do_not_apply() -> None:
    text = BROKERS + "routes:\n  - name: a\n    match: {exact: /q}\n    mode: cutover\n"
    text += "    on_failure: legacy\n    weight: 5\n"
    with pytest.raises(RoutesError, match=r"routes\[0\]\.weight: not allowed for mode cutover"):
        parse_routes(text, "routes.yaml")


@pytest.mark.parametrize(
    ("match", "warned"),
    [
        ("{exact: orders}", True),
        ("{prefix: orders.}", True),
        ("{glob: 'orders.*'}", True),
        ("{exact: /queue/orders}", False),
        ("{glob: '*.orders'}", False),
    ],
)
def test_a_destination_without_queue_or_topic_is_valid_with_a_warning(
    match: str, warned: bool
) -> None:
    table = parse_routes(
        BROKERS + f"routes:\n  - {{name: o, match: {match}, mode: legacy}}\n", "routes.yaml"
    )
    warnings = [w for w in table.warnings if "does not start with /queue/ or /topic/" in w]
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].startswith("routes.yaml:7: routes[0].match.")
