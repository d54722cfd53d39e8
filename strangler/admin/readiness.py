"""What ``/readyz`` answers: can this sidecar take its producer's connections?

Readiness is per pod in Kubernetes: an unready sidecar takes the whole producer pod out
of its Services' endpoints. Brokers are shared by every pod, so a readiness that
followed them would take every producer pod out at once during an outage, HTTP traffic
and all, while the proxy handles that outage itself (fallback, mirror failure facts, or
an ERROR the producer retries). So:

- ready once the proxy listens for producers, a valid routes table is in force, and
  legacy has been reached once since start (by this check or by a producer's session):
  a new pod that cannot reach legacy (network policy, DNS, TLS) holds a rollout instead
  of replacing a working pod;
- after that, only shutting down (SIGTERM) makes it unready; brokers going away later
  never do (``strangler_upstream_up`` and the facts report them);
- Amazon MQ never gates readiness: every route mode has an answer to its loss.

"Reached" means the broker answered a STOMP CONNECT (CONNECTED, or an ERROR to the
anonymous login: either way a STOMP broker is there, over TLS where configured); nothing
else is sent. Producers log in to legacy with their own logins, so the proxy has none.
``?verbose`` adds this check for every broker a route uses (cached 2 s), for a person;
the status code still follows the rules above.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

from ..proxy import ProxyContext
from ..routes import AMAZONMQ, LEGACY, RouteTable
from ..upstream import BrokerUnavailable, open_stream
from ..upstream.discovery import resolve_endpoints
from ..upstream.transport import exchange_connect

REACHABLE: Final = "reachable"
_CACHE_SECONDS: Final = 2.0


class Readiness:
    def __init__(
        self,
        ctx: ProxyContext,
        listening: Callable[[], bool] = lambda: True,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._ctx = ctx
        self._listening = listening
        self._stopping = stopping
        self._legacy_reached = False
        self._probed: tuple[float, dict[str, str]] = (0.0, {})

    async def check(self, *, verbose: bool = False) -> tuple[bool, dict[str, Any]]:
        """(ready, the JSON body)."""
        table = self._ctx.routes.table
        brokers = await self.probe(table) if verbose else None
        reason = await self._not_ready(table, brokers)
        body: dict[str, Any] = {"ready": reason is None}
        if reason is not None:
            body["reason"] = reason
        body["routes_version"] = table.version
        if brokers is not None:
            body["brokers"] = brokers
        return reason is None, body

    async def _not_ready(self, table: RouteTable, brokers: dict[str, str] | None) -> str | None:
        if self._stopping():
            return "stopping"
        if not self._listening():
            return "not listening for producers yet"
        if not self._legacy_reached:
            if self._ctx.health.up.get(LEGACY):  # a producer's session reached it
                self._legacy_reached = True
            else:
                state = brokers[LEGACY] if brokers is not None else await self._reach(table, LEGACY)
                if state != REACHABLE:
                    return f"legacy not reached since start: {state}"
                self._legacy_reached = True
        return None

    async def probe(self, table: RouteTable) -> dict[str, str]:
        """Every broker a route uses: ``reachable`` or why not (cached for 2 s)."""
        checked, found = self._probed
        if time.monotonic() - checked < _CACHE_SECONDS:
            return found
        found = {LEGACY: await self._reach(table, LEGACY)}
        if table.needs_amazonmq or AMAZONMQ in table.brokers:
            found[AMAZONMQ] = await self._reach(table, AMAZONMQ)
        self._probed = (time.monotonic(), found)
        return found

    async def _reach(self, table: RouteTable, name: str) -> str:
        """``reachable`` when an endpoint answers an anonymous STOMP CONNECT, else why not."""
        configured = table.brokers.get(name)
        if configured is None:
            return "not configured"
        try:
            broker = await resolve_endpoints(configured)
        except BrokerUnavailable as exc:
            return exc.reason
        reason = "no endpoint"
        for endpoint in broker.endpoints:
            try:
                reader, writer = await open_stream(name, endpoint, broker.ca_file, timeout=2.0)
            except BrokerUnavailable as exc:
                reason = exc.reason
                continue
            try:
                headers = (("accept-version", "1.0,1.1,1.2"), ("host", endpoint.host))
                answer, _ = await exchange_connect(name, reader, writer, headers, timeout=2.0)
                if answer.command == "CONNECTED":
                    writer.write(b"DISCONNECT\n\n\0")
                return REACHABLE
            except BrokerUnavailable as exc:
                reason = exc.reason
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        return reason
