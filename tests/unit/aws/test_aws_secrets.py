"""Credentials from Secrets Manager: the good case, every bad shape, and no leaked password."""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest
from aws_fakes import PASSWORD, REGION

from strangler.aws import AwsError, read_secret_credentials
from strangler.routes import Credentials
from strangler.upstream import CredentialsError, resolve_credentials

pytestmark = pytest.mark.usefixtures("aws")


def put_secret(name: str, value: str | bytes, region: str = REGION) -> str:
    client = boto3.client("secretsmanager", region_name=region)
    if isinstance(value, bytes):
        return str(client.create_secret(Name=name, SecretBinary=value)["ARN"])
    return str(client.create_secret(Name=name, SecretString=value)["ARN"])


def good(**extra: object) -> str:
    return json.dumps({"username": "strangler", "password": PASSWORD, **extra})


def test_reads_username_and_password() -> None:
    put_secret("prod/strangler", good())
    assert read_secret_credentials("prod/strangler") == ("strangler", PASSWORD)


def test_extra_keys_are_ignored() -> None:
    put_secret("prod/strangler", good(host="b-1.mq", engine="activemq"))
    assert read_secret_credentials("prod/strangler", region=REGION) == ("strangler", PASSWORD)


def test_an_arn_is_read_in_its_own_region_without_being_told() -> None:
    arn = put_secret("prod/strangler", good(), region="us-east-1")
    assert arn.startswith("arn:aws:secretsmanager:us-east-1:")
    assert read_secret_credentials(arn) == ("strangler", PASSWORD)


def test_rotation_is_picked_up_on_the_next_read() -> None:
    put_secret("prod/strangler", good())
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId="prod/strangler", SecretString=json.dumps({"username": "u", "password": "new"})
    )
    assert read_secret_credentials("prod/strangler") == ("u", "new")


# (id, stored value, exact reason) - every stored value here contains PASSWORD somewhere.
BAD: list[tuple[str, str | bytes, str]] = [
    (
        "missing-username",
        json.dumps({"password": PASSWORD}),
        'secret s: has no \'username\' key; expected JSON {"username": "...", "password": "..."}',
    ),
    (
        "missing-password",
        json.dumps({"username": PASSWORD, "pass": PASSWORD}),
        'secret s: has no \'password\' key; expected JSON {"username": "...", "password": "..."}',
    ),
    (
        "not-json",
        f"username=strangler password={PASSWORD}",
        'secret s: the secret string is not JSON; expected JSON {"username": "...", '
        '"password": "..."}',
    ),
    (
        "truncated-json",
        good()[:-3],
        'secret s: the secret string is not JSON; expected JSON {"username": "...", '
        '"password": "..."}',
    ),
    (
        "json-string",
        json.dumps(PASSWORD),
        "secret s: the secret string is JSON but not an object; expected JSON "
        '{"username": "...", "password": "..."}',
    ),
    (
        "number-password",
        json.dumps({"username": PASSWORD, "password": 12345678}),
        "secret s: 'password' must be a JSON string",
    ),
    (
        "empty-password",
        json.dumps({"username": "u", "password": "", "old": PASSWORD}),
        "secret s: 'password' is empty",
    ),
    (
        "binary",
        PASSWORD.encode(),
        'secret s: is a binary secret (SecretBinary); expected JSON {"username": "...", '
        '"password": "..."} as SecretString',
    ),
]


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None:
        found.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return found


def assert_no_password(error: BaseException) -> None:
    for link in _chain(error):
        assert PASSWORD not in str(link)
        assert PASSWORD not in repr(link)
        assert "12345678" not in str(link)
        for arg in link.args:
            assert PASSWORD not in str(arg)


@pytest.mark.parametrize(("stored", "reason"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_secret_shapes_are_named_never_quoted(stored: str | bytes, reason: str) -> None:
    put_secret("s", stored)
    with pytest.raises(AwsError) as caught:
        read_secret_credentials("s")
    assert caught.value.reason == reason
    assert_no_password(caught.value)
    # JSONDecodeError holds the whole document: it must not ride along in the chain.
    assert len(_chain(caught.value)) == 1


def test_missing_secret_is_a_clear_error() -> None:
    with pytest.raises(AwsError) as caught:
        read_secret_credentials("prod/absent")
    assert caught.value.reason == f"no Secrets Manager secret prod/absent in {REGION}"


# -- the routes Credentials form ---------------------------------------------------------


def test_credentials_secret_form_resolves_through_secrets_manager() -> None:
    put_secret("prod/strangler", good())
    credentials = Credentials(secret_id="prod/strangler", region=REGION)
    assert resolve_credentials(credentials, {}) == ("strangler", PASSWORD)
    assert PASSWORD not in repr(credentials)


@pytest.mark.parametrize(
    "setup",
    [
        lambda: put_secret("prod/strangler", json.dumps({"username": PASSWORD})),
        lambda: put_secret("prod/strangler", f"not json {PASSWORD}"),
        lambda: None,
    ],
    ids=["missing-password", "not-json", "absent"],
)
def test_credentials_secret_form_errors_are_credentials_errors_without_the_password(
    setup: Callable[[], object],
) -> None:
    setup()
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(Credentials(secret_id="prod/strangler"), {})
    assert caught.value.reason.startswith(("secret prod/strangler: ", "no Secrets Manager"))
    assert_no_password(caught.value)
    assert len(_chain(caught.value)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret_id": "s", "file": "f"},
        {"secret_id": "s", "username_env": "U", "password_env": "P"},
        {"region": REGION, "file": "f"},
        {"region": REGION},
    ],
)
def test_secret_form_is_exclusive_and_region_needs_it(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Credentials(**kwargs)
