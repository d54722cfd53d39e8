"""Opening a TCP or TLS stream to a broker endpoint.

TLS verifies the server certificate and host name by default (Amazon MQ has
a public certificate); ``ca_file`` replaces the system's CAs with a private one,
such as the local stand-in's self-signed certificate.

Invariants:
- A ``ca_file`` that is missing, unreadable, not a regular file, too large or holds no PEM
  certificate raises ``CaFileError`` naming the file and the reason, from
  ``client_tls_context``; ``open_stream`` reports it as ``BrokerUnavailable``, like any
  other reason the broker cannot be reached. Nothing else (``OSError``, ``ssl.SSLError``)
  escapes the context builder.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from functools import lru_cache

from ..regular_files import UnreadableFile, read_regular_file
from ..routes import BrokerEndpoint
from ..stomp import DEFAULT_LIMITS, Frame, FrameParser, Limits, ProtocolError, encode_parts
from .errors import BrokerUnavailable, CaFileError, describe_os_error

STREAM_LIMIT = 1 << 20


# A CA bundle with every public root is about 250 KiB.
MAX_CA_FILE_BYTES = 4 << 20


def load_ca_file(ca_file: str) -> str:
    """The PEM text of ``ca_file``, checked by OpenSSL; ``CaFileError`` says what is wrong."""
    try:
        data = read_regular_file(ca_file, MAX_CA_FILE_BYTES)
    except UnreadableFile as exc:
        raise CaFileError(ca_file, exc.reason) from None
    try:
        pem = data.decode("ascii")
    except UnicodeDecodeError:
        raise CaFileError(ca_file, "not a PEM file (binary content; DER? convert it)") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise CaFileError(ca_file, "no PEM certificate in it (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata=pem)
    except ssl.SSLError as exc:
        raise CaFileError(
            ca_file, f"not a valid PEM certificate ({exc.reason or exc.strerror or exc})"
        ) from None
    return pem


@lru_cache(maxsize=16)
def client_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifying TLS, 1.2 or later; ``ca_file`` (PEM) replaces the system's CAs.

    Raises ``CaFileError`` for a bad ``ca_file`` (not cached: a fixed file is read again).
    """
    if ca_file is None:
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cadata=load_ca_file(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def open_stream(
    broker: str,
    endpoint: BrokerEndpoint,
    ca_file: str | None,
    timeout: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        tls = client_tls_context(ca_file) if endpoint.tls else None
    except CaFileError as exc:
        raise BrokerUnavailable(broker, f"{endpoint}: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=tls,
                server_hostname=endpoint.host if tls else None,
                limit=STREAM_LIMIT,
            )
    except (OSError, TimeoutError) as exc:
        raise BrokerUnavailable(broker, f"{endpoint}: {describe_os_error(exc)}") from exc


async def exchange_connect(
    broker: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: Sequence[tuple[str, str]],
    *,
    timeout: float,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[Frame, FrameParser]:
    """Send CONNECT with ``headers``; the broker's first frame (CONNECTED or ERROR).

    Returns the parser too, so the caller goes on reading the same stream with it.
    """
    # CONNECT headers are never escaped, so the 1.0 form suits every version.
    writer.write(encode_parts("CONNECT", tuple(headers), b"", "1.0"))
    parser = FrameParser(limits)
    try:
        async with asyncio.timeout(timeout):
            while True:
                data = await reader.read(65536)
                if not data:
                    # ActiveMQ closes right after the ERROR of a refused login, and
                    # over TLS the close may arrive before the ERROR is read.
                    raise BrokerUnavailable(
                        broker,
                        "closed the connection at login without CONNECTED or ERROR "
                        "(a refused login can end so: check the credentials)",
                    )
                for event in parser.feed(data):
                    if isinstance(event, Frame):
                        return event, parser
    except (OSError, TimeoutError, ProtocolError) as exc:
        reason = exc.reason if isinstance(exc, ProtocolError) else describe_os_error(exc)
        raise BrokerUnavailable(broker, f"login failed: {reason}") from exc
