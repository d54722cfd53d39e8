"""Opening a TCP or TLS stream to a broker endpoint.

TLS verifies the server certificate and host name by default (Amazon MQ has
a public certificate); ``ca_file`` adds a private CA such as the local
stand-in's self-signed one.
"""

from __future__ import annotations

import asyncio
import ssl
from functools import lru_cache

from ..routes import BrokerEndpoint
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
