"""One producer session as a sans-I/O state machine: events in, commands out.

Each public method is an event (bytes from the client or legacy, an Amazon MQ outcome,
a timer, a routes change, shutdown) and returns the commands it leads to, in order.
Nothing here awaits or touches a socket: ``proxy/driver.py`` performs the commands and
feeds the answers back. The producer path, transactions and consumers are functions
over one ``SessionState`` (``core/producer.py``, ``transactions.py``, ``consumers.py``).

Lifecycle (``Phase``): AWAIT_CONNECT -> LOGGING_IN (CONNECT forwarded to legacy with
the client's own login) -> CONNECTED -> [DISCONNECTING] -> CLOSING -> ENDED. Nobody
reaches Amazon MQ without a login legacy accepted.

Invariants:
- what legacy wrote in one chunk reaches the client in one write (CONNECTED and its
  EOL together); a frame the proxy swallows (its own receipt, a backlog browse) takes
  the one EOL that follows it along;
- client frames are handled in order; while the core waits (login, Amazon MQ window,
  a COMMIT on Amazon MQ, DISCONNECT settling) they are held and the client is paused;
- frames read before a protocol error are handled first (as the broker would), then
  the client gets an ERROR naming the problem;
- the session ends only when every pending frame has an outcome: each has a deadline,
  and closing has a settle timer (``drain_timeout``), so nothing waits forever;
- an unexpected exception becomes ``internal_error``: a fact, every pending frame
  settled by its route's ``on_failure`` (in doubt), an ERROR, and the end.
"""

from __future__ import annotations

import contextlib
import time
from typing import Final, Literal

from ...facts import Fact
from ...stomp import HEARTBEAT, Frame, Heartbeat, ProtocolError, error_frame
from ...stomp.activemq import broker_value
from ...stomp.connection import RemoteProtocolError, missing_header
from ...stomp.native import FramePump, Pumped, PumpedFrame
from ..consumers import BROWSE_PREFIX
from ..context import ProxyContext
from ..traces import TraceIds
from . import consumers, producer, transactions
from .commands import (
    AnnounceFallback,
    CancelTimer,
    CloseAmazonMQ,
    CloseClient,
    Command,
    DropAmazonMQ,
    OpenLegacy,
    PauseClient,
    ResumeClient,
    SessionEnded,
    StartTimer,
)
from .state import (
    AMAZONMQ,
    BLOCKED_COMMIT,
    BLOCKED_WINDOW,
    CONNECT_FRAME_LIMIT,
    DESTINATION,
    LEGACY,
    LEGACY_FIELDS,
    OWN_TRACE,
    RECEIPT,
    RECEIPT_ID,
    SUBSCRIPTION,
    TRACEPARENT,
    TRANSACTION,
    Held,
    Kind,
    Phase,
    SessionState,
)

# Pending kinds whose failure may still need legacy (a fallback, the held COMMIT).
# Subscription ids the proxy gives legacy (browses, id-less 1.0 subscriptions).
PROXY_SUBSCRIPTIONS: Final = (BROWSE_PREFIX, consumers.INTERNAL_SUB)
_NEEDS_LEGACY: Final = frozenset({Kind.PRIMARY, Kind.MOVED, Kind.TX_BEGIN, Kind.TX_COMMIT})


class SessionCore:
    """The session's logic; ``state`` is public for tests and the driver's status."""

    def __init__(self, ctx: ProxyContext, session_id: str, peer: str, traces: TraceIds) -> None:
        self.state = SessionState(ctx, session_id, peer, traces)

    # -- start ------------------------------------------------------------------------

    def start(self) -> list[Command]:
        return [StartTimer("handshake", self.state.ctx.settings.handshake_timeout)]

    # -- the client -------------------------------------------------------------------

    def client_data(self, data: bytes) -> list[Command]:
        s = self.state
        if not s.client_open or s.error_sent or s.phase is Phase.ENDED:
            return []  # after an ERROR the client's input is read and dropped
        pump = s.client_pump
        # Nothing the session waits for: this read's frames go to _client_pumped (the
        # feed changes neither), and once connected the SENDs its hot path would pass
        # may pass in the pump already.
        direct = not s.held and s.blocked is None
        pump.passing = s.pass_through() if direct and s.phase is Phase.CONNECTED else None
        pumped = pump.feed(data)
        if pumped.frames or pumped.passed:
            s.frames_seen += 1
        self._account_buffer(pumped.frames)
        if pumped.error is not None and s.held_error is None:
            s.held_error = pumped.error.reason
        if s.phase is Phase.AWAIT_CONNECT:
            self._first_frames(pumped)
        elif not direct:
            s.held.extend(_held(pumped.data, pumped.frames, 0))
        else:
            self._client_pumped(pumped)
        self._drain_held()
        frames = pumped.frames
        s.reply_due = (
            direct
            and bool(frames)
            and frames[-1].values[RECEIPT] is not None
            and not pump.buffered
            and not s.held
            and s.blocked is None
            and not s.error_sent
            and s.phase is Phase.CONNECTED
        )
        return self._done()

    # -- when an ACK may wait for a reply (TCP_QUICKACK, see proxy/connection.py) --------

    def client_ack_may_wait(self) -> bool:
        """After a client read: its ACK may ride on the proxy's reply. A client with Nagle
        on holds its next small write until this read is acknowledged; the RECEIPT owed
        for the read's last frame does that within a round trip to the broker."""
        return self.state.reply_due

    def legacy_ack_may_wait(self) -> bool:
        """After a legacy read: legacy is owed no answer it could hold back behind an
        unacknowledged write (a broker with Nagle on): no receipt the proxy waits for, no
        subscription ever made (a consumer's session always acknowledges at once), no
        transaction, nothing held. The proxy's next write to legacy
        then carries the ACK, as a direct client's would."""
        s = self.state
        return (
            s.phase is Phase.CONNECTED
            and not s.legacy_receipts
            and not s.receipts.active
            and not s.subscribed
            and not s.transactions
            and not s.commit_receipts
            and not s.held
        )

    def _client_pumped(self, pumped: Pumped) -> None:
        """The hot path: one read's frames; legacy's bytes stay where they are in the
        pump's output unless a frame goes elsewhere; one write to legacy for the read."""
        s = self.state
        data = pumped.data
        frames = pumped.frames
        legacy = s.legacy_out
        passing = s.pass_through()
        receipted = s.passing_receipted
        record_from = s.ctx.facts.record_from
        now = time.time()  # the facts of one read share its time
        # SENDs the pump passed through (the read's first frames): in place, as below.
        for template, first, count in pumped.passed:
            s.sent += count
            s.ctx.facts.record_run(template, s.client_pump.trace_prefix, first, count, now)
        kept = 0  # data[kept:] is not queued for legacy yet
        for index, rec in enumerate(frames):
            if s.blocked is not None or s.error_sent:
                if kept < rec.start:
                    legacy.append(data[kept : rec.start])  # heart-beats before it
                s.held.extend(_held(data, frames, index))
                return
            if rec.command == "SEND" and (destination := rec.values[DESTINATION]) is not None:
                # A SEND to a destination that passes through, with nothing else to watch:
                # decided already, its bytes stay in place; its fact is new, and legacy
                # owes its receipt (producer.on_send and remember_pass_through).
                values = rec.values
                if (
                    values[TRANSACTION] is None
                    and values[OWN_TRACE] is None
                    and values[TRACEPARENT] is None
                ):
                    receipt = values[RECEIPT]
                    template = (passing if receipt is None else receipted).get(destination)
                    if template is not None:
                        trace: str = rec.trace  # type: ignore[assignment]  # every SEND has one
                        s.sent += 1
                        record_from(template, trace, now)
                        if receipt is not None:
                            producer.owe_legacy_receipt(s, receipt, trace, template.fields["rule"])
                        continue
                result = producer.on_send(s, rec, data)
                if result is True:
                    continue
                if kept < rec.start:
                    legacy.append(data[kept : rec.start])
                if result is not False:
                    legacy.append(result)
            else:
                if kept < rec.start:
                    legacy.append(data[kept : rec.start])
                if not self._client_frame(rec, data):
                    return
            kept = rec.end
        if kept == 0:
            if data:
                legacy.append(data)
        elif kept < len(data):
            legacy.append(data[kept:])

    def client_closed(self) -> list[Command]:
        """The client's connection ended (EOF or reset)."""
        s = self.state
        if not s.client_open:
            return self._done()
        s.client_open = False
        if s.phase in (Phase.AWAIT_CONNECT, Phase.LOGGING_IN):
            s.close_reason = "client closed before CONNECTED"
        self._closing()
        self._drain_held()
        return self._done()

    def _first_frames(self, pumped: Pumped) -> None:
        s = self.state
        if not pumped.frames:
            return  # heart-beats before CONNECT are nobody's
        first = pumped.frames[0]
        frame = first.frame()
        try:
            s.client.receive(frame)
        except RemoteProtocolError as exc:
            self._protocol_error(exc.reason)
            return
        if first.end - first.start > CONNECT_FRAME_LIMIT:
            self._protocol_error(f"frame larger than {CONNECT_FRAME_LIMIT} bytes before CONNECTED")
            return
        s.connect_raw = frame.raw
        s.login = broker_value(frame.get("login"), "1.0", frame.command)
        s.held.extend(_held(pumped.data, pumped.frames, 1))
        s.phase = Phase.LOGGING_IN
        self._block("login")
        s.out.append(OpenLegacy())

    def _drain_held(self) -> None:
        """Handle held client frames in order until the core must wait again."""
        s = self.state
        held = s.held
        while held and s.blocked is None:
            if s.error_sent or not s.legacy_open:
                held.clear()
                break
            item = held.popleft()
            if isinstance(item, Heartbeat):
                s.to_legacy(b"\n")
                continue
            rec, data = item
            if rec.command == "SEND" and rec.values[DESTINATION] is not None:
                result = producer.on_send(s, rec, data)
                if result is True:
                    s.to_legacy(data[rec.start : rec.end])
                elif result is not False:
                    s.to_legacy(result)
            elif not self._client_frame(rec, data):
                held.clear()
                return
        if not held and s.blocked is None and s.held_error is not None:
            reason, s.held_error = s.held_error, None
            self._protocol_error(reason)

    def _client_frame(self, rec: PumpedFrame, data: bytes) -> bool:
        """A client frame other than a well-formed SEND; False when it ended the session."""
        frame = rec.frame()
        try:
            self._client_event(frame)
        except ProtocolError as exc:
            self.state.held.clear()
            self._protocol_error(exc.reason)
            return False
        return True

    def _client_event(self, event: Frame) -> None:
        s = self.state
        s.client.receive(event)
        self._dispatch(event)
        if s.receipts.active:  # legacy answers the rest: in order behind what is owed
            s.receipts.note_legacy(broker_value(event.get("receipt"), s.version, "RECEIPT"))

    def _dispatch(self, event: Frame) -> None:
        s = self.state
        if missing_header(event, s.version) is not None:
            s.to_legacy(event.raw)  # legacy refuses it with its own ERROR, as it always did
            return
        command = event.command
        if command == "SUBSCRIBE":
            consumers.on_subscribe(s, event)
        elif command in ("ACK", "NACK"):
            if s.consumers:
                consumers.on_ack(s, event)
            else:
                s.to_legacy(event.raw)
        elif command == "UNSUBSCRIBE":
            consumers.on_unsubscribe(s, event)
        elif command == "BEGIN":
            transactions.on_begin(s, event)
        elif command == "COMMIT":
            transactions.on_commit(s, event)
        elif command == "ABORT":
            transactions.on_abort(s, event)
        elif command == "DISCONNECT":
            self._disconnect(event)
        else:  # a frame the connection state allows and the proxy passes on as it is
            s.to_legacy(event.raw)

    def _protocol_error(self, reason: str) -> None:
        s = self.state
        # The unfinished frame is dropped with its memory (and its share of the budget).
        s.client_pump = s.new_client_pump()
        s.ctx.buffer_budget.give(s.buffered)
        s.buffered = 0
        s.emit(Fact.CLIENT_PROTOCOL_ERROR, reason=reason)
        s.close_reason = f"protocol error: {reason}"
        self._send_error(error_frame(reason))
        self._closing()

    def _send_error(self, frame: bytes) -> None:
        s = self.state
        if s.client_open and not s.error_sent:
            s.to_client(frame)
            s.error_sent = True
            s.client_open = False
            s.out.append(CloseClient(after_error=True))

    def _account_buffer(self, frames: list[PumpedFrame]) -> None:
        """The client's unfinished frame: taken from the proxy-wide budget, and timed;
        before CONNECTED a frame may be small only."""
        s = self.state
        buffered = s.client_pump.buffered
        if s.phase in (Phase.AWAIT_CONNECT, Phase.LOGGING_IN):
            largest = max((f.end - f.start for f in frames), default=0)
            if max(buffered, largest) > CONNECT_FRAME_LIMIT:
                s.held_error = (
                    f"incomplete frame larger than {CONNECT_FRAME_LIMIT} bytes before CONNECTED"
                )
        delta = buffered - s.buffered
        if delta > 0:
            if not s.ctx.buffer_budget.take(delta):
                limit = s.ctx.buffer_budget.limit
                s.held_error = f"proxy buffer budget of {limit} bytes exhausted: frame refused"
                return
            s.buffered = buffered
        elif delta < 0:
            s.ctx.buffer_budget.give(-delta)
            s.buffered = buffered
        if buffered and not s.frame_timer:
            s.frame_timer = True
            s.frames_at_timer = s.frames_seen
            s.out.append(StartTimer("frame", s.ctx.settings.frame_timeout))
        elif not buffered and s.frame_timer:
            s.frame_timer = False
            s.out.append(CancelTimer("frame"))

    def _frame_timer(self) -> None:
        s = self.state
        s.frame_timer = False
        if not s.client_pump.buffered or not s.client_open or s.error_sent:
            return
        if s.blocked is not None or s.frames_seen != s.frames_at_timer:
            # Paused by us, or frames completed since: time the frame under way anew.
            s.frame_timer = True
            s.frames_at_timer = s.frames_seen
            s.out.append(StartTimer("frame", s.ctx.settings.frame_timeout))
            return
        timeout = s.ctx.settings.frame_timeout
        s.held.clear()
        self._protocol_error(f"frame not completed within {timeout:g} seconds")

    # -- legacy -----------------------------------------------------------------------

    def legacy_opened(self) -> list[Command]:
        s = self.state
        s.legacy_open = True
        if not s.client_open:  # the client left while legacy was opening
            self._closing()
            return self._done()
        s.to_legacy(s.connect_raw)
        return self._done()

    def legacy_failed(self, reason: str) -> list[Command]:
        s = self.state
        s.emit(Fact.CLIENT_REFUSED, reason=f"legacy unavailable: {reason}")
        s.close_reason = f"legacy unavailable: {reason}"
        s.legacy_closed = True
        self._send_error(error_frame("legacy broker unavailable", reason))
        self._closing()
        return self._done()

    def legacy_data(self, data: bytes) -> list[Command]:
        s = self.state
        pumped = s.legacy_pump.feed(data)
        first, kept = 0, 0
        if s.phase is Phase.LOGGING_IN:
            first, kept = self._login_answer(pumped)
        if first < len(pumped.frames) or kept < len(pumped.data):
            self._legacy_pumped(pumped, first, kept)
        if pumped.error is not None:
            reason = pumped.error.reason
            s.emit(Fact.BROKER_UNAVAILABLE, broker=LEGACY, reason=f"protocol: {reason}")
            s.close_reason = f"legacy protocol error: {reason}"
            self._legacy_gone(reason)
        return self._done()

    def _login_answer(self, pumped: Pumped) -> tuple[int, int]:
        """Legacy's answer to CONNECT, forwarded as it came with its EOL, in one write;
        where the rest of this read starts (a frame index, an offset)."""
        s = self.state
        data = pumped.data
        if not pumped.frames:
            s.login_prefix += data  # EOLs before the answer
            return 0, len(data)
        rec = pumped.frames[0]
        reply = rec.frame()
        s.frame_eol = data[rec.end : rec.eol_end]
        s.to_client(s.login_prefix + data[: rec.eol_end])
        s.login_prefix = b""
        if reply.command != "CONNECTED":
            s.emit(Fact.CLIENT_REFUSED, reason=reply.get("message") or reply.command)
            s.close_reason = f"legacy refused the login: {reply.get('message') or reply.command}"
            s.error_sent = reply.command == "ERROR"
            if s.client_open:
                s.client_open = False
                s.out.append(CloseClient(after_error=s.error_sent))
            s.held.clear()
            self._closing()
            return len(pumped.frames), len(data)
        version = reply.get("version") or "1.0"
        s.version = version
        s.client.connected(version)
        s.client_pump.version = s.legacy_pump.version = version
        s.phase = Phase.CONNECTED
        s.connected_fact = True
        s.out.append(CancelTimer("handshake"))
        table = s.table
        amazonmq = table.brokers.get(AMAZONMQ)
        s.emit(
            Fact.CLIENT_CONNECTED,
            peer=s.peer,
            login=s.login,
            version=version,
            routes_version=table.version,
            # Which Amazon MQ login the session maps to (a source's name, never a secret).
            **(amazonmq.login_for(s.login).fact_fields() if amazonmq else {}),
        )
        if s.client_open:
            self._unblock("login")
        return 1, rec.eol_end

    def _legacy_pumped(self, pumped: Pumped, first: int, kept: int) -> None:
        """Legacy's frames for the client in one write, as legacy wrote them, but for the
        proxy's own frames (each taken out with the EOL legacy wrote after it) and the
        MESSAGEs whose subscription id is the proxy's."""
        s = self.state
        data = pumped.data
        frames = pumped.frames
        out: list[bytes] = []
        if s.swallow_eol:  # the previous read ended with a frame the proxy took out
            s.swallow_eol = False
            limit = frames[first].start if first < len(frames) else len(data)
            for eol in (b"\n", b"\r\n"):
                if data.startswith(eol, kept) and kept + len(eol) <= limit:
                    kept += len(eol)
                    break
        plain = not s.consumers and not s.commit_receipts and not s.idless
        for rec in frames[first:]:
            result = self._legacy_frame(rec, data, plain)
            if result is True:
                continue
            if kept < rec.start:
                out.append(data[kept : rec.start])
            if result is None:  # the proxy's own: its EOL goes with it
                kept = rec.eol_end
                s.swallow_eol = rec.eol_end == rec.end == len(data)
            else:
                out.append(result)
                kept = rec.end
        if not out:  # nothing changed: the read as legacy wrote it (from ``kept``)
            if kept < len(data):
                s.to_client(data if kept == 0 else data[kept:])
        else:
            if kept < len(data):
                out.append(data[kept:])
            s.to_client(b"".join(out))

    def _legacy_frame(
        self, rec: PumpedFrame, data: bytes, plain: bool
    ) -> bytes | Literal[True] | None:
        """What the client gets of a frame from legacy: True, the frame as it is; other
        bytes; None, nothing (the proxy's own)."""
        s = self.state
        command = rec.command
        if command == "RECEIPT":
            receipt = rec.values[RECEIPT_ID] or ""
            if not self._legacy_receipt(receipt):
                return None
            if not s.receipts.active:
                return True
            released = s.receipts.from_legacy(receipt, data[rec.start : rec.end])
            if released is None:
                return True  # older than every receipt owed: the client gets it now
            # Held in its place (taken out with its EOL), or given with those it freed.
            return s.frame_eol.join(released) if released else None
        if command == "MESSAGE":
            sub = rec.values[SUBSCRIPTION] or ""
            if plain and not sub.startswith(PROXY_SUBSCRIPTIONS):
                return True
            frame = rec.frame()
            result = consumers.on_legacy_message(s, frame)
            if result is None:
                return None
            return True if result is frame.raw else result
        if command == "ERROR":
            self._legacy_error(rec.frame())
        return True

    def _legacy_receipt(self, receipt: str) -> bool:
        """Record what legacy confirmed; True when the RECEIPT is the client's to see."""
        s = self.state
        if not transactions.on_legacy_receipt(s, receipt):
            return False
        sent = s.legacy_receipts.pop(receipt, None)
        if sent is not None:
            s.emit(
                Fact.MESSAGE_CONFIRMED,
                trace_id=sent.trace,
                rule=sent.rule,
                broker=LEGACY,
                role="primary",
                latency_ms=s.ms_since(sent.started),
            )
        return True

    def _legacy_error(self, frame: Frame) -> None:
        """Legacy's ERROR goes to the client as it is; the connection lives on until
        legacy closes it (ActiveMQ keeps it open after an ERROR it does not find fatal)."""
        s = self.state
        message = frame.get("message")
        s.close_reason = f"legacy ERROR: {message}"
        s.legacy_sent_error = True
        receipt = frame.get("receipt-id")
        if receipt is None:
            return
        transactions.legacy_refused(s, receipt, message)
        owed = s.legacy_receipts.pop(receipt, None)
        if owed is not None:  # legacy refused a SEND it was responsible for
            s.emit(
                Fact.MESSAGE_REJECTED,
                trace_id=owed.trace,
                rule=owed.rule,
                broker=LEGACY,
                reason=f"legacy ERROR: {message}",
                possibly_stored=False,
            )

    def legacy_closed(self, reason: str) -> list[Command]:
        s = self.state
        if s.phase is Phase.LOGGING_IN and not s.legacy_closed:
            s.emit(Fact.CLIENT_REFUSED, reason="legacy closed the connection at login")
            s.close_reason = "legacy closed the connection at login"
            self._send_error(error_frame("legacy broker closed the connection at login"))
        self._legacy_gone(reason)
        return self._done()

    def _legacy_gone(self, reason: str) -> None:
        s = self.state
        transactions.legacy_failed(s, "legacy connection closed before confirming COMMIT")
        s.legacy_open = False
        s.legacy_closed = True
        s.legacy_out.clear()
        if s.client_open:
            if s.close_reason == "client closed the connection":
                s.close_reason = "legacy closed the connection"
            s.client_open = False
            s.out.append(CloseClient(after_error=s.error_sent or s.legacy_sent_error))
        s.held.clear()
        self._closing()

    # -- Amazon MQ --------------------------------------------------------------------

    def amazonmq_outcome(
        self, token: str, failure: str | None, possibly_stored: bool = False
    ) -> list[Command]:
        """Amazon MQ confirmed ``token`` (``failure`` None) or it failed; a failure after
        the frame was written is ``possibly_stored``."""
        self._outcome(token, failure, possibly_stored)
        return self._done()

    def _outcome(self, token: str, failure: str | None, possibly_stored: bool) -> None:
        s = self.state
        pending = s.pending.pop(token, None)
        if pending is None:
            return  # already settled (an internal error)
        kind = pending.kind
        if kind is Kind.PRIMARY:
            producer.primary_outcome(s, pending, failure, possibly_stored)
        elif kind is Kind.MIRROR:
            producer.mirror_outcome(s, pending, failure, possibly_stored)
        elif kind is Kind.MOVED:
            transactions.moved_outcome(s, pending, failure, possibly_stored)
        elif kind is Kind.TX_BEGIN:
            transactions.begin_outcome(s, pending, failure)
        elif kind is Kind.TX_COMMIT:
            transactions.commit_outcome(s, pending, failure, possibly_stored)
            self._unblock(BLOCKED_COMMIT)
        elif kind is Kind.TX_MIRROR_COMMIT:
            transactions.mirror_commit_outcome(s, pending, failure)
        elif kind is Kind.ACK:
            consumers.ack_outcome(s, pending, failure)
        elif kind is Kind.UNSUBSCRIBE:
            consumers.unsubscribe_outcome(s, pending)
        producer.release_backlog(s)
        if s.blocked == BLOCKED_WINDOW and not s.window_full():
            self._unblock(BLOCKED_WINDOW)

    def amazonmq_lost(self, reason: str) -> list[Command]:
        """The Amazon MQ connection failed: what was begun on it is gone."""
        s = self.state
        s.amq_generation += 1
        transactions.amazonmq_lost(s, reason)
        return self._done()

    def amazonmq_message(self, frame: Frame) -> list[Command]:
        consumers.on_amazonmq_message(self.state, frame)
        return self._done()

    def amazonmq_subscribed(self, sub_id: str, failure: str | None) -> list[Command]:
        consumers.subscribed_outcome(self.state, sub_id, failure)
        return self._done()

    # -- timers, routes, the proxy ---------------------------------------------------

    def timer(self, name: str) -> list[Command]:
        s = self.state
        if name == "confirm":
            producer.expire(s)
        elif name == "frame":
            self._frame_timer()
        elif name == "backlog":
            consumers.check_backlogs(s)
        elif name == "handshake":
            if s.phase in (Phase.AWAIT_CONNECT, Phase.LOGGING_IN):
                timeout = s.ctx.settings.handshake_timeout
                s.close_reason = f"no CONNECTED within {timeout:g} seconds"
                if s.phase is Phase.LOGGING_IN:
                    s.emit(Fact.CLIENT_REFUSED, reason="legacy did not answer CONNECT in time")
                    self._send_error(error_frame("legacy broker did not answer CONNECT in time"))
                elif s.client_open:
                    s.client_open = False
                    s.out.append(CloseClient(after_error=False))
                s.held.clear()
                self._closing()
        elif name in ("settle", "grace"):
            self._give_up(name)
        return self._done()

    def routes_changed(self) -> list[Command]:
        s = self.state
        if s.phase is Phase.CONNECTED:
            consumers.routes_changed(s)
        return self._done()

    def legacy_refilled(self, rule: str) -> list[Command]:
        consumers.legacy_refilled(self.state, rule)
        return self._done()

    def shutdown(self, grace: float) -> list[Command]:
        """The proxy stops: read no more, let what was read settle within ``grace``."""
        s = self.state
        s.shutting_down = True
        s.close_reason = "proxy shutting down"
        if s.client_open:
            s.out.append(PauseClient())
        s.out.append(StartTimer("grace", grace))
        if s.phase in (Phase.AWAIT_CONNECT, Phase.LOGGING_IN) and s.client_open:
            s.client_open = False
            s.out.append(CloseClient(after_error=False))
        self._closing()
        return self._done()

    def internal_error(self, reason: str, where: str) -> list[Command]:
        """An unexpected exception: settle everything pending as in doubt, then end."""
        s = self.state
        s.emit(Fact.INTERNAL_ERROR, reason=reason[:500], where=where)
        s.close_reason = f"internal error: {reason[:200]}"
        s.held.clear()
        s.held_disconnect = None
        failure = f"internal error: {reason[:200]}"
        for token in list(s.pending):
            with contextlib.suppress(Exception):
                self._outcome(token, failure, True)
        if s.amq_used:
            s.out.append(DropAmazonMQ(failure))  # the link forgets what was settled here
        with contextlib.suppress(Exception):
            producer.drop_backlog(s, failure)
        self._send_error(error_frame("internal error in strangler", reason[:200]))
        # Legacy still answers what it got, for a short while: the session is broken.
        self._closing(s.ctx.settings.confirm_timeout)
        return self._done()

    # -- waiting and ending -------------------------------------------------------------

    def _block(self, why: str) -> None:
        s = self.state
        if s.blocked is None:
            s.blocked = why
            if s.client_open:
                s.out.append(PauseClient())

    def _unblock(self, why: str | None) -> None:
        s = self.state
        if why is not None and s.blocked != why:
            return
        if s.blocked is None:
            return
        s.blocked = None
        self._drain_held()
        if s.blocked is None and s.client_open and not s.shutting_down:
            s.out.append(ResumeClient())

    def _disconnect(self, frame: Frame) -> None:
        """DISCONNECT waits for Amazon MQ primaries (their fallbacks must reach legacy
        first), never for mirror copies."""
        s = self.state
        s.close_reason = "client DISCONNECT"
        s.held_disconnect = frame
        s.phase = Phase.DISCONNECTING
        self._block("DISCONNECT settling")
        self._forward_disconnect()

    def _forward_disconnect(self) -> None:
        """Legacy gets the held DISCONNECT once no pending frame may still need it."""
        s = self.state
        frame = s.held_disconnect
        if frame is None or any(p.kind in _NEEDS_LEGACY for p in s.pending.values()):
            return
        s.held_disconnect = None
        s.to_legacy(frame.raw)
        s.held.clear()  # nothing is legal after DISCONNECT

    def _closing(self, settle: float | None = None) -> None:
        s = self.state
        if s.phase in (Phase.CLOSING, Phase.ENDED):
            return
        s.phase = Phase.CLOSING
        s.out.append(StartTimer("settle", settle or s.ctx.settings.drain_timeout))

    def _give_up(self, name: str) -> None:
        """The settle (or shutdown grace) period is over: whatever is pending fails now."""
        s = self.state
        if s.gave_up and s.pending:
            # Dropped a second ago and still unanswered: settle here, in doubt.
            for token in list(s.pending):
                self._outcome(token, "no outcome from the Amazon MQ link", True)
        s.gave_up = True
        s.out.append(StartTimer("settle", 1.0))
        s.held.clear()
        s.held_disconnect = None
        if s.pending:
            why = "proxy shutting down" if name == "grace" else "session closed"
            s.out.append(DropAmazonMQ(f"{why} before {AMAZONMQ} confirmed"))
        producer.drop_backlog(s, "session closed before the copy was sent")

    def _done(self) -> list[Command]:
        """After every event: hand over fallbacks to announce, end when all settled."""
        s = self.state
        if s.held_disconnect is not None:
            self._forward_disconnect()
        if s.phase is Phase.CLOSING:
            self._finish_if_settled()
        if s.fell_back:
            for rule in sorted(s.fell_back):
                s.out.append(AnnounceFallback(rule))
            s.fell_back.clear()
        return s.take()

    def _finish_if_settled(self) -> None:
        s = self.state
        needs_legacy = any(p.kind in _NEEDS_LEGACY for p in s.pending.values())
        quiet = not s.held and s.held_disconnect is None
        if s.legacy_open and not needs_legacy and quiet and (not s.legacy_receipts or s.gave_up):
            s.close_legacy()
        if s.legacy_open and not s.gave_up:
            return
        if s.legacy_open:
            s.close_legacy()
        if s.pending:
            return  # outcomes (or the drop's) are on their way; settle bounds the wait
        if s.mirror_backlog:
            producer.drop_backlog(s, "session closed before the copy was sent")
        if s.phase is Phase.ENDED:
            return
        for owed in s.legacy_receipts.values():
            # Forwarded, never confirmed: the client has no receipt and resends.
            s.emit(
                Fact.MESSAGE_UNCONFIRMED,
                trace_id=owed.trace,
                rule=owed.rule,
                broker=LEGACY,
                reason=f"session ended before legacy confirmed it: {s.close_reason}",
                possibly_stored=True,
            )
        s.legacy_receipts.clear()
        s.phase = Phase.ENDED
        s.ctx.buffer_budget.give(s.buffered)
        s.buffered = 0
        # An unfinished frame's buffer goes now, not when the collector finds the session.
        s.client_pump = s.new_client_pump()
        s.legacy_pump = FramePump(s.ctx.settings.limits, fields=LEGACY_FIELDS)
        for name in ("confirm", "frame", "backlog", "settle", "grace", "handshake"):
            s.out.append(CancelTimer(name))
        if s.amq_used:
            s.out.append(CloseAmazonMQ(graceful=not s.gave_up))
        if s.client_open:
            s.client_open = False
            s.out.append(CloseClient(after_error=s.error_sent))
        if s.connected_fact:
            s.emit(Fact.CLIENT_DISCONNECTED, reason=s.close_reason, messages=s.sent)
        s.out.append(SessionEnded())


def _held(data: bytes, frames: list[PumpedFrame], first: int) -> list[Held]:
    """``frames[first:]`` and the EOLs among and after them, to handle later, in order."""
    held: list[Held] = []
    pos = frames[first].start if first < len(frames) else len(data)
    if first > 0:
        pos = frames[first - 1].end
    for rec in frames[first:]:
        held.extend([HEARTBEAT] * data.count(b"\n", pos, rec.start))
        held.append((rec, data))
        pos = rec.end
    held.extend([HEARTBEAT] * data.count(b"\n", pos, len(data)))
    return held
