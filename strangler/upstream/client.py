"""The small blocking STOMP 1.2 client of replay, drain and verify, on strangler's own codec.

Why not stomp.py: it writes header values unescaped and reorders headers, so a captured
frame would not reach the broker as the producer sent it; and replay needs nothing but
SEND with receipts (drain adds SUBSCRIBE and ACK, written with the same ``send``).

``open_broker`` connects to a routes.yaml broker (its endpoints, discovered when needed,
its TLS/CA), with the login ``broker_login`` reads from its ``credentials``.

Invariants:
- Single-threaded: one thread sends and polls (no concurrent use of an SSL socket).
  ``poll`` never blocks longer than its timeout when nothing arrives.
- TLS verifies the certificate and host name (CA from ``ca_file``, else the system
  store), TLS 1.2 at least, like the proxy's own Amazon MQ connection.
- Endpoints are tried in order (active/standby); the first that answers CONNECTED wins.
- Every failure is a ``PublishError`` naming the broker, never a bare socket error.
- boto3 is imported (through ``strangler.aws``) only when a broker needs discovery.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Sequence

from ..routes import BrokerConfig, BrokerEndpoint, RouteTable
from ..stomp import Frame, FrameParser, Limits, ProtocolError, encode_parts
from .credentials import resolve_credentials
from .errors import CaFileError, CredentialsError, describe_os_error
from .transport import client_tls_context

_VERSION = "1.2"
_READ_SIZE = 65536
_LIMITS = Limits(max_frame_bytes=64 * 1024 * 1024)


class PublishError(Exception):
    """Replay, drain or verify cannot go on: a broker refused, closed or did not answer."""


class LoginRefused(PublishError):
    """Every endpoint that answered refused the login: a configuration error (exit 2)."""


class BrokerClient:
    """One producer connection: ``send`` raw SEND frames, ``poll`` for RECEIPT/ERROR."""

    def __init__(
        self,
        name: str,
        endpoints: Sequence[BrokerEndpoint],
        ca_file: str | None,
        login: tuple[str, str] | None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.server: str | None = None  # what CONNECTED said the broker is ("ActiveMQ/5.18.4")
        self._parser = FrameParser(_LIMITS, version=_VERSION)
        self._sock = self._connect(endpoints, ca_file, login, timeout)

    def _connect(
        self,
        endpoints: Sequence[BrokerEndpoint],
        ca_file: str | None,
        login: tuple[str, str] | None,
        timeout: float,
    ) -> socket.socket:
        problems: list[str] = []
        refused = 0
        for endpoint in endpoints:
            try:
                # The proxy's own builder: the same verification, the same ca_file errors.
                context = client_tls_context(ca_file) if endpoint.tls else None
            except CaFileError as exc:
                raise PublishError(f"{self.name}: {exc}") from None
            try:
                sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
                if context is not None:
                    sock = context.wrap_socket(sock, server_hostname=endpoint.host)
            except (OSError, ssl.SSLError) as exc:
                problems.append(f"{endpoint}: {describe_os_error(exc)}")
                continue
            self._sock = sock
            try:
                self._handshake(endpoint, login, timeout)
            except PublishError as exc:
                sock.close()
                problems.append(str(exc))
                refused += isinstance(exc, LoginRefused)
                continue
            return sock
        detail = "; ".join(problems) or "no endpoint"
        if refused:
            who = f"the login {login[0]!r}" if login is not None else "a connection without login"
            raise LoginRefused(f"{self.name} refused {who}: {detail}")
        raise PublishError(f"{self.name}: cannot connect: {detail}")

    def _handshake(
        self, endpoint: BrokerEndpoint, login: tuple[str, str] | None, timeout: float
    ) -> None:
        headers: list[tuple[str, str]] = [
            ("accept-version", _VERSION),
            ("host", endpoint.host),
            ("heart-beat", "0,0"),
        ]
        if login is not None:
            headers += [("login", login[0]), ("passcode", login[1])]
        # CONNECT headers are never escaped (encode_parts knows), whatever the version.
        self.send(encode_parts("CONNECT", tuple(headers), b"", _VERSION))
        deadline = time.monotonic() + timeout
        frames: list[Frame] = []
        while not frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(f"{self.name}: {endpoint}: no answer to CONNECT in {timeout:g}s")
            frames = self.poll(remaining)
        answer = frames[0]
        if answer.command != "CONNECTED":
            reason = answer.get("message") or answer.command
            raise LoginRefused(f"{self.name}: {endpoint}: {reason}")
        self.server = answer.get("server")

    def send(self, raw: bytes) -> None:
        try:
            self._sock.sendall(raw)
        except OSError as exc:
            raise PublishError(
                f"{self.name}: connection lost while sending: {describe_os_error(exc)}"
            ) from None

    def poll(self, timeout: float) -> list[Frame]:
        """Frames that arrive within ``timeout`` seconds (at most one read)."""
        sock = self._sock
        try:
            if not self.buffered:
                ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
                if not ready:
                    return []
            data = sock.recv(_READ_SIZE)
        except ssl.SSLWantReadError:
            return []  # a partial TLS record: the rest comes with the next poll
        except OSError as exc:
            raise PublishError(f"{self.name}: connection lost: {describe_os_error(exc)}") from None
        if not data:
            raise PublishError(f"{self.name}: the broker closed the connection")
        try:
            return [event for event in self._parser.feed(data) if isinstance(event, Frame)]
        except ProtocolError as exc:
            raise PublishError(f"{self.name}: unreadable answer: {exc.reason}") from None

    def fileno(self) -> int:
        """The socket's descriptor, so ``select`` can wait on several connections at once."""
        return self._sock.fileno()

    @property
    def buffered(self) -> bool:
        """True when TLS holds decrypted bytes ``select`` cannot see: poll without waiting."""
        sock = self._sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def close(self) -> None:
        """DISCONNECT (best effort: every message that matters was confirmed) and close."""
        try:
            self._sock.sendall(encode_parts("DISCONNECT", (), b"", _VERSION))
        except OSError:
            pass
        finally:
            self._sock.close()


def broker_login(
    table: RouteTable, name: str, fallback: tuple[str, str] | None
) -> tuple[str, str] | None:
    """The login routes.yaml gives broker ``name`` (read now), else ``fallback``."""
    config = table.brokers.get(name)
    if config is None or config.credentials is None:
        return fallback
    try:
        return resolve_credentials(config.credentials)
    except CredentialsError as exc:
        raise PublishError(f"{name}: credentials: {exc}") from None


def open_broker(
    table: RouteTable, name: str, login: tuple[str, str] | None, timeout: float
) -> BrokerClient:
    """A connection to broker ``name`` of ``table`` (discovered when needed) with ``login``."""
    config = table.brokers.get(name)
    if config is None:
        raise PublishError(f"routes send to {name}, but {table.source} has no brokers.{name}")
    config = _discovered(config)
    return BrokerClient(name, config.endpoints, config.ca_file, login, timeout=timeout)


def _discovered(config: BrokerConfig) -> BrokerConfig:
    if not config.needs_discovery:
        return config
    try:
        from ..aws import AwsError, discover_endpoints
    except ImportError as exc:
        raise PublishError(f"{config.name}: discovery needs boto3 ({exc})") from None
    try:
        return discover_endpoints(config)
    except AwsError as exc:
        raise PublishError(f"{config.name}: {exc}") from None
