"""Opening a TCP or TLS stream to a broker endpoint.

TLS verifies the server certificate and host name by default (Amazon MQ has
a public certificate); ``ca_file`` adds a private CA such as the local
stand-in's self-signed one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from functools import lru_cache

from ..routes import BrokerEndpoint
from ..stomp import DEFAULT_LIMITS, Frame, FrameParser, Limits, ProtocolError, encode_parts
from .errors import BrokerUnavailable, describe_os_error

STREAM_LIMIT = 1 << 20


@lru_cache(maxsize=16)
def client_tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def open_stream(
    broker: str,
    endpoint: BrokerEndpoint,
    ca_file: str | None,
    timeout: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    tls = client_tls_context(ca_file) if endpoint.tls else None
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
                    raise BrokerUnavailable(broker, "closed the connection at login")
                for event in parser.feed(data):
                    if isinstance(event, Frame):
                        return event, parser
    except (OSError, TimeoutError, ProtocolError) as exc:
        reason = exc.reason if isinstance(exc, ProtocolError) else describe_os_error(exc)
        raise BrokerUnavailable(broker, f"login failed: {reason}") from exc
