"""One probe per proxy while a broker is down, so sessions come back as soon as it does.

A session whose link failed stays in back-off (up to 30 s) unless the broker is seen up
again; without a probe, the first session to notice would be the one whose back-off
ends first (4.4 s of needless fallbacks were seen after Amazon MQ listened again). The
probe logs in to each endpoint every ``interval`` with the proxy's own credentials,
as a session's link would, and marks the broker up on the first CONNECTED: every link
in back-off then tries again. A broker that listens but refuses the login stays down.

Invariants: at most one probe per broker (the caller keeps it); it ends once the broker
is up (whoever saw it) and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..routes import BrokerConfig, BrokerEndpoint
from .credentials import resolve_credentials
from .errors import BrokerUnavailable
from .health import BrokerHealth
from .transport import exchange_connect, open_stream

PROBE_INTERVAL = 0.5


async def probe_until_up(
    broker: str,
    config: BrokerConfig,
    health: BrokerHealth,
    timeout: float,
    interval: float = PROBE_INTERVAL,
) -> None:
    while health.up.get(broker, True) is False:
        for endpoint in config.endpoints:
            if await _logs_in(broker, config, endpoint, timeout):
                health.mark_up(broker, str(endpoint))
                return
        await asyncio.sleep(interval)  # a period between attempts, not a wait for an event


async def _logs_in(
    broker: str, config: BrokerConfig, endpoint: BrokerEndpoint, timeout: float
) -> bool:
    try:
        credentials = config.credentials
        username, password = (
            await asyncio.to_thread(resolve_credentials, credentials) if credentials else ("", "")
        )
    except Exception:  # the sessions report credential problems; the probe only waits
        return False
    headers = [("accept-version", "1.2"), ("host", endpoint.host)]
    if username:
        headers += [("login", username), ("passcode", password)]
    try:
        reader, writer = await open_stream(broker, endpoint, config.ca_file, timeout)
    except BrokerUnavailable:
        return False
    try:
        answer, _ = await exchange_connect(broker, reader, writer, headers, timeout=timeout)
        if answer.command == "CONNECTED":
            writer.write(b"DISCONNECT\n\n\0")
        return answer.command == "CONNECTED"
    except BrokerUnavailable:
        return False
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
