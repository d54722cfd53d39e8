"""The destinations a STOMP ``destination`` header names, as ActiveMQ Classic reads it.

Routing must decide on the destination the broker will store into, not on the header
as written, or a client could move a message past its route (``/queue/x `` with a
space, ``/queue/a,/queue/x``, ``x`` without a prefix all store into queue ``x``).
This module models ActiveMQ 5.17's ``LegacyFrameTranslator.convertDestination`` (SEND
and SUBSCRIBE, with the fallback for unprefixed names) and ``ActiveMQDestination``'s
``createDestination``/``setPhysicalName``, and is checked against the real broker
(tests/integration/test_activemq_reading.py):

- the whole value is trimmed (Java ``trim``: chars <= U+0020), then split at ``,``
  (Java ``split``: trailing empty parts dropped); each part must start with
  ``/queue/``, ``/topic/``, ``/remote-temp-queue/``, ``/remote-temp-topic/``,
  ``/temp-queue/`` or ``/temp-topic/``; any other part is taken as a queue name;
- the parts are joined as qualified names (``queue://x,topic://y``) and parsed again:
  a ``?`` starts options, which end the name (``/queue/a?x=1,/queue/b`` is queue
  ``a`` alone); a ``,`` before it makes a composite whose tokens are trimmed, empty
  ones skipped, duplicates dropped, and each may carry its own ``queue://``-style
  prefix; every name is trimmed and must not be empty;
- ``/temp-queue/`` and ``/temp-topic/`` name the connection's own temporary
  destinations: they exist only on the broker the client is connected to (legacy).

Pure: no I/O. ``broker_destinations`` is called once per distinct header value (the
route table caches its answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ..stomp.activemq import java_trim

Kind = Literal["queue", "topic", "temp-queue", "temp-topic"]

_STOMP_PREFIXES: Final[tuple[tuple[str, Kind], ...]] = (
    ("/queue/", "queue"),
    ("/topic/", "topic"),
    ("/remote-temp-queue/", "temp-queue"),
    ("/remote-temp-topic/", "temp-topic"),
)
_CONNECTION_TEMP: Final[tuple[tuple[str, Kind], ...]] = (
    ("/temp-queue/", "temp-queue"),
    ("/temp-topic/", "temp-topic"),
)
_QUALIFIED: Final[tuple[tuple[str, Kind], ...]] = (
    ("queue://", "queue"),
    ("topic://", "topic"),
    ("temp-queue://", "temp-queue"),
    ("temp-topic://", "temp-topic"),
)
_QUALIFIER: Final[dict[Kind, str]] = {kind: prefix for prefix, kind in _QUALIFIED}
_STOMP_FORM: Final[dict[Kind, str]] = {
    "queue": "/queue/",
    "topic": "/topic/",
    "temp-queue": "/remote-temp-queue/",
    "temp-topic": "/remote-temp-topic/",
}
# Stands for a connection's temporary destination inside a joined name: holds no
# ',', '?' or char Java's trim removes, so the second parse keeps it whole; the index
# after it says which part it was (a private-use char: no real name holds it).
_TEMP_MARK: Final = "\U000f0000temp"


class IllegalDestination(ValueError):
    """ActiveMQ refuses this destination (the client gets the broker's own ERROR)."""


@dataclass(frozen=True, slots=True)
class BrokerDestination:
    kind: Kind
    name: str  # the physical name the broker stores under
    # A /temp-queue/ or /temp-topic/ of the client's own connection (``name`` is the
    # part as written): it lives on the broker the client is connected to.
    connection_temp: bool = False

    @property
    def stomp(self) -> str:
        """The STOMP form routes are written in: ``/queue/orders``, ``/topic/prices``."""
        return self.name if self.connection_temp else _STOMP_FORM[self.kind] + self.name

    @property
    def temporary(self) -> bool:
        return self.kind in ("temp-queue", "temp-topic")

    @property
    def pattern(self) -> bool:
        """An ActiveMQ wildcard (``*``, ``>``): a subscription to many destinations."""
        return "*" in self.name or ">" in self.name


def broker_destinations(value: str) -> tuple[BrokerDestination, ...]:
    """What ActiveMQ stores a SEND to ``value`` into (or subscribes to), in order."""
    name = java_trim(value)
    parts = _java_split(name)
    temps: list[str] = []
    qualified: list[str] = []
    for part in parts:
        qualified.append(_qualify(part, value, temps))
    found: dict[BrokerDestination, None] = {}
    for leaf in _create(",".join(qualified), "queue"):
        if _TEMP_MARK in leaf.name:
            index = int(leaf.name.rpartition(_TEMP_MARK)[2])
            leaf = BrokerDestination(leaf.kind, temps[index], connection_temp=True)
        found.setdefault(leaf, None)
    return tuple(found)


def _qualify(part: str, whole: str, temps: list[str]) -> str:
    for prefix, kind in _STOMP_PREFIXES:
        if part.startswith(prefix):
            return _QUALIFIER[kind] + part[len(prefix) :]
    for prefix, kind in _CONNECTION_TEMP:
        if part.startswith(prefix):
            temps.append(part)
            return f"{_QUALIFIER[kind]}{_TEMP_MARK}{len(temps) - 1}"
    # ActiveMQ's fallback: an unprefixed name is a queue; a one-char part stands for
    # the whole, untrimmed header ("Use the original non-trimmed name instead").
    fallback = java_trim(whole if len(part) == 1 else part)
    if not fallback:
        raise IllegalDestination("a non-empty destination name is required")
    physical = fallback.partition("?")[0]
    # getQualifiedName: a composite's is its physical name, anything else is prefixed.
    return physical if "," in physical else "queue://" + physical


def _create(name: str, default: Kind) -> list[BrokerDestination]:
    """``ActiveMQDestination.createDestination``: a qualified prefix wins over ``default``."""
    for prefix, kind in _QUALIFIED:
        if name.startswith(prefix):
            return _new(kind, name[len(prefix) :])
    return _new(default, name)


def _new(kind: Kind, name: str) -> list[BrokerDestination]:
    """``setPhysicalName``: trim, options cut at ``?``, a ``,`` before them: composite."""
    name = java_trim(name)
    if not name:
        raise IllegalDestination("a non-empty destination name is required")
    physical, _, _options = name.partition("?")
    if "," not in physical:
        return [BrokerDestination(kind, physical)]
    leaves: list[BrokerDestination] = []
    tokens = dict.fromkeys(java_trim(t) for t in physical.split(","))
    for token in tokens:
        if token:
            leaves.extend(_create(token, kind))
    if not leaves:
        raise IllegalDestination("a composite destination needs at least one name")
    return leaves


def _java_split(name: str) -> list[str]:
    """Java's ``String.split(",")``: trailing empty strings removed; none left: the whole."""
    parts = name.split(",")
    while parts and parts[-1] == "":
        parts.pop()
    return parts if parts else [name]
