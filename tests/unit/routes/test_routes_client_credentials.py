"""``brokers.amazonmq.client_credentials``: legacy login -> that producer's Amazon MQ login.

Valid files turn into a ``ClientCredentials`` that picks each session's credentials; every
way the block can be wrong is reported with file, line (the ``# <-`` line) and reason.
"""

from __future__ import annotations

import re
from pathlib import Path
from textwrap import dedent, indent

import pytest
from refusals import assert_refused, marked_line

from strangler.admin.server import routes_document
from strangler.routes import (
    ClientCredentials,
    Credentials,
    RoutesError,
    Unmapped,
    parse_routes,
    session_login,
)

ROOT = Path(__file__).resolve().parents[3]

BROKERS = """\
brokers:
  legacy:
    url: stomp://127.0.0.1:61611
  amazonmq:
    url: stomp+ssl://127.0.0.1:61614
    credentials: {username_env: AMQ_USER, password_env: AMQ_PASSWORD}
"""

MAPPED = BROKERS + indent(
    dedent("""\
        client_credentials:
          unmapped: refuse
          logins:
            orders-svc: {secret_id: amazonmq/orders-svc}
            billing: {username_env: AMQ_BILLING_USER, password_env: AMQ_BILLING_PASSWORD}
            "CN=reports,O=acme": {file: secrets/reports.yaml}
        """),
    "    ",
)


def _load(text: str, source: str = "/etc/strangler/routes.yaml") -> ClientCredentials:
    mapping = parse_routes(text, source).brokers["amazonmq"].client_credentials
    assert mapping is not None
    return mapping


def test_logins_map_in_file_order_with_every_credentials_form() -> None:
    mapping = _load(MAPPED)
    assert mapping.unmapped is Unmapped.REFUSE
    assert mapping.logins == (
        ("orders-svc", Credentials(secret_id="amazonmq/orders-svc")),
        (
            "billing",
            Credentials(username_env="AMQ_BILLING_USER", password_env="AMQ_BILLING_PASSWORD"),
        ),
        # Relative paths resolve against the routes file's folder, like `credentials`.
        ("CN=reports,O=acme", Credentials(file="/etc/strangler/secrets/reports.yaml")),
    )


def test_no_block_means_every_session_uses_the_shared_credentials() -> None:
    config = parse_routes(BROKERS, "r.yaml").brokers["amazonmq"]
    assert config.client_credentials is None
    login = config.login_for("anyone")
    assert (login.kind, login.credentials, login.refused) == ("shared", config.credentials, None)


def test_a_mapped_secret_id_inherits_the_brokers_region() -> None:
    text = dedent("""\
        brokers:
          legacy: {url: stomp://h:1}
          amazonmq:
            broker_name: orders
            region: eu-central-1
            client_credentials:
              unmapped: shared
              logins:
                a: {secret_id: amq/a}
                b: {secret_id: amq/b, region: eu-west-1}
        """)
    mapping = _load(text)
    assert mapping.lookup("a") == Credentials(secret_id="amq/a", region="eu-central-1")
    assert mapping.lookup("b") == Credentials(secret_id="amq/b", region="eu-west-1")


@pytest.mark.parametrize(
    ("unmapped", "client_login", "kind", "credentials"),
    [
        ("refuse", "orders-svc", "mapped", Credentials(secret_id="amazonmq/orders-svc")),
        ("shared", "orders-svc", "mapped", Credentials(secret_id="amazonmq/orders-svc")),
        ("shared", "stranger", "shared", Credentials("AMQ_USER", "AMQ_PASSWORD")),
        ("shared", None, "shared", Credentials("AMQ_USER", "AMQ_PASSWORD")),
        ("refuse", "stranger", "refused", None),
        ("refuse", None, "refused", None),
        # Logins compare exactly, as ActiveMQ compares them.
        ("refuse", "Orders-Svc", "refused", None),
    ],
)
def test_login_for_picks_mapped_shared_or_refused(
    unmapped: str, client_login: str | None, kind: str, credentials: Credentials | None
) -> None:
    config = parse_routes(MAPPED.replace("refuse", unmapped), "/r.yaml").brokers["amazonmq"]
    login = config.login_for(client_login)
    assert (login.kind, login.credentials, login.client_login) == (kind, credentials, client_login)
    assert (login.refused is not None) == (kind == "refused")


def test_refusal_and_failure_reasons_name_the_login() -> None:
    mapping = _load(MAPPED)
    refused = session_login(None, mapping, "stranger")
    assert refused.refused == (
        "login 'stranger' has no Amazon MQ credentials (client_credentials.unmapped: refuse)"
    )
    assert "without login" in (session_login(None, mapping, None).refused or "")
    assert session_login(None, mapping, "billing").whose == (
        " (credentials mapped for legacy login 'billing')"
    )
    assert session_login(None, mapping, "stranger").whose == ""


def test_fact_fields_name_the_source_never_a_value() -> None:
    mapping = _load(MAPPED)
    shared = Credentials(username_env="AMQ_USER", password_env="AMQ_PASSWORD")
    assert session_login(shared, mapping, "orders-svc").fact_fields() == {
        "amazonmq_login": "mapped",
        "amazonmq_credentials": "secret amazonmq/orders-svc",
    }
    assert session_login(shared, mapping, "billing").fact_fields() == {
        "amazonmq_login": "mapped",
        "amazonmq_credentials": "env AMQ_BILLING_USER/AMQ_BILLING_PASSWORD",
    }
    assert session_login(shared, mapping, "CN=reports,O=acme").fact_fields() == {
        "amazonmq_login": "mapped",
        "amazonmq_credentials": "file /etc/strangler/secrets/reports.yaml",
    }
    assert session_login(shared, None, "x").fact_fields() == {
        "amazonmq_login": "shared",
        "amazonmq_credentials": "env AMQ_USER/AMQ_PASSWORD",
    }
    assert session_login(None, mapping, "x").fact_fields() == {"amazonmq_login": "refused"}


def test_admin_routes_document_lists_logins_and_sources_only(tmp_path: Path) -> None:
    document = routes_document(parse_routes(MAPPED, str(tmp_path / "routes.yaml")))
    assert document["brokers"]["amazonmq"]["client_credentials"] == {
        "unmapped": "refuse",
        "logins": {
            "orders-svc": {"secret_id": "amazonmq/orders-svc"},
            "billing": {"username_env": "AMQ_BILLING_USER", "password_env": "AMQ_BILLING_PASSWORD"},
            "CN=reports,O=acme": {"file": str(tmp_path / "secrets/reports.yaml")},
        },
    }
    assert document["brokers"]["legacy"]["client_credentials"] is None


def test_the_commented_example_in_routes_yaml_is_valid() -> None:
    text = (ROOT / "routes.yaml").read_text()
    found = re.search(r"^    # client_credentials:\n(?:    #   .*\n)+", text, re.M)
    assert found is not None
    block = found.group(0)
    mapping = _load(text.replace(block, block.replace("    # ", "    ")))
    assert mapping.unmapped is Unmapped.SHARED
    assert [login for login, _ in mapping.logins] == ["producer-a", "producer-b"]


def test_the_documented_example_is_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "routes.md").read_text(), re.S)
    [block] = [b for b in blocks if "client_credentials" in b]
    mapping = _load("brokers:\n  legacy: {url: stomp://h:1}\n" + block)
    assert [login for login, _ in mapping.logins] == ["orders-svc", "billing", "reports"]


def _block(body: str) -> str:
    """``body`` (the keys under ``client_credentials:``) appended to the amazonmq broker."""
    return BROKERS + "    client_credentials:\n" + indent(dedent(body), "      ")


# (id, yaml text with "# <-" on the expected line, substring the reason must contain)
CASES: list[tuple[str, str, str]] = [
    (
        "duplicate_login",
        _block("""\
            unmapped: shared
            logins:
              orders-svc: {secret_id: a}
              billing: {secret_id: b}
              orders-svc: {secret_id: c}  # <-
            """),
        "brokers.amazonmq.client_credentials.logins: duplicate login 'orders-svc' "
        "(first at line 10)",
    ),
    (
        "unknown_key_in_block",
        _block("""\
            unmaped: shared  # <-
            logins: {a: {secret_id: a}}
            """),
        "brokers.amazonmq.client_credentials: unknown key 'unmaped' (did you mean 'unmapped'?)",
    ),
    (
        "unknown_key_in_entry",
        _block("""\
            unmapped: shared
            logins:
              orders-svc:
                user_env: A  # <-
                password_env: B
            """),
        "brokers.amazonmq.client_credentials.logins['orders-svc']: unknown key 'user_env' "
        "(did you mean 'username_env'?)",
    ),
    (
        "entry_without_a_source",
        _block("""\
            unmapped: shared
            logins:
              orders-svc: {}  # <-
            """),
        "brokers.amazonmq.client_credentials.logins['orders-svc']: needs 'username_env' and "
        "'password_env', or 'file', or 'secret_id'",
    ),
    (
        "entry_with_half_an_env_pair",
        _block("""\
            unmapped: shared
            logins:
              orders-svc: {username_env: A}  # <-
            """),
        "logins['orders-svc'].password_env: required together with username_env",
    ),
    (
        "entry_with_two_sources",
        _block("""\
            unmapped: shared
            logins:
              orders-svc: {secret_id: a, file: b.yaml}  # <-
            """),
        "logins['orders-svc']: use one of 'secret_id', 'file' or 'username_env' + "
        "'password_env', not 'secret_id' and 'file'",
    ),
    (
        "entry_that_is_the_secret_itself",
        _block("""\
            unmapped: shared
            logins:
              orders-svc: {username_env: AMQ_USER, password_env: "hunter2!"}  # <-
            """),
        "logins['orders-svc'].password_env: must be the NAME of an environment variable",
    ),
    (
        "entry_null",
        _block("""\
            unmapped: shared
            logins:
              orders-svc:  # <-
            """),
        "logins['orders-svc']: must be a mapping, got null",
    ),
    (
        "missing_unmapped",
        BROKERS + "    client_credentials:  # <-\n      logins: {a: {secret_id: a}}\n",
        "brokers.amazonmq.client_credentials.unmapped: required (what a login not listed gets",
    ),
    (
        "bad_unmapped",
        _block("""\
            unmapped: anonymous  # <-
            logins: {a: {secret_id: a}}
            """),
        "brokers.amazonmq.client_credentials.unmapped: 'anonymous' is not one of shared, refuse",
    ),
    (
        "missing_logins",
        BROKERS + "    client_credentials:  # <-\n      unmapped: refuse\n",
        "brokers.amazonmq.client_credentials.logins: required",
    ),
    (
        "empty_logins",
        _block("""\
            unmapped: refuse
            logins: {}  # <-
            """),
        "brokers.amazonmq.client_credentials.logins: must map at least one login",
    ),
    (
        "logins_as_a_list",
        _block("""\
            unmapped: refuse
            logins:
              - orders-svc  # <-
            """),
        "logins: must be a mapping of legacy login to credentials, got a list",
    ),
    (
        "numeric_login",
        _block("""\
            unmapped: refuse
            logins:
              1234: {secret_id: a}  # <-
            """),
        "logins: a login must be a string, got a number (1234); quote it",
    ),
    (
        "empty_login",
        _block("""\
            unmapped: refuse
            logins:
              "": {secret_id: a}  # <-
            """),
        "logins: a login must not be empty",
    ),
    (
        "merge_key_in_logins",
        _block("""\
            unmapped: refuse
            logins:
              <<: {a: {secret_id: a}}  # <-
            """),
        "logins: YAML merge keys ('<<') are not supported",
    ),
    (
        "on_the_legacy_broker",
        "brokers:\n  legacy:\n    url: stomp://h:1\n"
        "    client_credentials: {unmapped: refuse, logins: {a: {secret_id: a}}}  # <-\n",
        "brokers.legacy.client_credentials: only for brokers.amazonmq; "
        "producers log in to legacy with their own login",
    ),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_client_credentials_report_file_line_and_reason(text: str, reason: str) -> None:
    error = assert_refused(text, reason)
    assert "hunter2" not in str(error)


def test_unsafe_yaml_tags_are_refused_in_the_mapping() -> None:
    text = _block("""\
        unmapped: refuse
        logins:
          !!python/object:os.system a: {secret_id: a}  # <-
        """)
    with pytest.raises(RoutesError) as caught:
        parse_routes(text, "r.yaml")
    assert caught.value.line == marked_line(text)
    assert "python/object" in caught.value.reason
