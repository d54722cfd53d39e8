"""The asyncio side of one producer session: it performs what the core asks.

The session's logic is ``core.SessionCore`` (no I/O). This driver owns the sockets (the
client's, legacy's), the Amazon MQ link, the timers and back-pressure, turns what
happens on them into core events, and carries out the commands the core returns.

Invariants:
- commands run in the order the core returned them; legacy's bytes of one client read
  leave in one write;
- back-pressure: the client is not read while the core holds frames, or while legacy's
  send buffer is over its high-water mark; legacy and Amazon MQ are not read while the
  client's send buffer is over its mark, and a client that reads nothing for
  ``write_timeout`` is closed;
- an exception anywhere in the core or here becomes ``SessionCore.internal_error`` (a
  fact, every pending frame settled, an ERROR); if even that fails, the session is
  torn down and the fact is still written: nothing hangs in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..facts import Fact
from ..routes import AMAZONMQ, LEGACY
from ..stomp import Frame
from ..upstream import BrokerLink, BrokerUnavailable
from .connection import Connection, open_connection
from .context import ProxyContext
from .core.commands import (
    AnnounceFallback,
    CancelTimer,
    CloseAmazonMQ,
    CloseClient,
    CloseLegacy,
    Command,
    DropAmazonMQ,
    OpenLegacy,
    PauseClient,
    ResumeClient,
    SessionEnded,
    StartTimer,
    SubscribeAmazonMQ,
    ToAmazonMQ,
    ToClient,
    ToLegacy,
    UnsubscribeAmazonMQ,
)
from .core.session import SessionCore

if TYPE_CHECKING:
    from collections.abc import Sequence

_LINGER = 2.0  # seconds a client has to read an ERROR before its connection is closed
_LEGACY_HIGH_WATER = 512 * 1024  # bytes buffered for legacy before the producer is paused

Announce = Callable[[str, "SessionDriver"], None]


class SessionDriver:
    def __init__(
        self, ctx: ProxyContext, client: Connection, session_id: str, announce: Announce
    ) -> None:
        self.ctx = ctx
        self.id = session_id
        self._client = client
        self._announce = announce
        peer = client.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.core = SessionCore(ctx, session_id, self.peer, ctx.traces)
        self._legacy: Connection | None = None
        self._opening: asyncio.Task[None] | None = None
        self._link: BrokerLink | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._core_paused = False  # the core holds frames
        self._legacy_full = False  # legacy's send buffer is over its mark
        self._client_full = False  # the client's send buffer is over its mark
        self._write_timer: asyncio.TimerHandle | None = None
        self._ended = False
        self._failed = False  # internal_error ran: a second failure tears down
        self._performing = False
        self._events: deque[tuple[Callable[..., list[Command]], tuple[object, ...], str]] = deque()
        self.done = asyncio.Event()

    # -- start ------------------------------------------------------------------------

    def start(self) -> None:
        tap = self.ctx.tap
        if tap is not None:
            tap.opened(self.id, self.peer)
        self._client.on_writable = self._client_writable
        self._run(self.core.start, where="start")
        self._client.take(self._client_data, self._client_end)

    # -- events into the core ---------------------------------------------------------

    def _client_data(self, data: bytes) -> None:
        if self.ctx.tap is not None:
            self.ctx.tap.from_client(self.id, data)
        self._run(self.core.client_data, data, where="client data")
        self._client.ack_may_wait = self.core.client_ack_may_wait()

    def _client_end(self, reason: str | None) -> None:
        self._run(self.core.client_closed, where="client closed")

    def _legacy_data(self, data: bytes) -> None:
        self._run(self.core.legacy_data, data, where="legacy data")
        if self._legacy is not None:
            self._legacy.ack_may_wait = self.core.legacy_ack_may_wait()

    def _legacy_end(self, reason: str | None) -> None:
        self._run(self.core.legacy_closed, reason or "closed", where="legacy closed")

    def _outcome(self, token: str, failure: str | None, stored: bool) -> None:
        self._run(self.core.amazonmq_outcome, token, failure, stored, where="Amazon MQ outcome")

    def _message(self, frame: Frame) -> None:
        self._run(self.core.amazonmq_message, frame, where="Amazon MQ message")

    def _subscribed(self, sub_id: str, failure: str | None) -> None:
        self._run(self.core.amazonmq_subscribed, sub_id, failure, where="Amazon MQ subscribe")

    def _lost(self, reason: str) -> None:
        self._run(self.core.amazonmq_lost, reason, where="Amazon MQ lost")

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self._run(self.core.timer, name, where=f"timer {name}")

    def routes_changed(self) -> None:
        self._run(self.core.routes_changed, where="routes changed")

    def legacy_refilled(self, rule: str) -> None:
        self._run(self.core.legacy_refilled, rule, where="fallback announced")

    def shutdown(self, grace: float) -> None:
        self._run(self.core.shutdown, grace, where="shutdown")

    def _run(self, handler: Callable[..., list[Command]], *args: object, where: str) -> None:
        """Call the core and perform its commands; any exception is an internal error.

        An event that arrives while commands are being performed (the link answers a
        submit at once while in back-off) waits until they are all done: one event's
        commands are never interleaved with another's (a fallback SEND must not reach
        legacy before the BEGIN queued ahead of it)."""
        self._events.append((handler, args, where))
        if self._performing:
            return
        self._performing = True
        try:
            while self._events and not self._ended:
                handler, args, where = self._events.popleft()
                self._handle(handler, args, where)
        finally:
            self._performing = False
            self._events.clear()

    def _handle(
        self, handler: Callable[..., list[Command]], args: tuple[object, ...], where: str
    ) -> None:
        try:
            commands = handler(*args)
        except Exception as exc:  # a bug in the core: settle, never hang
            self._internal_error(exc, where)
            return
        failed = self._perform(commands)
        if failed is not None:
            self._internal_error(failed, f"{where}: {type(failed).__name__}")

    def _internal_error(self, exc: BaseException, where: str) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self._failed:
            self._tear_down(reason, where)
            return
        self._failed = True
        traceback.print_exception(exc)
        try:
            commands = self.core.internal_error(reason, where)
        except Exception as again:
            self._tear_down(f"{reason}; then {type(again).__name__}: {again}", where)
            return
        failed = self._perform(commands)
        if failed is not None:
            self._tear_down(f"{reason}; then {type(failed).__name__}: {failed}", where)

    def _tear_down(self, reason: str, where: str) -> None:
        """Last resort: the core cannot be trusted any more; close everything, say why."""
        self.ctx.facts.emit(
            Fact.INTERNAL_ERROR, session=self.id, reason=reason[:500], where=where, torn_down=True
        )
        for close in (self._client.abort, *(x.abort for x in (self._legacy,) if x is not None)):
            with contextlib.suppress(Exception):
                close()
        if self._link is not None:
            with contextlib.suppress(Exception):
                self._link.drop("session torn down after an internal error")
        self._end()

    # -- commands -----------------------------------------------------------------------

    def _perform(self, commands: Sequence[Command]) -> Exception | None:
        """Perform every command, in order; one that fails does not stop the others (a
        failed Amazon MQ submit must not keep legacy's bytes from leaving). The first
        failure is returned for ``internal_error``."""
        failed: Exception | None = None
        for command in commands:
            if self._ended:
                break
            try:
                self._perform_one(command)
            except Exception as exc:
                failed = failed or exc
        return failed

    def _perform_one(self, command: Command) -> None:
        kind = type(command)
        if kind is ToLegacy:
            self._to_legacy(command.data)  # type: ignore[union-attr]
        elif kind is ToClient:
            self._to_client(command.data)  # type: ignore[union-attr]
        elif kind is ToAmazonMQ:
            assert isinstance(command, ToAmazonMQ)
            self._amazonmq().submit(
                command.token,
                command.data,
                resendable=command.resendable,
                label=command.label,
                batch=command.batch,
            )
        elif kind is StartTimer:
            assert isinstance(command, StartTimer)
            self._start_timer(command.name, command.delay)
        elif kind is CancelTimer:
            assert isinstance(command, CancelTimer)
            timer = self._timers.pop(command.name, None)
            if timer is not None:
                timer.cancel()
        else:
            self._perform_rare(command)

    def _perform_rare(self, command: Command) -> None:
        if isinstance(command, PauseClient):
            self._core_paused = True
            self._client.pause_reading()
        elif isinstance(command, ResumeClient):
            self._core_paused = False
            self._resume_client()
        elif isinstance(command, OpenLegacy):
            self._opening = asyncio.ensure_future(self._open_legacy())
        elif isinstance(command, SubscribeAmazonMQ):
            self._amazonmq().subscribe(command.sub_id, command.data)
        elif isinstance(command, UnsubscribeAmazonMQ):
            self._amazonmq().unsubscribe(command.sub_id, command.token, command.data)
        elif isinstance(command, DropAmazonMQ):
            if self._link is not None:
                self._link.drop(command.reason)
        elif isinstance(command, CloseAmazonMQ):
            link, self._link = self._link, None
            if link is not None:
                self._close_link(link, graceful=command.graceful)
        elif isinstance(command, CloseLegacy):
            legacy = self._legacy
            if legacy is not None:
                legacy.close()
        elif isinstance(command, CloseClient):
            self._close_client(command.after_error)
        elif isinstance(command, AnnounceFallback):
            self._announce(command.rule, self)
        elif isinstance(command, SessionEnded):
            self._end()

    def _to_legacy(self, data: bytes) -> None:
        legacy = self._legacy
        if legacy is None:
            return
        legacy.write(data)
        if not self._legacy_full and legacy.buffered() > _LEGACY_HIGH_WATER:
            self._legacy_full = True
            self._client.pause_reading()

    def _legacy_writable(self) -> None:
        if self._legacy_full:
            self._legacy_full = False
            self._resume_client()

    def _resume_client(self) -> None:
        if not self._core_paused and not self._legacy_full:
            self._client.resume_reading()

    def _to_client(self, data: bytes) -> None:
        client = self._client
        if self.ctx.tap is not None:
            self.ctx.tap.to_client(self.id, data)
        client.write(data)
        if client.writing_paused and not self._client_full:
            self._client_full = True
            if self._legacy is not None:
                self._legacy.pause_reading()
            if self._link is not None:
                self._link.pause_reading()
            timeout = self.ctx.settings.write_timeout
            self._write_timer = asyncio.get_running_loop().call_later(
                timeout, self._client_stuck, timeout
            )

    def _client_writable(self) -> None:
        if not self._client_full:
            return
        self._client_full = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._legacy is not None:
            self._legacy.resume_reading()
        if self._link is not None:
            self._link.resume_reading()

    def _client_stuck(self, timeout: float) -> None:
        self._write_timer = None
        self.ctx.facts.emit(
            Fact.CLIENT_PROTOCOL_ERROR, session=self.id, reason="client stopped reading"
        )
        self.core.state.close_reason = f"client read nothing for {timeout:g} seconds"
        self._client.abort()

    def _close_client(self, after_error: bool) -> None:
        client = self._client
        if not after_error:
            with contextlib.suppress(Exception):
                client.close()
            return
        # Closing with unread input resets the connection, and a reset can destroy the
        # ERROR before the client has read it: half-close, read and drop, close later.
        client.half_close()
        client.resume_reading()
        asyncio.get_running_loop().call_later(_LINGER, client.close)

    def _start_timer(self, name: str, delay: float) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._timers[name] = asyncio.get_running_loop().call_later(delay, self._fire, name)

    # -- legacy and Amazon MQ -----------------------------------------------------------

    async def _open_legacy(self) -> None:
        broker = self.ctx.routes.table.brokers[LEGACY]
        settings = self.ctx.settings
        failure = "no endpoint configured"
        for endpoint in broker.endpoints:  # in order: the first that accepts us
            try:
                legacy = await open_connection(
                    LEGACY, endpoint, broker.ca_file, settings.connect_timeout
                )
            except BrokerUnavailable as exc:
                failure = exc.reason
                continue
            self.ctx.health.mark_up(LEGACY, str(endpoint))
            if self._ended:
                legacy.close()
                return
            self._legacy = legacy
            legacy.on_writable = self._legacy_writable
            legacy.transport.set_write_buffer_limits(high=_LEGACY_HIGH_WATER)
            self._run(self.core.legacy_opened, where="legacy opened")
            legacy.take(self._legacy_data, self._legacy_end)
            return
        self.ctx.health.mark_down(LEGACY, failure)
        self._run(self.core.legacy_failed, failure, where="legacy failed")

    def _amazonmq(self) -> BrokerLink:
        if self._link is None:
            settings = self.ctx.settings
            config = self.ctx.routes.table.brokers[AMAZONMQ]
            state = self.core.state
            link = BrokerLink(
                AMAZONMQ,
                config,
                state.version,
                self.ctx.health,
                limits=settings.limits,
                connect_timeout=settings.connect_timeout,
                batch_delay=settings.amazonmq_batch_delay,
                # Shared, mapped from the legacy login, or refused (client_credentials).
                login=config.login_for(state.login),
                session=self.id,
            )
            link.on_outcome = self._outcome
            link.on_message = self._message
            link.on_subscribed = self._subscribed
            link.on_lost = self._lost
            if self._client_full:
                link.pause_reading()
            self._link = link
        return self._link

    @property
    def link(self) -> BrokerLink | None:
        return self._link

    # -- the end --------------------------------------------------------------------------

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._write_timer is not None:
            self._write_timer.cancel()
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self._legacy is not None:
            with contextlib.suppress(Exception):
                self._legacy.close()
        link, self._link = self._link, None
        if link is not None:
            self._close_link(link, graceful=False)
        if self.ctx.tap is not None:
            self.ctx.tap.closed(self.id)
        # Break the cycles through the connections' callbacks: the session's memory goes
        # back at once instead of at the next run of the cycle collector.
        for connection in (self._client, self._legacy):
            if connection is not None:
                connection.detach()
        self.done.set()

    def _close_link(self, link: BrokerLink, *, graceful: bool) -> None:
        task = asyncio.ensure_future(link.close(graceful=graceful))
        task.add_done_callback(_retrieve)
        self.ctx.farewells.add(task)
        task.add_done_callback(self.ctx.farewells.discard)

    def abort(self, reason: str) -> None:
        """Close now, whatever is pending (after the shutdown grace)."""
        self.core.state.close_reason = reason
        with contextlib.suppress(Exception):
            self._client.abort()
        self._end()


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
