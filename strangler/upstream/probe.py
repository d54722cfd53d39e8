"""One probe per proxy while a broker is down, so sessions come back as soon as it does.

A session whose link failed stays in back-off (up to 30 s) unless the broker is seen up
again; without a probe, the first session to notice would be the one whose back-off
ends first (4.4 s of needless fallbacks were seen after Amazon MQ listened again). The
probe opens a connection (TLS included) to each endpoint every ``interval`` and marks
the broker up on the first that accepts: every link in back-off then tries again.

Invariants: at most one probe per broker (the caller keeps it); it ends once the broker
is up (whoever saw it) and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..routes import BrokerConfig
from .errors import BrokerUnavailable
from .health import BrokerHealth
from .transport import open_stream

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
            try:
                _, writer = await open_stream(broker, endpoint, config.ca_file, timeout)
            except BrokerUnavailable:
                continue
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            health.mark_up(broker, str(endpoint))
            return
        await asyncio.sleep(interval)  # a period between attempts, not a wait for an event
