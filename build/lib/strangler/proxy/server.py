"""The listening socket: one :class:`ClientSession` per accepted connection.

This is the only place that owns the event loop's server; sessions own their
own sockets. Shutdown stops accepting first, then lets sessions finish their
in-flight work within a grace period, then closes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..facts import Fact
from .connection import Connection, no_delay
from .context import ProxyContext
from .session import ClientSession


class ProxyServer:
    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.sessions: set[ClientSession] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        ctx.routes_listeners.append(self._routes_changed)
        ctx.fallback_listeners.append(self._fell_back)

    def _routes_changed(self) -> None:
        for session in self.sessions:
            session.consumers.routes_changed()

    def _fell_back(self, rule: str) -> None:
        for session in self.sessions:
            session.consumers.legacy_refilled(rule)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def start(self) -> None:
        settings = self.ctx.settings
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Connection(self._accepted),
            settings.listen_host,
            settings.listen_port,
            reuse_address=True,
            ssl=settings.tls,
        )
        host, port = self.address
        table = self.ctx.routes.table
        self.ctx.facts.emit(
            Fact.PROXY_STARTED,
            listen=f"{host}:{port}",
            tls=settings.tls is not None,
            dry_run=settings.dry_run,
            routes_version=table.version,
        )

    def _accepted(self, client: Connection) -> None:
        no_delay(client)
        session = ClientSession(self.ctx, client)
        self.sessions.add(session)  # now: a shutdown that starts next must see it
        task = asyncio.ensure_future(self._serve(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, session: ClientSession) -> None:
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight receipts complete within ``grace``, close the rest."""
        if self._server is None:
            return
        self._server.close()
        sessions = list(self.sessions)
        if sessions:
            await asyncio.gather(
                *(s.drain_and_close(grace) for s in sessions), return_exceptions=True
            )
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self.ctx.facts.emit(Fact.PROXY_STOPPED, sessions_closed=len(sessions))
