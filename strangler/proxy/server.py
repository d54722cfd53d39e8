"""The listening socket: one :class:`SessionDriver` per accepted connection.

This is the only place that owns the event loop's server; sessions own their own
sockets. Shutdown stops accepting first, then lets sessions settle what they read
within a grace period (they read nothing new), then closes what is left.

Invariants: at most ``max_connections`` sessions at once (one more is answered with an
ERROR and closed, a ``client_refused`` fact); while Amazon MQ is down, one probe per
proxy watches for it to come back, so sessions in back-off try again as soon as it does.
An exception nothing awaited is an ``internal_error`` fact (``loop_errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from .. import allocator
from ..facts import Fact
from ..routes import AMAZONMQ
from ..stomp import error_frame, native
from ..upstream.probe import probe_until_up
from .connection import Connection, no_delay
from .context import ProxyContext
from .driver import SessionDriver
from .loop_errors import install as install_loop_exception_handler

_session_ids = itertools.count(1)


class ProxyServer:
    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.sessions: set[SessionDriver] = set()
        self._server: asyncio.Server | None = None
        self._probe: asyncio.Task[None] | None = None
        ctx.routes_listeners.append(self._routes_changed)
        ctx.health.down_listeners.append(self._broker_down)

    def _routes_changed(self) -> None:
        for session in list(self.sessions):
            session.routes_changed()

    def _announce(self, rule: str, origin: SessionDriver) -> None:
        """A message of ``rule`` fell back to legacy: every session's drained consumers of
        that route read legacy again."""
        for session in list(self.sessions):
            session.legacy_refilled(rule)

    def _broker_down(self, broker: str) -> None:
        if broker != AMAZONMQ or (self._probe is not None and not self._probe.done()):
            return
        config = self.ctx.routes.table.brokers.get(AMAZONMQ)
        if config is not None and config.endpoints:
            self._probe = asyncio.ensure_future(
                probe_until_up(AMAZONMQ, config, self.ctx.health, self.ctx.settings.connect_timeout)
            )

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def start(self) -> None:
        settings = self.ctx.settings
        install_loop_exception_handler(self.ctx.facts)
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
            frame_pump=native.BUILD,  # compiled, or the pure-Python fallback
            malloc=allocator.state,  # glibc's thresholds (strangler/allocator.py)
        )

    def _accepted(self, client: Connection) -> None:
        no_delay(client)
        session_id = f"s{next(_session_ids)}"
        if len(self.sessions) >= self.ctx.settings.max_connections:
            limit = self.ctx.settings.max_connections
            self.ctx.facts.emit(
                Fact.CLIENT_REFUSED, session=session_id, reason=f"more than {limit} connections"
            )
            client.write(error_frame("too many connections", f"this proxy serves {limit}"))
            client.half_close()
            asyncio.get_running_loop().call_later(2.0, client.close)
            return
        session = SessionDriver(self.ctx, client, session_id, self._announce)
        self.sessions.add(session)  # now: a shutdown that starts next must see it
        session.start()
        task = asyncio.ensure_future(session.done.wait())
        task.add_done_callback(lambda _: self.sessions.discard(session))

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight frames settle within ``grace``, close the rest."""
        if self._server is None:
            return
        self._server.close()
        sessions = list(self.sessions)
        for session in sessions:
            session.shutdown(grace)
        if sessions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace + 1.0):
                    await asyncio.gather(*(s.done.wait() for s in sessions))
        for session in sessions:
            if not session.done.is_set():
                session.abort("proxy shutting down: grace period over")
        if self.ctx.farewells:  # a TLS goodbye the peer never answers must not hold us
            _, late = await asyncio.wait(list(self.ctx.farewells), timeout=2.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self.ctx.facts.emit(Fact.PROXY_STOPPED, sessions_closed=len(sessions))
