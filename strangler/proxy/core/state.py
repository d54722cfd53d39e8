"""What one producer session knows, and the small steps every part of the core shares.

The parts of the core (``producer``, ``transactions``, ``consumers``) are functions
over this state: they read it, change it, and append commands to ``out``. None of them
keeps a reference to another part or to the driver, so no part calls back into the
one that called it; ``SessionCore`` dispatches and returns ``take()``.

Invariants:
- bytes for legacy are gathered in ``legacy_out`` and leave as one ``ToLegacy`` per
  handler call (one write per read); ``close_legacy`` flushes them first, so order on
  the legacy socket is the order the core wrote in;
- every Amazon MQ frame the core submitted is in ``pending`` (token -> Pending) until
  its outcome arrives, in submission order (deadlines are equal, so the first entry is
  the next to expire);
- ``amq_inflight`` counts ``pending``; a producer is held (``blocked``) while it is at
  ``max_inflight``, and mirror copies wait in ``mirror_backlog`` (a shared byte budget).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...facts import Fact, FactTemplate
from ...routes import Decision, RouteTable
from ...stomp import Frame, Heartbeat, encode_parts
from ...stomp.connection import Role, StompConnection
from ...stomp.native import FramePump, PumpedFrame
from ..consumers import ConsumerBook, Delivery, DualSubscription
from ..context import ProxyContext
from ..traces import TraceIds, session_trace_prefix
from .commands import CloseLegacy, Command, StartTimer, ToClient, ToLegacy
from .receipts import ReceiptOrder

LEGACY = "legacy"
AMAZONMQ = "amazonmq"
# Before CONNECTED a client may only send a small frame (CONNECT is tiny): an
# unauthenticated peer cannot make the proxy buffer megabytes.
CONNECT_FRAME_LIMIT = 64 * 1024
# The headers the pumps read for every frame (the trace header is added per session).
CLIENT_FIELDS = ("destination", "receipt", "transaction", "traceparent")
DESTINATION, RECEIPT, TRANSACTION, TRACEPARENT, OWN_TRACE = range(5)
LEGACY_FIELDS = ("receipt-id", "subscription")
RECEIPT_ID, SUBSCRIPTION = range(2)
MAX_TRACKED_RECEIPTS = 100_000
# Why client events are held (``SessionState.blocked``).
BLOCKED_WINDOW = "Amazon MQ window full"
BLOCKED_COMMIT = "COMMIT on Amazon MQ"


class Phase(StrEnum):
    AWAIT_CONNECT = "await_connect"  # no CONNECT from the client yet
    LOGGING_IN = "logging_in"  # CONNECT on its way to legacy, waiting for its answer
    CONNECTED = "connected"
    DISCONNECTING = "disconnecting"  # DISCONNECT held until Amazon MQ primaries settle
    CLOSING = "closing"  # the client is gone or errored: settling, then the end
    ENDED = "ended"


class Kind(StrEnum):
    """What an Amazon MQ frame is, so its outcome goes to the right part."""

    PRIMARY = "primary"  # a SEND Amazon MQ is responsible for
    MIRROR = "mirror"  # a copy; legacy is responsible
    MOVED = "moved"  # a transactional SEND Amazon MQ is responsible for
    TX_BEGIN = "tx-begin"
    TX_COMMIT = "tx-commit"
    TX_MIRROR_COMMIT = "tx-mirror-commit"  # commit of a transaction holding copies only
    TX_ABORT = "tx-abort"
    ACK = "ack"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(slots=True)
class Pending:
    """An Amazon MQ frame awaiting its receipt."""

    kind: Kind
    deadline: float
    started: float
    trace: str | None = None
    rule: str = ""
    decision: Decision | None = None
    receipt: str | None = None  # the client's receipt id, answered on confirmation
    raw: bytes = b""  # the SEND (or held COMMIT) as for legacy: for a fallback
    tx: Transaction | None = None
    subscription: str | None = None  # ACK / UNSUBSCRIBE
    seq: int = 0  # the client receipt's place in ``SessionState.receipts`` (0: none)


@dataclass(slots=True)
class MovedMessage:
    """A transactional SEND Amazon MQ is responsible for, kept until COMMIT.

    Amazon MQ rolls a transaction back when its connection drops, so until the commit
    is confirmed these bytes are the only copy the proxy can fall back with."""

    trace: str
    raw: bytes  # as the client sent it, trace header spliced in
    receipt: str | None
    decision: Decision
    receipted: bool = False  # the client already has its receipt
    settled: bool = False  # fell back or rejected: later outcomes are ignored
    seq: int = 0  # the receipt's place in ``SessionState.receipts`` (0: none)


@dataclass(slots=True)
class Transaction:
    """A client transaction, possibly spanning both brokers."""

    id: str
    table: RouteTable  # routes in force at BEGIN: the whole transaction follows them
    amazonmq_generation: int | None = None  # Amazon MQ connection its BEGIN went to
    moved: list[MovedMessage] = field(default_factory=list)
    # trace -> rule of the mirror copies whose failure is not a fact yet (one fact each)
    mirror_traces: dict[str, str] = field(default_factory=dict)
    amazonmq_acks: int = 0  # consumer ACKs inside the transaction, on Amazon MQ
    # What the transaction's ACKs acknowledged, given back if it is aborted.
    acked: list[tuple[DualSubscription, list[Delivery]]] = field(default_factory=list)
    closed: bool = False  # committed or aborted by the client


@dataclass(slots=True)
class MirrorCopy:
    """A copy waiting for room in the Amazon MQ window."""

    data: bytes
    trace: str
    rule: str
    size: int


@dataclass(slots=True)
class LegacyReceipt:
    trace: str
    rule: str
    started: float


# A client frame waiting to be handled: its pump record and the bytes it points into.
Held = tuple[PumpedFrame, bytes] | Heartbeat


@dataclass(slots=True)
class SessionState:
    ctx: ProxyContext
    id: str
    peer: str
    traces: TraceIds
    clock: Callable[[], float] = time.monotonic
    phase: Phase = Phase.AWAIT_CONNECT
    version: str = "1.0"
    login: str | None = None  # the CONNECT login as legacy authenticated it
    # Legal commands per state; a frame missing a required header goes to legacy, which
    # answers it with its own ERROR (and keeps the connection, as ActiveMQ does).
    client: StompConnection = field(
        default_factory=lambda: StompConnection(Role.SERVER, check_headers=False)
    )
    client_pump: FramePump = field(init=False)
    legacy_pump: FramePump = field(init=False)
    # The header name the client pump splices trace ids under (routes.yaml's, at CONNECT).
    trace_header: str = ""
    out: list[Command] = field(default_factory=list)
    legacy_out: list[bytes] = field(default_factory=list)
    # What legacy ends its frames with (ActiveMQ: one LF), learnt from CONNECTED: frames
    # the proxy makes for the client (Amazon MQ's MESSAGEs, receipts) end the same way.
    frame_eol: bytes = b""
    # A frame from legacy was swallowed at the end of a chunk: its EOL may open the next.
    swallow_eol: bool = False
    connect_raw: bytes = b""
    held: deque[Held] = field(default_factory=deque)  # client frames not yet handled
    blocked: str | None = None  # why client events are held (Amazon MQ window, COMMIT)
    legacy_receipts: dict[str, LegacyReceipt] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    token_seq: int = 0
    confirm_timer: bool = False
    mirror_backlog: deque[MirrorCopy] = field(default_factory=deque)
    amq_generation: int = 0  # bumped when the Amazon MQ connection is lost
    amq_used: bool = False  # the session asked for an Amazon MQ link
    legacy_open: bool = False
    legacy_closed: bool = False
    client_open: bool = True
    error_sent: bool = False  # an ERROR went to the client: it closes after reading it
    connected_fact: bool = False
    close_reason: str = "client closed the connection"
    frame_timer: bool = False
    buffered: int = 0  # bytes of the client's incomplete frame taken from the shared budget
    sent: int = 0
    held_disconnect: Frame | None = None  # the client's DISCONNECT, sent once settled
    shutting_down: bool = False  # the proxy stops: fallbacks would come too late
    fell_back: set[str] = field(default_factory=set)  # rules to announce to every session
    transactions: dict[str, Transaction] = field(default_factory=dict)
    # receipt id on a legacy COMMIT the proxy watches -> transaction id
    commit_receipts: dict[str, str] = field(default_factory=dict)
    internal_seq: int = 0
    consumers: ConsumerBook = field(default_factory=ConsumerBook)
    # Subscriptions that read legacy only, remembered so a routes change can reach them.
    legacy_only: dict[str, DualSubscription] = field(default_factory=dict)
    idless: dict[str, str] = field(default_factory=dict)  # 1.0 destination -> our sub id
    sub_seq: int = 0
    backlog_timer: bool = False
    receipts: ReceiptOrder = field(default_factory=ReceiptOrder)
    sub_receipts: dict[str, int] = field(default_factory=dict)  # SUBSCRIBE id -> receipt
    frames_seen: int = 0  # client reads that completed a frame (the slowloris timer)
    frames_at_timer: int = 0
    held_error: str | None = None  # a protocol error to answer once held frames are done
    login_prefix: bytes = b""  # EOLs legacy sent before answering CONNECT
    legacy_sent_error: bool = False  # an ERROR from legacy went to the client
    gave_up: bool = False  # the settle period is over: pending frames are being dropped
    # Destinations whose plain SENDs pass through to legacy, decided once under the
    # table ``passing_table`` (emptied when routes change): destination -> the template
    # of their message_routed fact, for SENDs without a receipt (``passing``) and with
    # one (``passing_receipted``). See ``producer.on_send`` and the core's hot path.
    passing: dict[str, FactTemplate | None] = field(default_factory=dict)
    passing_receipted: dict[str, FactTemplate | None] = field(default_factory=dict)
    passing_table: RouteTable | None = None
    # The client's last read ended with a whole frame that asked for a receipt and nothing
    # holds it: the RECEIPT will acknowledge the read (``SessionCore.client_ack_may_wait``).
    reply_due: bool = False
    subscribed: bool = False  # the client subscribed once: legacy may send any time

    def __post_init__(self) -> None:
        self.trace_header = self.table.trace_header
        self.client_pump = self.new_client_pump()
        self.legacy_pump = FramePump(self.ctx.settings.limits, fields=LEGACY_FIELDS)

    def new_client_pump(self) -> FramePump:
        # A new prefix for each pump (its counter starts again): trace ids stay unique.
        return FramePump(
            self.ctx.settings.limits,
            version=self.version,
            fields=(*CLIENT_FIELDS, self.trace_header),
            splice=self.trace_header,
            trace_prefix=session_trace_prefix(),
        )

    # -- output ---------------------------------------------------------------------

    def take(self) -> list[Command]:
        """The commands of this handler call, legacy's bytes as one write at the end."""
        self.flush_legacy()
        out, self.out = self.out, []
        return out

    def flush_legacy(self) -> None:
        pending = self.legacy_out
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            if self.legacy_open:
                self.out.append(ToLegacy(data))

    def to_legacy(self, data: bytes) -> None:
        self.legacy_out.append(data)

    def to_client(self, data: bytes) -> None:
        if self.client_open:
            self.out.append(ToClient(data))

    def close_legacy(self) -> None:
        self.flush_legacy()
        if self.legacy_open:
            self.legacy_open = False
            self.out.append(CloseLegacy())

    def emit(self, fact: Fact, **fields: Any) -> None:
        self.ctx.facts.emit(fact, session=self.id, **fields)

    @property
    def table(self) -> RouteTable:
        return self.ctx.routes.table

    def pass_through(self, receipt: bool = False) -> dict[str, FactTemplate | None]:
        """The pass-through decisions of the routes in force (forgotten when they change),
        for SENDs with a receipt or without."""
        table = self.ctx.routes.table
        if self.passing_table is not table:
            self.passing.clear()  # in place: a session's first call allocates nothing
            self.passing_receipted.clear()
            self.passing_table = table
        return self.passing_receipted if receipt else self.passing

    # -- Amazon MQ bookkeeping --------------------------------------------------------

    def next_token(self) -> str:
        self.token_seq += 1
        return f"{self.id}-{self.token_seq}"

    def confirm_window(self) -> tuple[float, float]:
        """(deadline, now) of a frame leaving for Amazon MQ now: ``Pending``'s first two."""
        now = self.clock()
        return now + self.ctx.settings.confirm_timeout, now

    def add_pending(self, pending: Pending) -> str:
        """``pending`` awaits Amazon MQ's receipt; the token its frame goes out with."""
        token = self.next_token()
        self.pending[token] = pending
        if not self.confirm_timer:
            self.confirm_timer = True
            self.out.append(StartTimer("confirm", self.ctx.settings.confirm_timeout))
        return token

    @property
    def amq_inflight(self) -> int:
        return len(self.pending)

    def window_full(self) -> bool:
        return len(self.pending) >= self.ctx.settings.max_inflight

    def receipt_frame(self, receipt_id: str) -> bytes:
        """A RECEIPT the proxy answers for (without the EOL legacy ends frames with)."""
        return encode_parts("RECEIPT", (("receipt-id", receipt_id),), b"", self.version)

    def give_receipts(self, frames: list[bytes]) -> None:
        """Receipts released in order, each ended like legacy ends its frames."""
        if frames:
            eol = self.frame_eol
            self.to_client(eol.join(frames) + eol)

    def ms_since(self, started: float) -> float:
        return round((self.clock() - started) * 1000, 3)
