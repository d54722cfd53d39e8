"""Reading a queue without consuming it (ActiveMQ's STOMP queue browser), and message identity.

A SUBSCRIBE with ``browser:true`` makes ActiveMQ (5.6 on, so legacy and Amazon MQ for
ActiveMQ) deliver what the queue holds, including messages dispatched to a consumer but
not acknowledged yet, and then one MESSAGE with ``browser:end``.

Invariants:
- Only a broker whose CONNECTED says ``ActiveMQ/`` is browsed: another broker could ignore
  ``browser:true`` and deliver for real, and the browse subscription acknowledges
  automatically (ActiveMQ stops a browse with client acknowledgements at its prefetch).
- A message's identity (``message_key``) is its trace header, else its legacy
  ``message-id`` (stable for as long as the message exists; drain writes it into the trace
  header of the Amazon MQ copy, so the copy carries the same identity).
- Only identities (unless ``keyed=False``) and sizes are kept (``Backlog``), never bodies.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from ..stomp import Frame, encode_parts
from ..upstream.client import PublishError
from .brokers import Connection

ACTIVEMQ_SERVER: Final = "ActiveMQ/"
_ids = itertools.count(1)


class BrowseError(PublishError):
    """A browse that could not be completed (the broker's answer is in the message)."""


def message_key(frame: Frame, trace_header: str) -> str:
    """The id a report names a message by: its trace id, else its legacy message-id."""
    return frame.get(trace_header) or frame.get("message-id") or ""


@dataclass(slots=True)
class Backlog:
    """What a browse saw on one queue."""

    broker: str
    destination: str
    count: int = 0
    bytes: int = 0
    without_trace: int = 0  # identified by message-id instead
    redelivered: int = 0  # delivered before and not acknowledged (a consumer died)
    oldest_ms: int | None = None  # the oldest JMS timestamp (ms since the epoch)
    keyed: bool = True  # False: count only (memory stays flat on a large queue)
    keys: Counter[str] = field(default_factory=Counter)

    def add(self, frame: Frame, trace_header: str) -> None:
        self.count += 1
        self.bytes += len(frame.body)
        if frame.get(trace_header) is None:
            self.without_trace += 1
        if frame.get("redelivered") == "true":
            self.redelivered += 1
        stamp = frame.get("timestamp") or ""
        if stamp.isdigit() and int(stamp) > 0:
            self.oldest_ms = min(int(stamp), self.oldest_ms or int(stamp))
        if self.keyed:
            self.keys[message_key(frame, trace_header)] += 1

    @property
    def duplicates(self) -> dict[str, int]:
        """Ids held more than once, with their number of copies."""
        return {key: n for key, n in self.keys.items() if n > 1}

    def as_dict(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "destination": self.destination,
            "messages": self.count,
            "bytes": self.bytes,
            "without_trace_id": self.without_trace,
            "redelivered": self.redelivered,
            "duplicated_ids": len(self.duplicates),
        }


def browse(
    client: Connection, destination: str, trace_header: str, timeout: float, *, keyed: bool = True
) -> Backlog:
    """Every message ``destination`` holds now, read without consuming it.

    Raises ``BrowseError`` when the broker is not ActiveMQ, refuses, or falls silent for
    ``timeout`` seconds before ``browser:end``.
    """
    server = client.server or "a broker that does not say"
    if not server.startswith(ACTIVEMQ_SERVER):
        raise BrowseError(
            f"{client.name}: cannot browse {destination}: it is {server}, not ActiveMQ "
            "(browsing relies on ActiveMQ's browser:true subscriptions)"
        )
    backlog = Backlog(client.name, destination, keyed=keyed)
    subscription = f"strangler-browse-{next(_ids)}"
    client.send(
        encode_parts(
            "SUBSCRIBE",
            (("destination", destination), ("id", subscription), ("browser", "true")),
            b"",
            "1.2",
        )
    )
    last = time.monotonic()
    while True:
        frames = client.poll(max(0.0, last + timeout - time.monotonic()))
        if not frames and time.monotonic() - last >= timeout:
            raise BrowseError(
                f"{client.name}: browsing {destination}: no end of browse after "
                f"{backlog.count} messages and {timeout:g}s of silence"
            )
        for frame in frames:
            last = time.monotonic()
            if frame.command == "ERROR":
                detail = frame.get("message") or frame.body.decode("utf-8", "replace")[:200]
                raise BrowseError(f"{client.name}: browsing {destination} refused: {detail}")
            if frame.command != "MESSAGE" or frame.get("subscription") != subscription:
                continue
            if frame.get("browser") == "end":
                client.send(encode_parts("UNSUBSCRIBE", (("id", subscription),), b"", "1.2"))
                return backlog
            backlog.add(frame, trace_header)
