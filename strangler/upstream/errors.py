"""Errors at the edge between the proxy and a broker.

Socket, TLS and timeout exceptions are mapped to :class:`BrokerUnavailable`
here, in one place (the httpcore habit), with a reason an operator can act on.
"""

from __future__ import annotations

import ssl


class CredentialsError(Exception):
    """Broker credentials could not be resolved (missing env var, unreadable or bad file).

    Raised at connect time, not at load time: routes.yaml only names where secrets live.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class CaFileError(Exception):
    """A broker's ``ca_file`` cannot serve as its TLS trust: missing, unreadable, not PEM."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"ca_file {path}: {reason}")
        self.path = path
        self.reason = reason


class BrokerUnavailable(Exception):
    def __init__(self, broker: str, reason: str) -> None:
        super().__init__(f"{broker}: {reason}")
        self.broker = broker
        self.reason = reason


def describe_os_error(exc: BaseException) -> str:
    """A short, operator-facing reason for a connection failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError):
        return f"connection lost ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__
