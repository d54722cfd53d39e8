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

from .destinations import BrokerDestination, IllegalDestination, broker_destinations
from .model import AMAZONMQ, DEFAULT_RULE, LEGACY, Decision, Mode
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
    # Amazon MQ's destination was renamed by the route (target_destination): a MESSAGE
    # naming it is given the client's name back; any other name is left as the broker
    # wrote it (a wildcard subscription's messages name their own destinations).
    renamed: bool = False


def decide_subscribe(
    table: RouteTable, destination: str, dry_run: bool = False
) -> ConsumerDecision:
    """Where a consumer of ``destination`` (the header value) reads from, under ``table``.

    Decided per destination the broker subscribes to (``broker_destinations``): legacy
    and mirror (and any dry run): legacy only; mirror's copy on Amazon MQ is for
    verification, not for consumers. split: both brokers, for as long as the route
    splits. cutover: both, and legacy's side of a queue is dropped once legacy's
    backlog is empty (topics keep it: a topic has no backlog to wait for, and
    fallbacks still publish there). A wildcard reads both when any split or cutover
    route may match what it covers; a composite reads both when any part does (on Amazon
    MQ it subscribes to those parts only).
    """
    version = table.version
    try:
        leaves = broker_destinations(destination)
    except IllegalDestination:
        leaves = ()
    parts = [_subscribe_part(table, leaf, dry_run) for leaf in leaves]
    moved = [part for part in parts if AMAZONMQ in part.sources]
    if not moved:
        first = parts[0] if parts else None
        rule = first.rule if first is not None else DEFAULT_RULE
        mode = first.mode if first is not None else Mode.LEGACY
        return ConsumerDecision(rule, mode, (LEGACY,), None, False, version)
    lead = moved[0]
    targets = ",".join(dict.fromkeys(p.amazonmq_destination or "" for p in moved))
    return ConsumerDecision(
        lead.rule,
        lead.mode,
        (LEGACY, AMAZONMQ),
        targets,
        all(p.drain_legacy for p in parts),
        version,
        renamed=len(parts) == 1 and lead.renamed,
    )


def _subscribe_part(table: RouteTable, leaf: BrokerDestination, dry_run: bool) -> ConsumerDecision:
    version = table.version
    legacy_only = ConsumerDecision(DEFAULT_RULE, Mode.LEGACY, (LEGACY,), None, False, version)
    if leaf.temporary or dry_run:
        return legacy_only
    if leaf.pattern:
        route = next(
            (
                r
                for r in table.routes_overlapping(leaf.stomp)
                if r.mode in (Mode.SPLIT, Mode.CUTOVER) and not r.dry_run
            ),
            None,
        )
        if route is None:
            return legacy_only
        return ConsumerDecision(
            route.name, route.mode, (LEGACY, AMAZONMQ), leaf.stomp, False, version
        )
    route = table.resolve_name(leaf.stomp).route
    if route is None:
        return legacy_only
    if route.dry_run or route.mode in (Mode.LEGACY, Mode.MIRROR):
        return ConsumerDecision(route.name, route.mode, (LEGACY,), None, False, version)
    return ConsumerDecision(
        route.name,
        route.mode,
        (LEGACY, AMAZONMQ),
        route.target_destination or leaf.stomp,
        route.mode is Mode.CUTOVER and leaf.kind == "queue",
        version,
        renamed=route.target_destination is not None and route.target_destination != leaf.stomp,
    )
