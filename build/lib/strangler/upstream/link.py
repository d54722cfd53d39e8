"""A session's own connection to a broker the proxy logs in to (Amazon MQ).

The proxy, not the producer, owns this connection: it logs in with the
proxy's credentials (or, given a ``SessionLogin``, those mapped from the
producer's legacy login), asks a receipt for every frame it sends, and reports each
frame's outcome exactly once through the callback given at :meth:`submit`
(``None`` = the broker confirmed it, a string = why it did not).

Invariants:
- at most ``max_inflight`` frames wait for a receipt; callers check
  :meth:`has_capacity` / await :meth:`wait_capacity` (back-pressure), never
  buffer beyond it;
- frames are written in submit order, including those submitted while the
  connection is being opened;
- when the connection fails, every waiting frame fails at once and the link
  stays down for a back-off period, during which submits fail immediately
  (so a dead Amazon MQ costs a producer nothing but the fallback); the back-off
  ends early once another session reached the broker (``broker_recovered``);
- subscriptions are standing: written again after every (re)connect, and while
  any exists the link reconnects by itself after the back-off (a consumer has no
  SEND to trigger it). MESSAGE frames go to ``on_message`` with the connection's
  generation; the broker redelivers what was unacknowledged on a lost connection;
- credentials are resolved on every connect (a rotated secret is picked up);
- a refused ``SessionLogin`` never connects: every submit fails at once with
  its reason, and broker health is left alone (Amazon MQ is not down).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..facts import Fact
from ..routes import BrokerConfig, SessionLogin
from ..stomp import Frame, FrameParser, Limits, ProtocolError
from .discovery import resolve_endpoints
from .errors import BrokerUnavailable, describe_os_error
from .health import BrokerHealth
from .transport import exchange_connect, open_stream

OutcomeCallback = Callable[[str | None], None]
FrameBuilder = Callable[[str], bytes]
# A MESSAGE from the broker and the generation of the connection it came on; an
# awaitable returned is awaited before reading on (the consumer's back-pressure).
MessageHandler = Callable[[Frame, int], Awaitable[None] | None]

_ids = itertools.count(1)


@dataclass(slots=True)
class _Waiting:
    payload: bytes
    on_done: OutcomeCallback
    resendable: bool  # may be written again on a new connection (not part of a transaction)
    label: str | None  # the message's trace id, for the resent fact


class BrokerLink:
    def __init__(
        self,
        broker: str,
        config: BrokerConfig,
        version: str,
        health: BrokerHealth,
        *,
        limits: Limits,
        max_inflight: int = 1000,
        connect_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        login: SessionLogin | None = None,
    ) -> None:
        self.broker = broker
        self._config = config
        # None: the config's own credentials (the proxy's), read again on every connect.
        self._login = login
        self._whose = login.whose if login is not None else ""
        self._refused = login.refused if login is not None else None
        self._version = version
        self._health = health
        self._limits = limits
        self._max_inflight = max_inflight
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = backoff_initial
        self._down_until = 0.0
        self._prefix = f"strangler-{next(_ids)}-"
        self._seq = itertools.count(1)
        self._pending: dict[str, _Waiting] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_write = 0.0
        self._last_read = 0.0
        self._resending = False  # pending frames were written to a connection that died
        self.generation = 0  # bumped on every failure: transactions begun before it are gone
        self.last_failure: str | None = None
        # subscription id -> (SUBSCRIBE builder, its outcome callback), kept across reconnects
        self._standing: dict[str, tuple[FrameBuilder, OutcomeCallback]] = {}
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self.on_message: MessageHandler | None = None
        self._outgoing: list[bytes] = []  # written at the end of this event loop turn

    # -- state ---------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._writer is not None

    @property
    def in_backoff(self) -> bool:
        return (
            self._writer is None
            and self._connecting is None
            and (time.monotonic() < self._down_until)
            # Another session reached the broker since this link failed: try again now.
            and not self._health.up.get(self.broker, False)
        )

    def has_capacity(self) -> bool:
        return len(self._pending) < self._max_inflight

    async def wait_capacity(self) -> None:
        while not self.has_capacity():
            self._capacity.clear()
            await self._capacity.wait()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted frame has an outcome."""
        if not self._pending:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # -- sending -------------------------------------------------------------

    def submit(
        self,
        build: FrameBuilder,
        on_done: OutcomeCallback,
        *,
        resendable: bool = True,
        label: str | None = None,
    ) -> None:
        """Send the frame ``build(receipt_id)``; ``on_done`` gets its outcome once.

        ``resendable`` frames survive a lost connection: they are written again on
        the next endpoint that accepts us (active/standby failover). Frames of a
        transaction are not: the broker rolled the transaction back with the connection.
        """
        if self._refused is not None:
            on_done(self._refused)
            return
        if self.in_backoff:
            on_done(f"{self.broker} unavailable: {self.last_failure}")
            return
        receipt_id = f"{self._prefix}{next(self._seq)}"
        payload = build(receipt_id)
        self._pending[receipt_id] = _Waiting(payload, on_done, resendable, label)
        self._idle.clear()
        if self._writer is not None:
            self._write(payload)
        elif self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())

    def _write(self, payload: bytes) -> None:
        """Queue ``payload``; what one turn of the event loop queues goes out in one write
        (a burst of copies was one syscall and one TLS record per frame)."""
        assert self._writer is not None
        self._outgoing.append(payload)
        if len(self._outgoing) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        self._last_write = time.monotonic()

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if outgoing and self._writer is not None:
            self._writer.write(b"".join(outgoing))

    # -- consuming -------------------------------------------------------------

    def subscribe(self, sub_id: str, build: FrameBuilder, on_done: OutcomeCallback) -> None:
        """Keep subscription ``sub_id`` open on every connection; ``on_done`` per attempt."""
        if self._refused is not None:
            on_done(self._refused)  # this producer may not reach Amazon MQ at all
            return
        self._standing[sub_id] = (build, on_done)
        if self._writer is not None:
            self._write_standing(sub_id, build, on_done)
        elif self._connecting is None and not self._closed:
            if self.in_backoff:
                self._schedule_retry()
            else:
                self._connecting = asyncio.create_task(self._connect())

    def unsubscribe(self, sub_id: str, build: FrameBuilder, on_done: OutcomeCallback) -> None:
        """End a standing subscription (``build`` makes the UNSUBSCRIBE frame)."""
        if self._standing.pop(sub_id, None) is None or self._writer is None:
            on_done(None)  # nothing open on the broker: nothing to undo
            return
        self.submit(build, on_done, resendable=False)

    def _write_standing(self, sub_id: str, build: FrameBuilder, on_done: OutcomeCallback) -> None:
        receipt_id = f"{self._prefix}{next(self._seq)}"
        payload = build(receipt_id)
        self._pending[receipt_id] = _Waiting(payload, on_done, False, sub_id)
        self._idle.clear()
        self._write(payload)

    def _schedule_retry(self) -> None:
        """While subscriptions stand, come back after the back-off and connect again."""
        if self._retry is not None or self._closed:
            return
        delay = max(0.0, self._down_until - time.monotonic())
        self._retry = asyncio.get_running_loop().call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        idle = self._writer is None and self._connecting is None
        if self._standing and idle and not self._closed:
            self._connecting = asyncio.create_task(self._connect())

    # -- connection lifecycle -------------------------------------------------

    async def _connect(self) -> None:
        failure = "no endpoint configured"
        try:
            # After a failure, ask AWS again: the broker may have new endpoints.
            config = await resolve_endpoints(self._config, fresh=self.generation > 0)
        except BrokerUnavailable as exc:
            self._connecting = None
            self._fail(exc.reason)
            return
        try:
            # Read on every connect (a file or Secrets Manager), so a rotation is picked up.
            credentials = config.credentials if self._login is None else self._login.credentials
            username, password = (
                await asyncio.to_thread(credentials.resolve) if credentials else ("", "")
            )
        except Exception as exc:  # credentials errors carry an operator-facing reason
            self._connecting = None
            self._fail(f"credentials{self._whose}: {exc}")
            return
        for endpoint in config.endpoints:
            try:
                reader, writer = await open_stream(
                    self.broker, endpoint, config.ca_file, self._connect_timeout
                )
            except BrokerUnavailable as exc:
                failure = exc.reason
                continue
            try:
                parser, heartbeat = await self._handshake(
                    reader, writer, endpoint.host, username, password
                )
            except BrokerUnavailable as exc:
                failure = exc.reason
                writer.close()
                continue
            self._writer = writer
            self._connecting = None
            self._backoff = self._backoff_initial
            self._health.mark_up(self.broker, str(endpoint))
            if self._resending:
                # These may already be stored on the endpoint that died: say so, for dedup.
                self._resending = False
                for waiting in self._pending.values():
                    self._health.facts.emit(
                        Fact.MESSAGE_RESENT,
                        trace_id=waiting.label,
                        broker=self.broker,
                        endpoint=str(endpoint),
                    )
            self._last_read = self._last_write = time.monotonic()
            self._reader_task = asyncio.create_task(self._read(reader, parser))
            if heartbeat != (0, 0):
                self._heartbeat_task = asyncio.create_task(self._heartbeats(*heartbeat))
            earlier = list(self._pending.values())
            for sub_id, (build, on_done) in self._standing.items():
                self._write_standing(sub_id, build, on_done)
            for waiting in earlier:
                self._write(waiting.payload)
            return
        self._connecting = None
        self._fail(failure)

    async def _handshake(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        username: str,
        password: str,
    ) -> tuple[FrameParser, tuple[float, float]]:
        wanted = self._config.heartbeat_ms
        headers = [
            # The client's own version, so its frames can be forwarded without re-escaping.
            ("accept-version", self._version),
            ("host", host),
            ("heart-beat", f"{wanted},{wanted}"),
        ]
        if username:
            headers += [("login", username), ("passcode", password)]
        answer, parser = await exchange_connect(
            self.broker,
            reader,
            writer,
            headers,
            timeout=self._connect_timeout,
            limits=self._limits,
        )
        return parser, self._accept(answer, parser)

    def _accept(self, frame: Frame, parser: FrameParser) -> tuple[float, float]:
        if frame.command != "CONNECTED":
            message = frame.get("message") or frame.command
            raise BrokerUnavailable(self.broker, f"login refused{self._whose}: {message}")
        parser.version = frame.get("version") or "1.0"
        server_x, _, server_y = (frame.get("heart-beat") or "0,0").partition(",")
        wanted = self._config.heartbeat_ms
        try:
            sx, sy = int(server_x), int(server_y or 0)
        except ValueError:
            sx = sy = 0
        send_every = max(wanted, sy) / 1000 if wanted and sy else 0.0
        expect_every = max(wanted, sx) / 1000 if wanted and sx else 0.0
        return send_every, expect_every

    async def _read(self, reader: asyncio.StreamReader, parser: FrameParser) -> None:
        reason = "connection closed by broker"
        cancelled = False
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self._last_read = time.monotonic()
                for event in parser.feed(data):
                    if not isinstance(event, Frame):
                        continue
                    if event.command == "MESSAGE":
                        handler = self.on_message
                        waiting = handler(event, self.generation) if handler else None
                        if waiting is not None:
                            await waiting
                    elif event.command == "RECEIPT":
                        self._resolve(event.get("receipt-id") or "", None)
                    elif event.command == "ERROR":
                        reason = f"ERROR: {event.get('message') or 'no message'}"
                        failed = event.get("receipt-id")
                        if failed is not None:
                            self._resolve(failed, reason)
                        return
        except asyncio.CancelledError:
            # Whoever cancelled us (a drop, a close) already handles the connection and
            # its frames: dropping again here would fail frames meant to be resent.
            cancelled = True
            raise
        except (OSError, ProtocolError) as exc:
            reason = exc.reason if isinstance(exc, ProtocolError) else describe_os_error(exc)
        finally:
            if self._reader_task is asyncio.current_task():
                self._reader_task = None
            if not cancelled:
                self._drop_connection(reason)

    async def _heartbeats(self, send_every: float, expect_every: float) -> None:
        tick = min(x for x in (send_every, expect_every) if x) / 2
        while self._writer is not None:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if send_every and now - self._last_write >= send_every:
                self._write(b"\n")
            if expect_every and now - self._last_read > 2 * expect_every + 1:
                self._drop_connection("no heart-beat from broker")
                return

    def _resolve(self, receipt_id: str, failure: str | None) -> None:
        waiting = self._pending.pop(receipt_id, None)
        if waiting is None:
            return
        self._after_pop()
        waiting.on_done(failure)

    def _after_pop(self) -> None:
        if len(self._pending) < self._max_inflight:
            self._capacity.set()
        if not self._pending:
            self._idle.set()

    def _drop_connection(self, reason: str) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self._heartbeat_task is not None and self._heartbeat_task is not asyncio.current_task():
            self._heartbeat_task.cancel()
        self._heartbeat_task = None
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
            self._reader_task = None
        if writer is not None and (
            self._standing or any(w.resendable for w in self._pending.values())
        ):
            # A live connection was lost: try the endpoints again right away (the standby
            # may have taken over) and resend what has no receipt yet; only if that fails
            # do the frames fail (and fall back or get rejected by the session).
            self.generation += 1
            self.last_failure = reason
            self._health.mark_down(self.broker, reason)
            for receipt_id in [r for r, w in self._pending.items() if not w.resendable]:
                self._resolve(receipt_id, reason)
            self._resending = True
            if self._connecting is None:
                self._connecting = asyncio.create_task(self._connect())
            return
        if writer is not None or self._pending:
            self._fail(reason)

    def _fail(self, reason: str) -> None:
        self._resending = False
        self.generation += 1
        self.last_failure = reason
        jitter = random.uniform(0.8, 1.2)
        self._down_until = time.monotonic() + self._backoff * jitter
        self._backoff = min(self._backoff * 2, self._backoff_max)
        self._health.mark_down(self.broker, reason)
        pending, self._pending = self._pending, {}
        self._capacity.set()
        self._idle.set()
        for waiting in pending.values():
            waiting.on_done(reason)
        if self._standing:
            self._schedule_retry()

    async def close(self, *, graceful: bool) -> None:
        """Close the link; ``graceful`` sends DISCONNECT first (spec: "DISCONNECT")."""
        self._closed = True
        self._standing.clear()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        self._flush()  # what is queued goes before DISCONNECT
        writer = self._writer
        if writer is not None and graceful:
            with contextlib.suppress(OSError):
                writer.write(b"DISCONNECT\n\n\0")
                await writer.drain()
        self._writer = None
        for task in (self._reader_task, self._heartbeat_task):
            if task is not None:
                task.cancel()
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            waiting.on_done("session closed before the broker confirmed")
