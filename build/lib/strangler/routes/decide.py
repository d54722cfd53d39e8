"""Per-message routing: which broker(s) get a SEND, decided without I/O or allocation.

Invariants:
- ``decide`` is a pure function of (table, destination, split key): same inputs, same
  Decision object, on every machine and in every process.
- ``split_bucket`` never uses Python's salted ``hash()``: it is blake2b over the UTF-8 key,
  so two proxy replicas (or a restart) send the same sticky key to the same broker.
- A split route sends a message to Amazon MQ iff ``split_bucket(key) < weight``, where key is
  the sticky header's value when present, else the message key. Buckets are hundredths of a
  percent in [0, 100), so weight 0 never and weight 100 always sends to Amazon MQ.
- Returned Decision objects are shared and precomputed (see ``RouteTable.resolve``);
  callers must treat them as read-only values, which frozen dataclasses enforce.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .model import AMAZONMQ, LEGACY, Decision, Mode
from .table import Resolution, RouteTable

# 10,000 buckets = 1/100 of a percent resolution for weights like 0.25.
_BUCKETS: Final = 10_000


def split_bucket(key: str) -> float:
    """Stable bucket of ``key`` in [0, 100), with 0.01 resolution."""
    # surrogatepass: header values decoded leniently may hold lone surrogates; never raise.
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    # 2**64 is not a multiple of 10,000, but the modulo bias (~1e-15) is far below noise.
    return (int.from_bytes(digest, "big") % _BUCKETS) / 100


def decide(
    table: RouteTable, destination: str, sticky_value: str | None, message_key: str
) -> Decision:
    """Where a SEND to ``destination`` goes; ``message_key`` is the message's trace id."""
    return _choose(table.resolve(destination), sticky_value, message_key)


def decide_send(
    table: RouteTable,
    destination: str,
    header: Callable[[str], str | None],
    message_key: str,
) -> Decision:
    """``decide`` for a SEND whose headers ``header(name)`` reads (first value wins).

    The one lookup the proxy and replay both make: the destination is resolved once,
    and the sticky header is read only when the matched route splits by one.
    """
    resolution = table.resolve(destination)
    route = resolution.route
    sticky_header = route.sticky_header if route is not None else None
    sticky = header(sticky_header) if sticky_header is not None else None
    return _choose(resolution, sticky, message_key)


def _choose(resolution: Resolution, sticky_value: str | None, message_key: str) -> Decision:
    weight = resolution.weight
    if weight is None:
        return resolution.hit
    key = message_key if sticky_value is None else sticky_value
    return resolution.hit if split_bucket(key) < weight else resolution.miss


@dataclass(frozen=True, slots=True)
class ConsumerDecision:
    """Where a SUBSCRIBE to a destination reads from."""

    rule: str
    mode: Mode
    sources: tuple[str, ...]  # brokers the subscription reads from, legacy first
    amazonmq_destination: str | None  # None iff "amazonmq" not in sources
    drain_legacy: bool  # legacy's side ends once legacy's queue is empty (cutover queues)
    routes_version: str


def decide_subscribe(
    table: RouteTable, destination: str, dry_run: bool = False
) -> ConsumerDecision:
    """Where a consumer of ``destination`` reads from, under ``table``.

    legacy and mirror (and any dry run): legacy only; mirror's copy on Amazon MQ is for
    verification, not for consumers. split: both brokers, for as long as the route
    splits. cutover: both, and legacy's side of a queue is dropped once legacy's
    backlog is empty (topics keep it: a topic has no backlog to wait for, and
    fallbacks still publish there).
    """
    resolution = table.resolve(destination)
    route = resolution.route
    rule = route.name if route is not None else resolution.hit.rule
    if route is None or dry_run or route.dry_run or route.mode in (Mode.LEGACY, Mode.MIRROR):
        mode = route.mode if route is not None else resolution.hit.mode
        return ConsumerDecision(rule, mode, (LEGACY,), None, False, table.version)
    return ConsumerDecision(
        rule,
        route.mode,
        (LEGACY, AMAZONMQ),
        route.target_destination or destination,
        route.mode is Mode.CUTOVER and not destination.startswith("/topic/"),
        table.version,
    )
