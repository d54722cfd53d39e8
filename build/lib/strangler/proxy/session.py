"""One producer connection: codec + router + brokers + facts, wired together.

The client's CONNECT goes to legacy with the client's own credentials; the
session only proceeds when legacy answers CONNECTED, so nobody reaches Amazon
MQ (through the proxy's login) without a login legacy accepted.

Invariants:
- a RECEIPT reaches the client only after the broker responsible for that
  frame confirmed it: legacy receipts pass through; Amazon MQ receipts are the
  proxy's own and are turned into the client's receipt on confirmation;
- frames to legacy keep their order and their original bytes (plus a spliced
  trace header on SEND); nothing is re-encoded unless it must be;
- a frame that fails on Amazon MQ is sent to legacy (``on_failure: legacy``),
  answered with ERROR (``reject``), or, for a mirror copy, only recorded: it is
  never dropped silently;
- memory per session is bounded: the parsers enforce frame limits, the
  Amazon MQ link holds at most ``max_inflight`` frames, and both directions
  wait for the socket to drain (TCP back-pressure) after each read.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Awaitable
from typing import Any

from ..facts import Fact
from ..routes import Decision, Mode, OnFailure, decide_send
from ..stomp import (
    Event,
    Frame,
    FrameParser,
    Heartbeat,
    MalformedFrame,
    ProtocolError,
    encode_parts,
    error_frame,
    insert_header,
)
from ..upstream import BrokerLink, BrokerUnavailable, describe_os_error
from .connection import Connection, open_connection
from .consumer_side import ConsumerSide
from .context import ProxyContext
from .mirror_backlog import MirrorBacklog
from .transactions import Transaction, TransactionSide

LEGACY = "legacy"
AMAZONMQ = "amazonmq"
_session_ids = itertools.count(1)
_MAX_TRACKED_RECEIPTS = 100_000
_LINGER = 2.0  # seconds a client has to read an ERROR before its connection is closed
_LEGACY_HIGH_WATER = 512 * 1024  # bytes buffered for legacy before the producer is paused
_CLIENT_CLOSED = "client closed the connection"
# Trace ids: a random per-process prefix and a counter: unique across replicas and
# restarts without a urandom syscall per message (uuid4 was a measurable cost).
_TRACE_PREFIX = os.urandom(8).hex()
_trace_seq = itertools.count(1)


class FrameTimeout(ProtocolError):
    """The client began a frame and did not finish it in time."""


class SessionClosed(Exception):
    """Raised inside the client loop when the session was closed from elsewhere."""


class ClientSession:
    def __init__(self, ctx: ProxyContext, client: Connection) -> None:
        self.ctx = ctx
        self.id = f"s{next(_session_ids)}"
        self._client = client
        limits = ctx.settings.limits
        self._client_parser = FrameParser(limits)
        self._legacy_parser = FrameParser(limits)
        self._legacy: Connection | None = None
        # A frame the client began must end by this monotonic time (slowloris guard).
        self._frame_deadline: float | None = None
        self._frame_timer: asyncio.TimerHandle | None = None
        # While one read's worth of client frames is handled, writes to legacy are
        # gathered and sent with one write call (one syscall) instead of one per frame.
        self._legacy_batch: list[bytes] | None = None
        self._link: BrokerLink | None = None
        self._login: str | None = None  # the CONNECT login legacy accepted
        self.version = "1.0"
        # client receipt id -> (trace id, rule, monotonic send time), for the confirmed fact
        self._legacy_receipts: dict[str, tuple[str, str, float]] = {}
        self._closed = False
        self._error_sent = False  # an ERROR went to the client: close gently (_close_client)
        self._lingering = False
        self._connected = False  # CONNECTED reached the client: a client_connected fact exists
        self._close_reason = _CLIENT_CLOSED
        self._done = asyncio.Event()
        self._receipts_settled: asyncio.Event | None = None  # set while draining for shutdown
        self.consumers = ConsumerSide(self)
        self.transactions = TransactionSide(self)
        self._mirror_backlog = MirrorBacklog(
            ctx.mirror_budget,
            lambda frame, trace, decision: self._submit_mirror(frame, trace, decision, None),
            self._mirror_failed,
        )
        self.sent = 0
        peer = client.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    # -- lifecycle ------------------------------------------------------------

    async def run(self) -> None:
        pump: asyncio.Task[None] | None = None
        if self.ctx.tap is not None:
            self.ctx.tap.opened(self.id, self._peer)
        try:
            pending = await self._handshake()
            if pending is None:
                return
            pump = asyncio.create_task(self._pump_legacy())
            await self._serve(pending)
        except ProtocolError as exc:
            self.emit(Fact.CLIENT_PROTOCOL_ERROR, reason=exc.reason)
            self._close_reason = f"protocol error: {exc.reason}"
            self.send_error(error_frame(exc.reason))
        except SessionClosed:
            pass
        except (OSError, TimeoutError) as exc:
            self._close_reason = f"client connection: {describe_os_error(exc)}"
        finally:
            await self._shutdown(pump)

    async def _shutdown(self, pump: asyncio.Task[None] | None) -> None:
        await self.consumers.close()
        # Let Amazon MQ outcomes settle so facts (and fallbacks) are complete.
        if self._link is not None:
            if not self._closed:
                await self._mirror_backlog.wait_empty(self.ctx.settings.drain_timeout)
                await self._link.wait_idle(self.ctx.settings.drain_timeout)
            await self._mirror_backlog.close("session closed before the copy was sent")
            await self._link.close(graceful=not self._closed)
        self._closed = True
        if pump is not None and not pump.done():
            # Give legacy a moment to answer what was forwarded (e.g. a DISCONNECT receipt).
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(pump), timeout=1.0)
            pump.cancel()
        if self._legacy is not None:
            with contextlib.suppress(Exception):
                self._legacy.close()
        if self._error_sent:
            self._close_client()  # half-closed: the client reads the ERROR, then closes
            await self._discard_client_input()
        with contextlib.suppress(Exception):
            self._client.close()
        if self.ctx.tap is not None:
            self.ctx.tap.closed(self.id)
        if self._connected:
            self.emit(Fact.CLIENT_DISCONNECTED, reason=self._close_reason, messages=self.sent)
        self._done.set()

    def abort(self, reason: str, to_client: bytes | None = None) -> None:
        """Close the session now (from any task); ``to_client`` is written first."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        if to_client is not None:
            self.send_error(to_client)
        if self._legacy is not None:
            with contextlib.suppress(Exception):
                self._legacy.close()
        self._close_client()

    def fell_back(self, rule: str) -> None:
        """A message of ``rule`` went to legacy after all: tell every session's consumers."""
        for listener in self.ctx.fallback_listeners:
            listener(rule)

    def send_error(self, data: bytes) -> None:
        """An ERROR frame for the client; its connection then closes gently (``_close_client``)."""
        self.write_client(data)
        self._error_sent = True

    def _close_client(self) -> None:
        """Close the client's connection; after an ERROR, half-close it and close it fully
        only after ``_LINGER`` seconds. Closing a socket with unread input resets the
        connection, and a reset can destroy the ERROR before the client has read it."""
        client = self._client
        if not self._error_sent:
            with contextlib.suppress(Exception):
                client.close()
            return
        if self._lingering:
            return
        self._lingering = True
        with contextlib.suppress(Exception):
            if client.can_write_eof():
                client.write_eof()
        asyncio.get_running_loop().call_later(_LINGER, client.close)

    async def _discard_client_input(self) -> None:
        """Read (and drop) what the client still sends until it closes, within ``_LINGER``."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_LINGER):
                while await self._client.read():
                    pass

    # -- handshake ------------------------------------------------------------

    async def _handshake(self) -> list[Event] | None:
        """CONNECT through legacy; the events the client sent after it, or None to stop."""
        settings = self.ctx.settings
        async with asyncio.timeout(settings.handshake_timeout):
            events = await self._read_until_frame(self._client, self._client_parser)
        if not events:
            self._close_reason = "client closed before CONNECT"
            return None
        connect = events.pop(0)
        assert isinstance(connect, Frame)
        if connect.command not in ("CONNECT", "STOMP"):
            raise MalformedFrame(f"expected CONNECT or STOMP, got {connect.command}")
        legacy = self.ctx.routes.table.brokers[LEGACY]
        try:
            self._legacy = await open_connection(
                LEGACY, legacy.endpoints[0], legacy.ca_file, settings.connect_timeout
            )
        except BrokerUnavailable as exc:
            self.ctx.health.mark_down(LEGACY, exc.reason)
            self.emit(Fact.CLIENT_REFUSED, reason=f"legacy unavailable: {exc.reason}")
            self.send_error(error_frame("legacy broker unavailable", exc.reason))
            return None
        self.ctx.health.mark_up(LEGACY, str(legacy.endpoints[0]))
        assert connect.raw is not None
        self._legacy.write(connect.raw)
        async with asyncio.timeout(settings.handshake_timeout):
            answer = await self._read_until_frame(self._legacy, self._legacy_parser)
        if not answer:
            self.emit(Fact.CLIENT_REFUSED, reason="legacy closed the connection at login")
            self.send_error(error_frame("legacy broker closed the connection at login"))
            return None
        reply = answer.pop(0)
        assert isinstance(reply, Frame) and reply.raw is not None
        self.write_client(reply.raw)
        for extra in answer:  # whatever legacy sent right behind CONNECTED
            self.write_client(extra.raw if isinstance(extra, Frame) and extra.raw else b"\n")
        if reply.command != "CONNECTED":
            self._error_sent = reply.command == "ERROR"
            self.emit(Fact.CLIENT_REFUSED, reason=reply.get("message") or reply.command)
            return None
        self.version = reply.get("version") or "1.0"
        self._client_parser.version = self._legacy_parser.version = self.version
        self._connected = True
        self._login = connect.get("login")
        table = self.ctx.routes.table
        amazonmq = table.brokers.get(AMAZONMQ)
        self.emit(
            Fact.CLIENT_CONNECTED,
            peer=self._peer,
            login=self._login,
            version=self.version,
            routes_version=table.version,
            # Which Amazon MQ login the session maps to (a source's name, never a secret).
            **(amazonmq.login_for(self._login).fact_fields() if amazonmq else {}),
        )
        return events

    async def _read_until_frame(self, conn: Connection, parser: FrameParser) -> list[Event]:
        """Events up to and including the first frame (heart-beats before it are dropped)."""
        events: list[Event] = []
        tap = self.ctx.tap if conn is self._client else None
        while True:
            data = await conn.read()
            if tap is not None and data:
                tap.from_client(self.id, data)
            if not data:
                return []
            events += parser.feed(data)
            while events and isinstance(events[0], Heartbeat):
                events.pop(0)
            if events:
                return events

    # -- client -> brokers ----------------------------------------------------

    async def _serve(self, events: list[Event]) -> None:
        """Handle what came with CONNECT, then every chunk as it arrives (``_on_client_data``)."""
        assert self._legacy is not None
        # Room for a few large frames in flight to legacy before the producer is paused:
        # at the 64 KiB default, every 64 KiB message stopped reading until legacy caught up.
        self._legacy.transport.set_write_buffer_limits(high=_LEGACY_HIGH_WATER)
        waiting = self._handle_client_events(events, 0)
        if waiting is not None:
            await waiting
        try:
            await self._client.serve(self._on_client_data)
        finally:
            if self._frame_timer is not None:
                self._frame_timer.cancel()

    def _on_client_data(self, data: bytes) -> Awaitable[None] | None:
        """One chunk from the client, handled in ``data_received``; an awaitable pauses
        reading the client until it is done."""
        if self.ctx.tap is not None:
            self.ctx.tap.from_client(self.id, data)
        return self._handle_client_events(self._client_parser.feed(data), 0)

    def _handle_client_events(self, events: list[Event], start: int) -> Awaitable[None] | None:
        waiting, resume = self._handle_from(events, start)
        if waiting is None or resume is None:
            return waiting
        return self._then(waiting, events, resume)

    def _handle_from(
        self, events: list[Event], start: int
    ) -> tuple[Awaitable[None] | None, int | None]:
        """Handle ``events[start:]`` until one must be waited for: that wait and the index
        to go on from (None: the chunk is done). Writes to legacy go out as one batch."""
        self._legacy_batch = []
        for index in range(start, len(events)):
            if self._closed:
                raise SessionClosed
            waiting = self._on_client_event(events[index])
            if waiting is not None:
                self._flush_legacy()  # in order, before anything else can write
                self._legacy_batch = None
                return waiting, index + 1
        self._flush_legacy()
        self._legacy_batch = None
        if self._closed:
            raise SessionClosed
        self._watch_partial_frame()
        legacy = self._legacy
        assert legacy is not None
        if legacy.transport.get_write_buffer_size() > _LEGACY_HIGH_WATER:
            return legacy.drain(), None  # legacy is slow: stop reading the producer (TCP)
        return None, None

    async def _then(self, waiting: Awaitable[None], events: list[Event], start: int) -> None:
        """Wait, then go on with the rest of the chunk's events (which may wait again)."""
        resume: int | None = start
        while resume is not None:
            await waiting
            more, resume = self._handle_from(events, resume)
            if more is None:
                return
            waiting = more
        await waiting

    def _watch_partial_frame(self) -> None:
        """A frame under way must finish within ``frame_timeout`` (a slowloris never does)."""
        if not self._client_parser.buffered:
            self._frame_deadline = None
            if self._frame_timer is not None:
                self._frame_timer.cancel()
                self._frame_timer = None
            return
        if self._frame_deadline is None:
            self._frame_deadline = time.monotonic() + self.ctx.settings.frame_timeout
        if self._frame_timer is None:
            self._frame_timer = asyncio.get_running_loop().call_at(
                self._frame_deadline, self._frame_timed_out
            )

    def _frame_timed_out(self) -> None:
        self._frame_timer = None
        if self._client.waiting:  # not reading now: look again in a second
            loop = asyncio.get_running_loop()
            self._frame_timer = loop.call_later(1.0, self._frame_timed_out)
            return
        timeout = self.ctx.settings.frame_timeout
        self._client.fail(FrameTimeout(f"frame not completed within {timeout:g} seconds"))

    def write_legacy(self, data: bytes) -> None:
        batch = self._legacy_batch
        if batch is not None:
            batch.append(data)
        elif self._legacy is not None:
            self._legacy.write(data)

    def _flush_legacy(self) -> None:
        batch = self._legacy_batch
        if batch and self._legacy is not None:
            if len(batch) == 1:
                self._legacy.write(batch[0])
            else:  # uvloop writes the list with one writev: no joined copy of big frames
                self._legacy.writelines(batch)
            batch.clear()

    def _on_client_event(self, event: Event) -> Awaitable[None] | None:
        if not isinstance(event, Frame):
            self.write_legacy(b"\n")
            return None
        command = event.command
        if command == "SEND":
            return self._on_send(event)
        if command == "BEGIN":
            self.transactions.on_begin(event)
        elif command == "COMMIT":
            return self.transactions.on_commit(event)
        elif command == "ABORT":
            self.transactions.on_abort(event)
        elif command == "DISCONNECT":
            return self._on_disconnect(event)
        elif command in ("CONNECT", "STOMP"):
            raise MalformedFrame("CONNECT after the session is established")
        elif command == "SUBSCRIBE":
            self.consumers.on_subscribe(event)
        elif command in ("ACK", "NACK"):
            if self.consumers.book:
                self.consumers.on_ack(event)
            else:
                assert event.raw is not None
                self.write_legacy(event.raw)
        elif command == "UNSUBSCRIBE":
            self.consumers.on_unsubscribe(event)
        elif command in ("CONNECTED", "MESSAGE", "RECEIPT", "ERROR"):
            raise MalformedFrame(f"{command} is a server frame")
        else:  # not a STOMP command: legacy answers it as it always did
            assert event.raw is not None
            self.write_legacy(event.raw)
        return None

    def _on_send(self, frame: Frame) -> Awaitable[None] | None:
        destination = frame.get("destination")
        if not destination:
            raise MalformedFrame("SEND frame has no destination header")
        tx_id = frame.get("transaction")
        tx = self.transactions.get(tx_id)
        table = tx.table if tx is not None else self.ctx.routes.table
        trace_header = table.trace_header
        raw = frame.raw
        assert raw is not None
        trace = frame.get(trace_header)
        if trace is None:
            trace = f"{_TRACE_PREFIX}{next(_trace_seq):08x}"
            raw = insert_header(raw, trace_header, trace, self.version)
        decision = decide_send(table, destination, frame.get, trace)
        dry_run = decision.dry_run or self.ctx.settings.dry_run
        to_amazonmq = AMAZONMQ in decision.targets and not dry_run
        self.sent += 1
        receipt = frame.get("receipt")
        self.emit(
            Fact.MESSAGE_ROUTED,
            trace_id=trace,
            destination=destination,
            rule=decision.rule,
            mode=decision.mode,
            targets=decision.targets if to_amazonmq else (LEGACY,),
            primary=decision.primary if to_amazonmq else LEGACY,
            would_target=decision.targets if dry_run else None,
            dry_run=dry_run,
            routes_version=decision.routes_version,
            transaction=tx_id,
            receipt=receipt is not None,
        )
        if not to_amazonmq:
            self.send_legacy(raw, trace, decision.rule, receipt)
            return None
        if decision.mode is Mode.MIRROR:
            self.send_legacy(raw, trace, decision.rule, receipt)
            self._send_mirror(frame, trace, decision, tx)
            return None
        return self._send_amazonmq(frame, raw, trace, decision, receipt, tx)

    def send_legacy(self, raw: bytes, trace: str, rule: str, receipt: str | None) -> None:
        if self._legacy is None or self._closed:
            return
        if receipt is not None and len(self._legacy_receipts) < _MAX_TRACKED_RECEIPTS:
            self._legacy_receipts[receipt] = (trace, rule, time.monotonic())
        self.write_legacy(raw)

    def amazonmq_frame(
        self, frame: Frame, trace: str, decision: Decision, receipt_id: str
    ) -> bytes:
        """The SEND for Amazon MQ: our receipt id, the target name, the trace header."""
        trace_header = self.ctx.routes.table.trace_header
        headers: list[tuple[str, str]] = [("receipt", receipt_id)]
        if frame.get(trace_header) is None:
            headers.append((trace_header, trace))
        renamed = False
        for name, value in frame.headers:
            if name == "receipt":
                continue
            if name == "destination" and not renamed:
                renamed = True
                value = decision.amazonmq_destination or value
            headers.append((name, value))
        return encode_parts("SEND", tuple(headers), frame.body, self.version)

    def amazonmq(self) -> BrokerLink:
        if self._link is None:
            settings = self.ctx.settings
            config = self.ctx.routes.table.brokers[AMAZONMQ]
            self._link = BrokerLink(
                AMAZONMQ,
                config,
                self.version,
                self.ctx.health,
                limits=settings.limits,
                max_inflight=settings.max_inflight,
                connect_timeout=settings.connect_timeout,
                # Shared, mapped from the legacy login, or refused (client_credentials).
                login=config.login_for(self._login),
            )
            self._link.on_message = self.consumers.on_amazonmq_message
        return self._link

    def _send_mirror(
        self, frame: Frame, trace: str, decision: Decision, tx: Transaction | None
    ) -> None:
        """A copy for Amazon MQ that never delays the client: failures are facts only."""
        link = self.amazonmq()
        if tx is None and (self._mirror_backlog or not link.has_capacity()):
            self._mirror_backlog.add(link, frame, trace, decision)  # waits for room, in order
            return
        if not link.has_capacity():  # a transaction's copy must go out before its COMMIT
            self._mirror_failed(trace, decision.rule, "mirror backlog full")
            return
        self._submit_mirror(frame, trace, decision, tx)

    def _mirror_failed(self, trace: str, rule: str, reason: str) -> None:
        self.emit(Fact.MESSAGE_MIRROR_FAILED, trace_id=trace, rule=rule, reason=reason)

    def _submit_mirror(
        self, frame: Frame, trace: str, decision: Decision, tx: Transaction | None
    ) -> None:
        link = self.amazonmq()
        rule = decision.rule
        if tx is not None:
            self.transactions.begin_on_amazonmq(tx, link)
            tx.mirror_traces[trace] = rule
        started = time.monotonic()

        def done(failure: str | None) -> None:
            if failure is None:
                self.amazonmq_confirmed(trace, rule, "mirror", started)
            elif tx is None or tx.mirror_traces.pop(trace, None) is not None:
                self.emit(Fact.MESSAGE_MIRROR_FAILED, trace_id=trace, rule=rule, reason=failure)

        link.submit(
            lambda rid: self.amazonmq_frame(frame, trace, decision, rid),
            done,
            resendable=tx is None,
            label=trace,
        )

    async def _send_amazonmq(
        self,
        frame: Frame,
        raw: bytes,
        trace: str,
        decision: Decision,
        receipt: str | None,
        tx: Transaction | None,
    ) -> None:
        """Amazon MQ is responsible (cutover, or split choosing it)."""
        link = self.amazonmq()
        await link.wait_capacity()
        if tx is not None:
            self.transactions.send_moved(frame, raw, trace, decision, receipt, tx, link)
            return
        started = time.monotonic()

        def done(failure: str | None) -> None:
            if failure is None:
                self.amazonmq_confirmed(trace, decision.rule, "primary", started, receipt)
            else:
                self._fail_primary(raw, trace, decision, receipt, failure)

        link.submit(lambda rid: self.amazonmq_frame(frame, trace, decision, rid), done, label=trace)

    def amazonmq_confirmed(
        self,
        trace: str,
        rule: str,
        role: str,
        started: float,
        receipt: str | None = None,
        **extra: Any,
    ) -> None:
        """Amazon MQ confirmed a frame: the fact, then the producer's receipt if it asked."""
        self.emit(
            Fact.MESSAGE_CONFIRMED,
            trace_id=trace,
            rule=rule,
            broker=AMAZONMQ,
            role=role,
            latency_ms=_ms_since(started),
            **extra,
        )
        if receipt is not None:
            self.write_client(self.receipt(receipt))

    def _fail_primary(
        self, raw: bytes, trace: str, decision: Decision, receipt: str | None, reason: str
    ) -> None:
        if decision.on_failure is OnFailure.LEGACY and not self._closed:
            self.emit(
                Fact.MESSAGE_FELL_BACK, trace_id=trace, rule=decision.rule, reason=reason, to=LEGACY
            )
            self.send_legacy(raw, trace, decision.rule, receipt)
            self.fell_back(decision.rule)
            return
        self.emit(Fact.MESSAGE_REJECTED, trace_id=trace, rule=decision.rule, reason=reason)
        if not self._closed:
            message = f"message {trace} not accepted: {AMAZONMQ} unavailable"
            self.abort(f"rejected: {reason}", error_frame(message, reason, receipt_id=receipt))

    # -- end of session ---------------------------------------------------------

    async def _on_disconnect(self, frame: Frame) -> None:
        """Settle Amazon MQ first (fallbacks must reach legacy before DISCONNECT)."""
        if self._link is not None:
            await self._mirror_backlog.wait_empty(self.ctx.settings.drain_timeout)
            await self._link.wait_idle(self.ctx.settings.drain_timeout)
            await self._link.close(graceful=True)
        self._close_reason = "client DISCONNECT"
        assert self._legacy is not None and frame.raw is not None
        self.write_legacy(frame.raw)
        await self._legacy.drain()

    # -- legacy -> client -------------------------------------------------------

    async def _pump_legacy(self) -> None:
        legacy = self._legacy
        assert legacy is not None
        try:
            await legacy.serve(self._on_legacy_data)
        except ProtocolError as exc:
            self.emit(Fact.BROKER_UNAVAILABLE, broker=LEGACY, reason=f"protocol: {exc.reason}")
        except OSError:
            pass
        finally:
            self._on_legacy_closed()

    def _on_legacy_data(self, data: bytes) -> Awaitable[None] | None:
        """One chunk from legacy, in ``data_received``: one write to the client (MESSAGE
        bursts reach it in few syscalls); an awaitable while the client is behind."""
        consumers = self.consumers
        out: list[bytes] = []
        for event in self._legacy_parser.feed(data):
            if not isinstance(event, Frame):
                out.append(b"\n")
            elif event.command == "RECEIPT":
                if self._on_legacy_receipt(event):
                    assert event.raw is not None
                    out.append(event.raw)
            elif (
                event.command == "MESSAGE"
                and consumers.book
                and not consumers.on_legacy_message(event)
            ):
                continue  # the proxy's own (a backlog check)
            else:
                if event.command == "ERROR":
                    self._on_legacy_error(event)
                    self._error_sent = True
                assert event.raw is not None
                out.append(event.raw)
        if not out:
            return None
        return self.deliver(out[0] if len(out) == 1 else b"".join(out))

    def _on_legacy_receipt(self, frame: Frame) -> bool:
        """Record what legacy confirmed; True when the RECEIPT is the client's to see."""
        receipt = frame.get("receipt-id") or ""
        if not self.transactions.on_legacy_receipt(receipt):
            return False
        sent = self._legacy_receipts.pop(receipt, None)
        if self._receipts_settled is not None and not self._legacy_receipts:
            self._receipts_settled.set()
        if sent is not None:
            trace, rule, started = sent
            self.emit(
                Fact.MESSAGE_CONFIRMED,
                trace_id=trace,
                rule=rule,
                broker=LEGACY,
                latency_ms=_ms_since(started),
            )
        return True

    def _on_legacy_error(self, frame: Frame) -> None:
        self.transactions.legacy_failed(frame.get("message"))
        self._close_reason = f"legacy ERROR: {frame.get('message')}"

    def _on_legacy_closed(self) -> None:
        self.transactions.legacy_failed("legacy connection closed before confirming COMMIT")
        if not self._closed:
            self.abort(
                self._close_reason
                if self._close_reason != _CLIENT_CLOSED
                else "legacy closed the connection"
            )

    # -- small pieces -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def link(self) -> BrokerLink | None:
        """The Amazon MQ link, if the session opened one (``amazonmq()`` opens it)."""
        return self._link

    def receipt(self, receipt_id: str) -> bytes:
        return encode_parts("RECEIPT", (("receipt-id", receipt_id),), b"", self.version)

    def write_client(self, data: bytes) -> None:
        with contextlib.suppress(Exception):
            if not self._client.is_closing():
                self._client.write(data)
                if self.ctx.tap is not None:
                    self.ctx.tap.to_client(self.id, data)

    def emit(self, fact: Fact, **fields: Any) -> None:
        self.ctx.facts.emit(fact, session=self.id, **fields)

    def deliver(self, data: bytes) -> Awaitable[None] | None:
        """Bytes for the client (legacy's frames, Amazon MQ's MESSAGEs); an awaitable while
        the client is behind."""
        self.write_client(data)
        client = self._client
        if (
            client.transport.get_write_buffer_size()
            <= client.transport.get_write_buffer_limits()[1]
        ):
            return None
        return self._wait_client()

    async def _wait_client(self) -> None:
        timeout = self.ctx.settings.write_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._client.drain()
        except TimeoutError:
            self.emit(Fact.CLIENT_PROTOCOL_ERROR, reason="client stopped reading")
            self._client.transport.abort()
            self.abort(f"client read nothing for {timeout:g} seconds")
        except (OSError, RuntimeError):
            pass  # the client is gone: the session is closing

    def close_now(self, reason: str) -> None:
        self.abort(reason)

    async def drain_and_close(self, timeout: float) -> None:
        """Shutdown: let outstanding receipts arrive (within ``timeout``), then close."""
        deadline = time.monotonic() + timeout
        if self._link is not None:
            await self._mirror_backlog.wait_empty(timeout)
            await self._link.wait_idle(max(0.0, deadline - time.monotonic()))
        if self._legacy_receipts:
            self._receipts_settled = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._receipts_settled.wait()
        self.abort("proxy shutting down")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                await self._done.wait()

    async def wait_closed(self) -> None:
        await self._done.wait()


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
