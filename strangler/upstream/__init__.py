"""Connections to brokers: transport, credentials, the proxy-owned link, health, and the
blocking client of replay, drain and verify (``client``)."""

from .credentials import resolve_credentials
from .errors import BrokerUnavailable, CredentialsError, describe_os_error
from .health import BrokerHealth
from .link import BrokerLink
from .transport import open_stream

__all__ = [
    "BrokerHealth",
    "BrokerLink",
    "BrokerUnavailable",
    "CredentialsError",
    "describe_os_error",
    "open_stream",
    "resolve_credentials",
]
