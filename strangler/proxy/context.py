"""What every client session of one proxy shares: settings, routes, facts, health."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..facts import FactSink
from ..routes import RouteTable
from ..stomp import DEFAULT_LIMITS, Limits
from ..upstream import BrokerHealth
from .traces import TraceIds


@dataclass(frozen=True, slots=True)
class ProxySettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 61613
    dry_run: bool = False  # global --dry-run: decide and record, but send everything to legacy
    limits: Limits = DEFAULT_LIMITS
    max_inflight: int = 1000  # frames per session awaiting an Amazon MQ receipt
    # Mirror copies waiting for room on their session's link, beyond max_inflight: bytes,
    # for all sessions together.
    mirror_backlog_bytes: int = 64 * 1024 * 1024
    connect_timeout: float = 10.0
    handshake_timeout: float = 30.0  # a client must finish CONNECT within this
    drain_timeout: float = 30.0  # a closing session waits this long for outcomes, at most
    # An Amazon MQ frame (primary, copy, transaction control, ACK) without a receipt after
    # this long means the connection is hung: it is dropped and on_failure applies.
    confirm_timeout: float = 5.0
    # Batchable Amazon MQ frames (mirror copies, receipt-less primaries) wait this long at
    # most to go out together, with one receipt (0: each turn's frames at once).
    amazonmq_batch_delay: float = 0.002
    frame_timeout: float = 60.0  # a frame begun must be complete within this (slowloris)
    write_timeout: float = 60.0  # a client that reads nothing for this long is closed
    tls: ssl.SSLContext | None = None  # producers that already speak stomp+ssl keep doing so
    # How often a consumer reading both brokers (cutover) checks whether legacy's queue is
    # empty, after this long without a message from legacy; then legacy's side is dropped.
    backlog_check_interval: float = 5.0
    # Bytes of unfinished client frames all sessions together may hold (a hostile client
    # sending 15 MiB without a NUL), and the producer connections served at once.
    max_buffered_bytes: int = 256 * 1024 * 1024
    max_connections: int = 4096


class ByteBudget:
    """Bytes that all sessions together may hold for one purpose (mirror backlogs,
    unfinished frames)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


@dataclass
class RoutesHolder:
    """The active route table; replaced whole (atomically) on reload."""

    table: RouteTable


class TrafficTap(Protocol):
    """Receives a copy of client-side traffic (``strangler run --capture``).

    Called on the event loop with each chunk as read; implementations must not
    block and must bound their own memory (drop and count rather than grow).
    """

    def opened(self, session: str, peer: str) -> None: ...

    def from_client(self, session: str, data: bytes) -> None: ...

    def to_client(self, session: str, data: bytes) -> None: ...

    def closed(self, session: str) -> None: ...


@dataclass
class ProxyContext:
    settings: ProxySettings
    routes: RoutesHolder
    facts: FactSink
    tap: TrafficTap | None = None
    # Called on the event loop right after a reload put a new table in force.
    routes_listeners: list[Callable[[], None]] = field(default_factory=list)
    # Called with a route's name when one of its messages fell back to legacy.
    fallback_listeners: list[Callable[[str], None]] = field(default_factory=list)
    health: BrokerHealth = field(init=False)
    mirror_budget: ByteBudget = field(init=False)
    buffer_budget: ByteBudget = field(init=False)
    traces: TraceIds = field(init=False)
    # Amazon MQ links saying goodbye: they outlive their session; stop() awaits them.
    farewells: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.health = BrokerHealth(self.facts)
        self.mirror_budget = ByteBudget(self.settings.mirror_backlog_bytes)
        self.buffer_budget = ByteBudget(self.settings.max_buffered_bytes)
        self.traces = TraceIds()
