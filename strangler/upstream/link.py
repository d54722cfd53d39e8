"""A session's own connection to a broker the proxy logs in to (Amazon MQ).

The proxy, not the producer, owns this connection: it logs in with the proxy's
credentials (or, given a ``SessionLogin``, those mapped from the producer's legacy
login), puts its own receipt on every frame it sends, and reports each frame's outcome
exactly once through ``on_outcome(token, failure, possibly_stored)`` (failure None =
the broker confirmed it).

Invariants:
- frames are written in submit order, including those submitted while the connection
  is being opened; the receipt header goes first (the broker keeps the first of
  repeated headers, so a producer's own ``receipt`` behind it is ignored);
- the broker handles a connection's frames in order, so a RECEIPT confirms its frame
  and every frame written before it on that connection: a batchable frame (a mirror
  copy, a primary whose producer asked no receipt) gets no receipt of its own when a
  later frame of the same write has one. Batchable frames are held back (not written)
  until a frame that is not batchable comes, ``batch_delay`` seconds pass or
  ``MAX_BATCH`` of them wait; then they go out in one write with a receipt on the last.
  A stream of copies so costs one write and one receipt per batch, and each is written
  within ``batch_delay`` of its submit; an ERROR naming a receipt fails that frame
  (those before it were confirmed); a lost connection leaves every unconfirmed frame
  unconfirmed (resent, or failed ``possibly_stored``); after an ERROR that names no
  receipt, the frames resent each carry their own receipt until all of them are
  answered, so a frame the broker refused is found, not resent for ever;
- ``possibly_stored`` is true exactly when the frame had been written to a connection
  and no answer for it came (it may be stored there); a frame the broker refused with an
  ERROR naming its receipt, or one never written (queued or held back), is not;
- when a live connection is lost, resendable frames are written again on the next
  endpoint that accepts us (active/standby failover, ``message_resent`` facts), the
  rest fail; if no endpoint accepts, everything fails and the link stays down for a
  back-off during which submits fail at once (a dead Amazon MQ costs a producer nothing
  but the fallback); the back-off ends early once the broker is seen up again
  (another session, or the proxy's probe: ``BrokerHealth``);
- ``drop`` (a hung connection: the session saw a deadline pass) fails every frame now,
  without resending;
- subscriptions are standing: written again after every (re)connect, and while any
  exists the link reconnects by itself after the back-off. MESSAGE frames go to
  ``on_message``; the broker redelivers what was unacknowledged on a lost connection;
- credentials are resolved on every connect (a rotated secret is picked up);
- a refused ``SessionLogin`` never connects: every submit fails at once with its
  reason, and broker health is left alone (Amazon MQ is not down).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..facts import Fact
from ..routes import BrokerConfig, SessionLogin
from ..stomp import Frame, FrameParser, Limits, ProtocolError
from ..stomp.connection import negotiate_heartbeat, parse_heartbeat
from .credentials import resolve_credentials
from .discovery import resolve_endpoints
from .errors import BrokerUnavailable, describe_os_error
from .health import BrokerHealth
from .transport import exchange_connect, open_stream

OutcomeHandler = Callable[[str, str | None, bool], None]  # token, failure, possibly_stored
MessageHandler = Callable[[Frame], None]
SubscribedHandler = Callable[[str, str | None], None]  # sub id, failure
LostHandler = Callable[[str], None]

_ids = itertools.count(1)
_READ_SIZE = 65536
# Batchable frames held back together at most, so what a lost connection leaves to
# resend stays small.
MAX_BATCH = 64
# How long a batchable frame may wait for others to go out (and be confirmed) with it.
BATCH_DELAY = 0.002


@dataclass(slots=True)
class _Waiting:
    token: str
    payload: bytes  # the frame without a receipt header
    resendable: bool  # may be written again on a new connection (not part of a transaction)
    label: str | None  # the message's trace id, for the resent fact
    written: bool = False
    subscription: str | None = None  # a standing SUBSCRIBE's id
    # May go without a receipt of its own: a later frame's receipt confirms it (the
    # broker handles a connection's frames in order).
    batch: bool = False
    receipt: bytes | None = None  # the receipt id it was last written with


def _ignore_outcome(token: str, failure: str | None, stored: bool) -> None:
    pass


class BrokerLink:
    def __init__(
        self,
        broker: str,
        config: BrokerConfig,
        version: str,
        health: BrokerHealth,
        *,
        limits: Limits,
        connect_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        login: SessionLogin | None = None,
        session: str | None = None,
        batch_delay: float = BATCH_DELAY,
    ) -> None:
        self.broker = broker
        self._batch_delay = batch_delay
        self._session = session  # the producer session this link serves, for its facts
        self._config = config
        # None: the config's own credentials (the proxy's), read again on every connect.
        self._login = login
        self._whose = login.whose if login is not None else ""
        self._refused = login.refused if login is not None else None
        self._version = version
        self._health = health
        self._limits = limits
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = backoff_initial
        self._down_until = 0.0
        self._prefix = f"strangler-{next(_ids)}-".encode()
        self._seq = itertools.count(1)
        # Every frame without an outcome, in the order written (or to be written): a
        # receipt confirms its frame and every frame before it.
        self._pending: deque[_Waiting] = deque()
        self._by_receipt: dict[bytes, _Waiting] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._last_write = 0.0
        self._last_read = 0.0
        self._resending = False  # pending frames were written to a connection that died
        # subscription id -> SUBSCRIBE without receipt, written again on every connection
        self._standing: dict[str, bytes] = {}
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self._reading = asyncio.Event()
        self._reading.set()
        self._outgoing: list[_Waiting] = []  # written at the end of this event loop turn
        # Batchable frames not written yet: they go out with the next frame that is not,
        # or together with a receipt on the last once ``_release`` runs.
        self._held: list[_Waiting] = []
        self._release_timer: asyncio.TimerHandle | None = None
        # After an ERROR naming no receipt, every frame gets its own receipt until this
        # one (the last frame resent) is answered: the refused frame is found.
        self._careful: _Waiting | None = None
        self._lost_by_error = False
        self.last_failure: str | None = None
        self.on_outcome: OutcomeHandler = _ignore_outcome
        self.on_message: MessageHandler = lambda frame: None
        self.on_subscribed: SubscribedHandler = lambda sub_id, failure: None
        self.on_lost: LostHandler = lambda reason: None

    # -- state ---------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._writer is not None

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def in_backoff(self) -> bool:
        return (
            self._writer is None
            and self._connecting is None
            and (time.monotonic() < self._down_until)
            # The broker was seen up since this link failed: try again now.
            and not self._health.up.get(self.broker, False)
        )

    # -- sending -------------------------------------------------------------

    def submit(
        self,
        token: str,
        payload: bytes,
        *,
        resendable: bool = True,
        label: str | None = None,
        batch: bool = False,
    ) -> None:
        """Send ``payload`` (a frame without receipt); its outcome comes as ``token``.

        ``batch``: the frame needs no receipt of its own when a later frame has one (a
        mirror copy, a primary whose producer asked none); it may be held back for up to
        ``batch_delay`` to go out with others."""
        if self._refused is not None:
            self.on_outcome(token, self._refused, False)
            return
        if self._closed:
            self.on_outcome(token, "session closed", False)
            return
        if self.in_backoff:
            self.on_outcome(token, f"{self.broker} unavailable: {self.last_failure}", False)
            return
        self._queue(_Waiting(token, payload, resendable, label, batch=batch))

    def _queue(self, waiting: _Waiting) -> None:
        self._pending.append(waiting)
        if self._writer is not None:
            self._write(waiting)
        elif self._connecting is None and not self._closed:
            self._connecting = asyncio.create_task(self._connect())

    def _write(self, waiting: _Waiting) -> None:
        """Queue a frame; what one turn of the event loop queues goes out in one write, or
        is held back with other batchable frames (a burst of copies was one syscall and
        one TLS record per frame)."""
        self._outgoing.append(waiting)
        if len(self._outgoing) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self, *, hold: bool = True) -> None:
        """Write the frames held back and this turn's. The receipt header goes first in
        each frame that gets one: every frame but a batchable one with a later receipt.
        ``hold``: when every frame is batchable, keep them back for ``batch_delay``."""
        outgoing, self._outgoing = self._outgoing, []
        if self._held:
            outgoing[:0] = self._held
            self._held = []
        if not outgoing or self._writer is None:
            return
        if (
            hold
            and self._batch_delay > 0
            and self._careful is None
            and len(outgoing) < MAX_BATCH
            and all(waiting.batch for waiting in outgoing)
        ):
            self._held = outgoing
            if self._release_timer is None:
                loop = asyncio.get_running_loop()
                self._release_timer = loop.call_later(self._batch_delay, self._release)
            return
        self._cancel_release()
        parts: list[bytes] = []
        later_receipt = False
        for waiting in reversed(outgoing):
            waiting.written = True
            payload = waiting.payload
            if waiting.batch and later_receipt and self._careful is None:
                waiting.receipt = None
                parts.append(payload)
                continue
            receipt = waiting.receipt = self._prefix + str(next(self._seq)).encode()
            self._by_receipt[receipt] = waiting
            nl = payload.index(b"\n") + 1
            parts.append(b"".join((payload[:nl], b"receipt:", receipt, b"\n", payload[nl:])))
            later_receipt = True
        parts.reverse()
        self._writer.write(b"".join(parts))
        self._last_write = time.monotonic()

    def _release(self) -> None:
        """The held frames waited long enough: write them, a receipt on the last."""
        self._release_timer = None
        self._flush(hold=False)

    def _cancel_release(self) -> None:
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None

    # -- consuming -------------------------------------------------------------

    def subscribe(self, sub_id: str, payload: bytes) -> None:
        """Keep subscription ``sub_id`` open on every connection; ``on_subscribed`` per
        attempt."""
        if self._refused is not None:
            self.on_subscribed(sub_id, self._refused)  # no Amazon MQ for this producer
            return
        self._standing[sub_id] = payload
        if self._writer is not None:
            self._write_standing(sub_id, payload)
        elif self._connecting is None and not self._closed:
            if self.in_backoff:
                self._schedule_retry()
            else:
                self._connecting = asyncio.create_task(self._connect())

    def unsubscribe(self, sub_id: str, token: str, payload: bytes) -> None:
        """End a standing subscription (``payload``: the UNSUBSCRIBE)."""
        if self._standing.pop(sub_id, None) is None or self._writer is None:
            self.on_outcome(token, None, False)  # nothing open on the broker: nothing to undo
            return
        self._queue(_Waiting(token, payload, False, None))

    def _write_standing(self, sub_id: str, payload: bytes) -> None:
        self._queue(_Waiting("", payload, False, None, subscription=sub_id))

    def pause_reading(self) -> None:
        """The client is behind: read no MESSAGE until ``resume_reading``."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

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
            config = await resolve_endpoints(self._config, fresh=self.last_failure is not None)
        except BrokerUnavailable as exc:
            self._connecting = None
            self._fail(exc.reason)
            return
        try:
            # Read on every connect (a file or Secrets Manager), so a rotation is picked up.
            credentials = config.credentials if self._login is None else self._login.credentials
            username, password = (
                await asyncio.to_thread(resolve_credentials, credentials)
                if credentials
                else ("", "")
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
            self._connected(reader, writer, parser, heartbeat, str(endpoint))
            return
        self._connecting = None
        self._fail(failure)

    def _connected(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: FrameParser,
        heartbeat: tuple[float, float],
        endpoint: str,
    ) -> None:
        self._writer = writer
        self._connecting = None
        self._backoff = self._backoff_initial
        self._health.mark_up(self.broker, endpoint)
        if self._resending:
            # These may already be stored on the endpoint that died: say so, for dedup.
            self._resending = False
            for waiting in self._pending:
                if waiting.label is not None:
                    self._health.facts.emit(
                        Fact.MESSAGE_RESENT,
                        session=self._session,
                        trace_id=waiting.label,
                        broker=self.broker,
                        endpoint=endpoint,
                    )
        self._last_read = self._last_write = time.monotonic()
        self._reader_task = asyncio.create_task(self._read(reader, parser))
        if heartbeat != (0, 0):
            self._heartbeat_task = asyncio.create_task(self._heartbeats(*heartbeat))
        # Write order is the order of outcomes: subscriptions first, then what waited.
        earlier, self._pending = self._pending, deque()
        self._by_receipt.clear()
        self._careful = earlier[-1] if self._lost_by_error and earlier else None
        self._lost_by_error = False
        for sub_id, payload in self._standing.items():
            self._write_standing(sub_id, payload)
        for waiting in earlier:
            self._pending.append(waiting)
            self._write(waiting)

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
        if answer.command != "CONNECTED":
            message = answer.get("message") or answer.command
            raise BrokerUnavailable(self.broker, f"login refused{self._whose}: {message}")
        parser.version = answer.get("version") or "1.0"
        beat = negotiate_heartbeat((wanted, wanted), parse_heartbeat(answer.get("heart-beat")))
        return parser, (beat.send_every, beat.expect_every)

    async def _read(self, reader: asyncio.StreamReader, parser: FrameParser) -> None:
        reason = "connection closed by broker"
        cancelled = False
        try:
            while True:
                await self._reading.wait()
                data = await reader.read(_READ_SIZE)
                if not data:
                    break
                self._last_read = time.monotonic()
                for event in parser.feed(data):
                    if not isinstance(event, Frame):
                        continue
                    if event.command == "MESSAGE":
                        self.on_message(event)
                    elif event.command == "RECEIPT":
                        self._answered((event.get("receipt-id") or "").encode(), None)
                    elif event.command == "ERROR":
                        reason = f"ERROR: {event.get('message') or 'no message'}"
                        refused = event.get("receipt-id")
                        if refused is not None:  # the broker refused that one frame
                            self._answered(refused.encode(), reason)
                        else:  # it may have refused a frame written without a receipt
                            self._lost_by_error = True
                        return
        except asyncio.CancelledError:
            # Whoever cancelled us (a drop, a close) already handles the connection and
            # its frames: dropping again here would fail frames meant to be resent.
            cancelled = True
            raise
        except (OSError, ProtocolError) as exc:
            reason = exc.reason if isinstance(exc, ProtocolError) else describe_os_error(exc)
        except Exception as exc:  # a bug, here or in a callback: the connection is dropped
            reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
            traceback.print_exception(exc)
            self._health.facts.emit(
                Fact.INTERNAL_ERROR,
                session=self._session,
                reason=reason,
                where=f"{self.broker} link: reading",
            )
        finally:
            if self._reader_task is asyncio.current_task():
                self._reader_task = None
            if not cancelled:
                self._lose_connection(reason)

    async def _heartbeats(self, send_every: float, expect_every: float) -> None:
        tick = min(x for x in (send_every, expect_every) if x) / 2
        while self._writer is not None:
            await asyncio.sleep(tick)  # a period, not a wait for something
            now = time.monotonic()
            if send_every and now - self._last_write >= send_every and self._writer is not None:
                self._writer.write(b"\n")
                self._last_write = now
            if expect_every and now - self._last_read > 2 * expect_every + 1:
                self._lose_connection("no heart-beat from broker")
                return

    def _answered(self, receipt: bytes, failure: str | None) -> None:
        """The broker answered the frame written with ``receipt``: it handled every frame
        written before it, in order, without an ERROR, so those are confirmed too."""
        waiting = self._by_receipt.pop(receipt, None)
        if waiting is None:
            return
        pending = self._pending
        while pending:
            earlier = pending.popleft()
            if earlier.receipt is not None:
                self._by_receipt.pop(earlier.receipt, None)
            if earlier is self._careful:
                self._careful = None
            if earlier is waiting:
                self._outcome(waiting, failure, False)
                return
            self._outcome(earlier, None, False)

    def _outcome(self, waiting: _Waiting, failure: str | None, stored: bool) -> None:
        if waiting.subscription is not None:
            self.on_subscribed(waiting.subscription, failure)
        else:
            self.on_outcome(waiting.token, failure, stored)

    def _stop_connection(self) -> bool:
        """Close the live connection (if any) and its tasks; True if there was one."""
        writer, self._writer = self._writer, None
        self._outgoing = []
        self._held = []
        self._cancel_release()
        if writer is not None:
            writer.close()
        current = asyncio.current_task()
        if self._heartbeat_task is not None and self._heartbeat_task is not current:
            self._heartbeat_task.cancel()
        self._heartbeat_task = None
        if self._reader_task is not None and self._reader_task is not current:
            self._reader_task.cancel()
        self._reader_task = None
        return writer is not None

    def _lose_connection(self, reason: str) -> None:
        had = self._stop_connection()
        if not had:
            if self._pending:
                self._fail(reason)
            return
        self.on_lost(reason)
        if self._closed:
            self._fail(reason)
            return
        if self._standing or any(w.resendable for w in self._pending):
            # A live connection was lost: try the endpoints again right away (the standby
            # may have taken over) and resend what has no receipt yet; only if that fails
            # do the frames fail (and fall back or get rejected by the session).
            self.last_failure = reason
            self._health.mark_down(self.broker, reason)
            self._by_receipt.clear()
            kept: deque[_Waiting] = deque()
            gone, self._pending = self._pending, kept
            for waiting in gone:
                if waiting.resendable:
                    kept.append(waiting)
                else:
                    self._outcome(waiting, reason, waiting.written)
            self._resending = bool(self._pending)
            if self._connecting is None:
                self._connecting = asyncio.create_task(self._connect())
            return
        self._fail(reason)

    def drop(self, reason: str) -> None:
        """The connection is hung (or the session gives up): every frame fails now."""
        had = self._stop_connection()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if had:
            self.on_lost(reason)
        self._fail(reason)

    def _fail(self, reason: str) -> None:
        self._resending = self._lost_by_error = False
        self.last_failure = reason
        jitter = random.uniform(0.8, 1.2)
        self._down_until = time.monotonic() + self._backoff * jitter
        self._backoff = min(self._backoff * 2, self._backoff_max)
        self._health.mark_down(self.broker, reason)
        pending, self._pending = self._pending, deque()
        self._by_receipt.clear()
        for waiting in pending:
            self._outcome(waiting, reason, waiting.written)
        if self._standing:
            self._schedule_retry()

    async def close(self, *, graceful: bool) -> None:
        """Close the link; ``graceful`` sends DISCONNECT first (spec: "DISCONNECT")."""
        self._closed = True
        self._standing.clear()
        self._reading.set()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        self._flush(hold=False)  # what is queued or held goes before DISCONNECT
        writer = self._writer
        if writer is not None and graceful:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(b"DISCONNECT\n\n\0")
                await writer.drain()
        self._writer = None
        for task in (self._reader_task, self._heartbeat_task):
            if task is not None:
                task.cancel()
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
                await writer.wait_closed()
        pending, self._pending = self._pending, deque()
        self._by_receipt.clear()
        for waiting in pending:
            if waiting.subscription is None:
                self.on_outcome(
                    waiting.token, "session closed before the broker confirmed", waiting.written
                )
