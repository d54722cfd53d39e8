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
from typing import Final

from ...facts import Fact
from ...stomp import Event, Frame, FrameParser, Heartbeat, ProtocolError, error_frame
from ...stomp.activemq import broker_value
from ...stomp.connection import RemoteProtocolError
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
from .state import AMAZONMQ, BLOCKED_COMMIT, BLOCKED_WINDOW, LEGACY, Kind, Phase, SessionState

# Pending kinds whose failure may still need legacy (a fallback, the held COMMIT).
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
        error: ProtocolError | None = None
        try:
            events = s.client_parser.feed(data)
        except ProtocolError as exc:
            events, error = exc.events, exc
        if events:
            s.frames_seen += 1
        self._account_buffer()
        if s.phase is Phase.AWAIT_CONNECT:
            self._first_events(events)
        else:
            s.held.extend(events)
        if error is not None:
            s.held_error = error.reason
        self._drain_held()
        return self._done()

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

    def _first_events(self, events: list[Event]) -> None:
        s = self.state
        while events and isinstance(events[0], Heartbeat):
            events.pop(0)
        if not events:
            return
        first = events[0]
        assert isinstance(first, Frame)
        try:
            s.client.receive(first)
        except RemoteProtocolError as exc:
            s.held.clear()
            self._protocol_error(exc.reason)
            return
        s.connect_raw = first.raw
        s.login = broker_value(first.get("login"), "1.0", first.command)
        s.held.extend(events[1:])
        s.phase = Phase.LOGGING_IN
        self._block("login")
        s.out.append(OpenLegacy())

    def _drain_held(self) -> None:
        """Handle held client events in order until the core must wait again."""
        s = self.state
        held = s.held
        while held and s.blocked is None:
            if s.error_sent or not s.legacy_open:
                held.clear()
                break
            event = held.popleft()
            try:
                self._client_event(event)
            except ProtocolError as exc:
                held.clear()
                self._protocol_error(exc.reason)
                return
        if not held and s.blocked is None and s.held_error is not None:
            reason, s.held_error = s.held_error, None
            self._protocol_error(reason)

    def _client_event(self, event: Event) -> None:
        s = self.state
        if not isinstance(event, Frame):
            s.to_legacy(b"\n")
            return
        s.client.receive(event)
        command = event.command
        if command == "SEND":
            producer.on_send(s, event)
        elif command == "SUBSCRIBE":
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

    def _protocol_error(self, reason: str) -> None:
        s = self.state
        # The unfinished frame is dropped with its memory (and its share of the budget).
        s.client_parser = FrameParser(s.client_parser.limits, s.version)
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

    def _account_buffer(self) -> None:
        """The client's unfinished frame: taken from the proxy-wide budget, and timed."""
        s = self.state
        buffered = s.client_parser.buffered
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
        if not s.client_parser.buffered or not s.client_open or s.error_sent:
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
        error: ProtocolError | None = None
        try:
            events = s.legacy_parser.feed(data)
        except ProtocolError as exc:
            events, error = exc.events, exc
        if s.phase is Phase.LOGGING_IN:
            events = self._login_answer(events)
        if events:
            self._legacy_events(events)
        if error is not None:
            s.emit(Fact.BROKER_UNAVAILABLE, broker=LEGACY, reason=f"protocol: {error.reason}")
            s.close_reason = f"legacy protocol error: {error.reason}"
            self._legacy_gone(error.reason)
        return self._done()

    def _login_answer(self, events: list[Event]) -> list[Event]:
        """Legacy's answer to CONNECT, forwarded as it came; what follows it, if any."""
        s = self.state
        s.login_events.extend(events)
        frame_at = next((i for i, e in enumerate(s.login_events) if isinstance(e, Frame)), None)
        if frame_at is None:
            return []
        answer = s.login_events[: frame_at + 1]
        rest = s.login_events[frame_at + 1 :]
        s.login_events = []
        reply = answer[-1]
        assert isinstance(reply, Frame)
        eol = bool(rest) and isinstance(rest[0], Heartbeat)
        if eol:
            rest.pop(0)
            s.frame_eol = b"\n"
        s.to_client(b"\n" * (len(answer) - 1) + reply.raw + s.frame_eol)
        if reply.command != "CONNECTED":
            s.emit(Fact.CLIENT_REFUSED, reason=reply.get("message") or reply.command)
            s.close_reason = f"legacy refused the login: {reply.get('message') or reply.command}"
            s.error_sent = reply.command == "ERROR"
            if s.client_open:
                s.client_open = False
                s.out.append(CloseClient(after_error=s.error_sent))
            s.held.clear()
            self._closing()
            return []
        version = reply.get("version") or "1.0"
        s.version = version
        s.client.connected(version)
        s.client_parser.version = s.legacy_parser.version = version
        s.client_parser.limits = s.ctx.settings.limits
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
        return rest

    def _legacy_events(self, events: list[Event]) -> None:
        """Legacy's frames for the client: one write, the proxy's own frames taken out."""
        s = self.state
        out: list[bytes] = []
        swallow = s.swallow_eol
        for event in events:
            if not isinstance(event, Frame):
                if swallow:
                    swallow = False
                else:
                    out.append(b"\n")
                continue
            swallow = False
            command = event.command
            data: bytes | None = event.raw
            if command == "RECEIPT":
                if not self._legacy_receipt(event):
                    data = None
            elif command == "MESSAGE":
                data = consumers.on_legacy_message(s, event)
            elif command == "ERROR":
                self._legacy_error(event)
            if data is None:
                swallow = True  # the EOL legacy wrote after it is the proxy's too
            else:
                out.append(data)
        s.swallow_eol = swallow
        if out:
            s.to_client(out[0] if len(out) == 1 else b"".join(out))
        if s.legacy_error and s.client_open:
            s.client_open = False  # after legacy's ERROR, which went out just above
            s.out.append(CloseClient(after_error=True))

    def _legacy_receipt(self, frame: Frame) -> bool:
        """Record what legacy confirmed; True when the RECEIPT is the client's to see."""
        s = self.state
        receipt = frame.get("receipt-id") or ""
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
        s = self.state
        message = frame.get("message")
        transactions.legacy_failed(s, message)
        s.close_reason = f"legacy ERROR: {message}"
        s.legacy_error = True
        s.error_sent = True
        self._closing()

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
            s.out.append(CloseClient(after_error=s.error_sent))
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
        s.client_parser = FrameParser(s.client_parser.limits, s.version)
        s.legacy_parser = FrameParser(s.legacy_parser.limits, s.version)
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
