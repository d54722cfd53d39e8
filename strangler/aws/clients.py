"""boto3 clients configured for a proxy: short timeouts, few retries, made once per region.

Invariants:
- One client per (service, region), created under a lock from its own
  ``boto3.session.Session`` (sessions are not thread-safe; clients are), then shared by
  every thread: building a client parses the service model, ~0.1-0.5 s of CPU, which
  ``resolve_credentials`` would otherwise pay on every broker connection. Credentials from
  roles and SSO refresh inside the client, so sharing it does not pin them.
- A call fails within about a minute (3 attempts, 5 s connect, 10 s read) instead of
  botocore's defaults of several minutes, so a discovery running on a schedule never piles
  up behind an unreachable endpoint.
- Creating a client never raises botocore exceptions: a missing region or unknown profile
  becomes ``AwsError`` (and nothing is cached).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
from botocore.config import Config

from .errors import aws_call

if TYPE_CHECKING:
    from mypy_boto3_mq.client import MQClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

_CONFIG: Final = Config(
    connect_timeout=5,
    read_timeout=10,
    retries={"mode": "standard", "max_attempts": 3},
    user_agent_extra="strangler",
)

_lock = threading.Lock()
_clients: dict[tuple[str, str | None], Any] = {}


def mq_client(region: str | None = None) -> MQClient:
    """The shared Amazon MQ client for ``region`` (None: the SDK's default region)."""
    client: MQClient = _client("mq", region)
    return client


def secretsmanager_client(region: str | None = None) -> SecretsManagerClient:
    """The shared Secrets Manager client for ``region`` (None: the SDK's default region)."""
    client: SecretsManagerClient = _client("secretsmanager", region)
    return client


def clear_client_cache() -> None:
    """Forget every shared client (tests; or after changing AWS_* environment variables)."""
    with _lock:
        _clients.clear()


def _client(service: Literal["mq", "secretsmanager"], region: str | None) -> Any:
    key = (service, region)
    with _lock:
        client = _clients.get(key)
        if client is None:
            label = "Amazon MQ" if service == "mq" else "Secrets Manager"
            with aws_call(None, f"{label} in {region or 'the default AWS region'}"):
                client = boto3.session.Session().client(service, region_name=region, config=_CONFIG)
            _clients[key] = client
        return client
