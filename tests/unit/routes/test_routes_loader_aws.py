"""routes.yaml forms that name an Amazon MQ broker and a Secrets Manager secret."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from refusals import assert_refused

from strangler.routes import (
    AMAZONMQ,
    AmazonMQRef,
    BrokerConfig,
    Credentials,
    RoutesError,
    parse_routes,
    secret_arn_region,
)

LEGACY = "brokers:\n  legacy:\n    url: stomp://127.0.0.1:61611\n"
AMQ = LEGACY + "  amazonmq:\n"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/strangler-AbCdEf"
BROKER_ID = "b-1234abcd-56ef-7890-abcd-1234567890ab"


def amazonmq(text: str) -> BrokerConfig:
    return parse_routes(AMQ + text, "r.yaml").brokers[AMAZONMQ]


def test_broker_id_with_region_is_a_reference_without_endpoints() -> None:
    config = amazonmq(f"    broker_id: {BROKER_ID}\n    region: eu-west-1\n")
    assert config.aws == AmazonMQRef(broker_id=BROKER_ID, region="eu-west-1")
    assert config.endpoints == ()
    assert config.needs_discovery
    assert str(config.aws) == f"Amazon MQ broker {BROKER_ID} in eu-west-1"


def test_broker_name_without_region_uses_the_sdk_default() -> None:
    config = amazonmq("    broker_name: orders-prod\n")
    assert config.aws == AmazonMQRef(broker_name="orders-prod")
    assert str(config.aws) == "Amazon MQ broker named 'orders-prod' in the default AWS region"


def test_static_urls_have_no_aws_reference() -> None:
    config = amazonmq("    url: stomp+ssl://h:61614\n")
    assert config.aws is None
    assert not config.needs_discovery


def test_discovered_broker_accepts_ca_file_since_it_is_always_tls() -> None:
    config = amazonmq("    broker_name: orders\n    ca_file: /etc/ssl/amazon.pem\n")
    assert config.ca_file == "/etc/ssl/amazon.pem"


def test_routes_to_amazon_mq_work_with_a_discovered_broker() -> None:
    text = (
        AMQ + "    broker_name: orders\nroutes:\n  - {name: o, match: {exact: /q}, mode: mirror}\n"
    )
    assert parse_routes(text, "r").needs_amazonmq


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ("{secret_id: prod/strangler}", Credentials(secret_id="prod/strangler")),
        (
            "{secret_id: prod/strangler, region: eu-central-1}",
            Credentials(secret_id="prod/strangler", region="eu-central-1"),
        ),
        (f"{{secret_id: '{ARN}'}}", Credentials(secret_id=ARN, region="us-east-1")),
        (
            f"{{secret_id: '{ARN}', region: us-east-1}}",
            Credentials(secret_id=ARN, region="us-east-1"),
        ),
    ],
    ids=["name", "name-with-region", "arn", "arn-with-same-region"],
)
def test_secret_credentials_forms(credentials: str, expected: Credentials) -> None:
    config = amazonmq(f"    url: stomp+ssl://h:61614\n    credentials: {credentials}\n")
    assert config.credentials == expected


def test_secret_region_defaults_to_the_discovered_brokers_region() -> None:
    config = amazonmq(
        "    broker_name: orders\n    region: eu-west-1\n"
        "    credentials: {secret_id: prod/strangler}\n"
    )
    assert config.credentials == Credentials(secret_id="prod/strangler", region="eu-west-1")


def test_secret_arn_region_wins_over_the_brokers_region() -> None:
    config = amazonmq(
        f"    broker_name: orders\n    region: eu-west-1\n    credentials: {{secret_id: '{ARN}'}}\n"
    )
    assert config.credentials == Credentials(secret_id=ARN, region="us-east-1")


@pytest.mark.parametrize(
    ("secret_id", "region"),
    [
        (ARN, "us-east-1"),
        ("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x", "us-gov-west-1"),
        ("prod/strangler", None),
        ("arn:aws:mq:us-east-1:123456789012:broker:x:b-1", None),
    ],
)
def test_secret_arn_region(secret_id: str, region: str | None) -> None:
    assert secret_arn_region(secret_id) == region


# (id, text with "# <-" on the expected line, substring of the reason)
CASES: list[tuple[str, str, str]] = [
    (
        "url_and_broker_id",
        AMQ + f"    url: stomp+ssl://h:61614\n    broker_id: {BROKER_ID}  # <-\n",
        "brokers.amazonmq: has both 'url' and 'broker_id'; "
        "use exactly one of url, urls, broker_id, broker_name",
    ),
    (
        "broker_name_and_urls",
        AMQ + "    broker_name: orders\n    urls: [stomp+ssl://h:61614]  # <-\n",
        "brokers.amazonmq: has both 'broker_name' and 'urls'",
    ),
    (
        "broker_id_and_broker_name",
        AMQ + f"    broker_id: {BROKER_ID}\n    broker_name: orders  # <-\n",
        "brokers.amazonmq: has both 'broker_id' and 'broker_name'",
    ),
    (
        "amazonmq_with_nothing",
        AMQ.removesuffix("  amazonmq:\n") + "  amazonmq:  # <-\n    region: eu-west-1\n",
        "brokers.amazonmq: needs 'url' (or 'urls' for an active/standby list, "
        "or 'broker_id'/'broker_name' to look it up in AWS)",
    ),
    (
        "legacy_broker_id",
        f"brokers:\n  legacy:\n    broker_id: {BROKER_ID}  # <-\n",
        "brokers.legacy.broker_id: only brokers.amazonmq can be looked up in AWS; "
        "the legacy broker needs 'url' or 'urls'",
    ),
    (
        "legacy_region",
        "brokers:\n  legacy:\n    url: stomp://h:1\n    region: eu-west-1  # <-\n",
        "brokers.legacy.region: only brokers.amazonmq can be looked up in AWS",
    ),
    (
        "region_with_url",
        AMQ + "    url: stomp+ssl://h:61614\n    region: eu-west-1  # <-\n",
        "brokers.amazonmq.region: only used with broker_id or broker_name",
    ),
    (
        "bad_region",
        AMQ + "    broker_name: orders\n    region: EU_WEST_1  # <-\n",
        "brokers.amazonmq.region: 'EU_WEST_1' is not an AWS region name like eu-west-1",
    ),
    (
        "region_not_a_string",
        AMQ + "    broker_name: orders\n    region: 1  # <-\n",
        "brokers.amazonmq.region: must be a string",
    ),
    (
        "broker_id_is_an_arn",
        AMQ + "    broker_id: 'arn:aws:mq:eu-west-1:123456789012:broker:orders:b-1'  # <-\n",
        "brokers.amazonmq.broker_id: 'arn:aws:mq:eu-west-1:123456789012:broker:orders:b-1' "
        "is not an Amazon MQ broker id (b-1234abcd-...; the last part of the broker's ARN)",
    ),
    (
        "broker_id_is_a_name",
        AMQ + "    broker_id: orders  # <-\n",
        "to look a broker up by name use 'broker_name'",
    ),
    (
        "broker_name_with_space",
        AMQ + "    broker_name: orders prod  # <-\n",
        "brokers.amazonmq.broker_name: 'orders prod' is not an Amazon MQ broker name",
    ),
    (
        "broker_name_too_long",
        AMQ + "    broker_name: " + "x" * 51 + "  # <-\n",
        "is not an Amazon MQ broker name (1-50 letters",
    ),
    (
        "secret_and_file",
        AMQ
        + "    broker_name: o\n    credentials:\n      secret_id: s\n      file: f.yaml  # <-\n",
        "brokers.amazonmq.credentials: use one of 'secret_id', 'file' or "
        "'username_env' + 'password_env', not 'secret_id' and 'file'",
    ),
    (
        "secret_and_env",
        AMQ
        + "    broker_name: o\n    credentials:\n      password_env: P  # <-\n      secret_id: s\n",
        "not 'secret_id' and 'password_env'",
    ),
    (
        "credentials_region_without_secret",
        AMQ
        + "    broker_name: o\n    credentials:\n      username_env: U\n      password_env: P\n"
        + "      region: eu-west-1  # <-\n",
        "brokers.amazonmq.credentials.region: only used with secret_id",
    ),
    (
        "credentials_bad_region",
        AMQ
        + "    broker_name: o\n    credentials:\n      secret_id: s\n      region: mars  # <-\n",
        "brokers.amazonmq.credentials.region: 'mars' is not an AWS region name",
    ),
    (
        "credentials_region_contradicts_arn",
        AMQ
        + f"    broker_name: o\n    credentials:\n      secret_id: '{ARN}'\n"
        + "      region: eu-west-1  # <-\n",
        "brokers.amazonmq.credentials.region: eu-west-1 contradicts the secret ARN's region "
        "us-east-1; a secret is read in its own region",
    ),
    (
        "credentials_secret_id_looks_like_a_password",
        AMQ + "    broker_name: o\n    credentials:\n      secret_id: 'hunter2 !#'  # <-\n",
        "brokers.amazonmq.credentials.secret_id: must be the NAME or ARN of a Secrets Manager "
        "secret",
    ),
    (
        "credentials_secret_id_empty",
        AMQ + "    broker_name: o\n    credentials:\n      secret_id: ''  # <-\n",
        "brokers.amazonmq.credentials.secret_id: must be the NAME or ARN",
    ),
    (
        "credentials_empty_mentions_secret_id",
        AMQ + "    broker_name: o\n    credentials: {}  # <-\n",
        "needs 'username_env' and 'password_env', or 'file', or 'secret_id'",
    ),
    (
        "unknown_key_suggests_broker_name",
        AMQ + "    brokername: orders  # <-\n",
        "brokers.amazonmq: unknown key 'brokername' (did you mean 'broker_name'?)",
    ),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_aws_forms_report_line_and_reason(text: str, reason: str) -> None:
    assert_refused(text, reason)


def test_secret_id_that_looks_like_a_password_is_not_echoed() -> None:
    text = AMQ + "    broker_name: o\n    credentials: {secret_id: 'hunter2 !#'}\n"
    with pytest.raises(RoutesError) as caught:
        parse_routes(text, "r")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"broker_id": "b-1", "broker_name": "x"}, {"region": "eu-west-1"}],
)
def test_amazonmq_ref_needs_exactly_one_of_id_and_name(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        AmazonMQRef(**kwargs)


def test_broker_config_needs_endpoints_or_a_reference() -> None:
    with pytest.raises(ValueError, match="needs endpoints or an aws reference"):
        BrokerConfig(name=AMAZONMQ, endpoints=(), ca_file=None, credentials=None)


def test_routes_load_and_name_secrets_without_boto3() -> None:
    # A routes file using every AWS form loads with boto3 unimportable; only resolving
    # the secret needs it, and then the error says so.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["boto3"] = None
        sys.modules["botocore"] = None
        from strangler.routes import AMAZONMQ, parse_routes
        from strangler.upstream import CredentialsError, resolve_credentials
        text = {AMQ!r} + "    broker_name: o\\n    credentials: {{secret_id: s}}\\n"
        config = parse_routes(text, "r").brokers[AMAZONMQ]
        assert config.aws is not None
        try:
            resolve_credentials(config.credentials, {{}})
        except CredentialsError as e:
            print(e)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == (
        "secret s: reading Secrets Manager needs boto3 (boto3 is missing)"
    ), result.stderr


def test_importing_routes_does_not_import_boto3() -> None:
    script = "import sys, strangler.routes; print('boto3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
