"""Broker credentials from AWS Secrets Manager: a JSON ``{"username", "password"}`` secret.

Blocking (boto3): from asyncio, call it in a thread (``asyncio.to_thread``).

Invariants:
- The secret string must be a JSON object with non-empty string ``username`` and
  ``password``; other keys (host, engine, ...) are ignored, as in the credentials file form.
- No error message, and no exception chained to one, contains the secret value or any part
  of it: JSON errors are suppressed (``from None``) because ``JSONDecodeError`` carries the
  whole document, and values are only ever described by their key and type.
- The secret is read at every call, never cached, so rotation is picked up on reconnect.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

from ..routes import secret_arn_region
from .clients import secretsmanager_client
from .errors import AwsError, aws_call

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

_SHAPE: Final = 'expected JSON {"username": "...", "password": "..."}'


def read_secret_credentials(
    secret_id: str, region: str | None = None, client: SecretsManagerClient | None = None
) -> tuple[str, str]:
    """Return ``(username, password)`` from the secret's current version.

    ``region`` None: the region inside ``secret_id`` when it is an ARN, else the SDK default.
    Raises ``AwsError`` naming the secret and the problem, never its value.
    """
    region = region or secret_arn_region(secret_id)
    sm = client if client is not None else secretsmanager_client(region)
    where = sm.meta.region_name
    subject = f"secret {secret_id}"
    with aws_call(
        "secretsmanager:GetSecretValue",
        subject,
        not_found=f"no Secrets Manager secret {secret_id} in {where}",
    ):
        response = sm.get_secret_value(SecretId=secret_id)
    text = response.get("SecretString")
    if text is None:
        raise AwsError(f"{subject}: is a binary secret (SecretBinary); {_SHAPE} as SecretString")
    try:
        data = json.loads(text)
    except ValueError:
        raise AwsError(f"{subject}: the secret string is not JSON; {_SHAPE}") from None
    if not isinstance(data, dict):
        raise AwsError(f"{subject}: the secret string is JSON but not an object; {_SHAPE}")
    return _field(subject, data, "username"), _field(subject, data, "password")


def _field(subject: str, data: dict[str, object], key: str) -> str:
    if key not in data:
        raise AwsError(f"{subject}: has no '{key}' key; {_SHAPE}")
    value = data[key]
    if not isinstance(value, str):
        raise AwsError(f"{subject}: '{key}' must be a JSON string")
    if value == "":
        raise AwsError(f"{subject}: '{key}' is empty")
    return value
