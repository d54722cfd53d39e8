"""A Playbook for the session core (after mitmproxy's): events in, commands out, no sockets.

``Play`` builds a ``SessionCore`` over a real route table and a fact recorder, plays the
driver's part by hand (the test decides when legacy answers, when Amazon MQ confirms,
when time passes) and offers small readers over the commands that came back.
"""

from __future__ import annotations

from collections.abc import Mapping
from textwrap import dedent
from typing import Any, TypeVar

from strangler.facts import Fact, FactTemplate
from strangler.proxy.context import ProxyContext, ProxySettings, RoutesHolder
from strangler.proxy.core.commands import (
    Command,
    OpenLegacy,
    SubscribeAmazonMQ,
    ToAmazonMQ,
    ToClient,
    ToLegacy,
)
from strangler.proxy.core.session import SessionCore
from strangler.proxy.traces import TraceIds
from strangler.routes import parse_routes
from strangler.stomp import Frame, FrameParser

BROKERS = dedent("""\
    brokers:
      legacy:
        url: stomp://127.0.0.1:61611
      amazonmq:
        url: stomp+ssl://127.0.0.1:61614
    """)

C = TypeVar("C", bound=Command)


class Facts:
    """Stands in for the FactSink: records (name, fields) as emitted."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []
        self.dropped_total = 0

    def emit(self, fact: Fact, /, **fields: Any) -> None:
        self.emitted.append((str(fact), fields))

    def record(self, fact: Fact, fields: dict[str, Any]) -> None:
        self.emitted.append((str(fact), fields))

    def template(self, fact: Fact, fields: Mapping[str, Any]) -> FactTemplate:
        return FactTemplate(fact, fields, "trace_id", {})

    def record_from(self, template: FactTemplate, value: str, ts: float) -> None:
        self.emitted.append((str(template.fact), template.with_value(value)))

    def record_run(
        self, template: FactTemplate, prefix: str, first: int, count: int, ts: float
    ) -> None:
        for n in range(first, first + count):
            self.record_from(template, f"{prefix}{n:08x}", ts)

    def named(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [
            f for n, f in self.emitted if n == name and all(f.get(k) == v for k, v in match.items())
        ]


class Play:
    def __init__(self, routes: str = "  []\n", extra: str = "", **settings: Any) -> None:
        body = " []\n" if routes.strip() == "[]" else "\n" + dedent(routes)
        table = parse_routes(BROKERS + extra + "routes:" + body, "routes.yaml")
        self.facts = Facts()
        self.ctx = ProxyContext(
            ProxySettings(**settings),
            RoutesHolder(table),
            self.facts,  # type: ignore[arg-type]  # duck-typed sink
        )
        self.now = 100.0
        self.core = SessionCore(self.ctx, "s1", "127.0.0.1:5000", TraceIds())
        self.core.state.clock = lambda: self.now
        self.log: list[Command] = list(self.core.start())

    # -- driving --------------------------------------------------------------------

    def record(self, commands: list[Command]) -> list[Command]:
        self.log.extend(commands)
        return commands

    def client(self, data: bytes | str) -> list[Command]:
        raw = data.encode() if isinstance(data, str) else data
        return self.record(self.core.client_data(raw))

    def legacy(self, data: bytes | str) -> list[Command]:
        raw = data.encode() if isinstance(data, str) else data
        return self.record(self.core.legacy_data(raw))

    def outcome(
        self, token: str, failure: str | None = None, stored: bool = False
    ) -> list[Command]:
        return self.record(self.core.amazonmq_outcome(token, failure, stored))

    def amazonmq_message(self, data: bytes | str) -> list[Command]:
        raw = data.encode() if isinstance(data, str) else data
        (frame,) = [e for e in FrameParser(version=self.core.state.version).feed(raw)]
        assert isinstance(frame, Frame)
        return self.record(self.core.amazonmq_message(frame))

    def timer(self, name: str) -> list[Command]:
        return self.record(self.core.timer(name))

    def connect(self, version: str = "1.2", login: str = "producer") -> list[Command]:
        """CONNECT through legacy, as a well-behaved producer and broker do it."""
        accept = f"accept-version:{version}\n" if version != "1.0" else ""
        out = self.client(f"CONNECT\n{accept}host:x\nlogin:{login}\npasscode:p\n\n\0")
        assert OpenLegacy() in out
        self.record(self.core.legacy_opened())
        connected = f"CONNECTED\nversion:{version}\nheart-beat:0,0\nserver:ActiveMQ\n\n\0\n"
        return self.legacy(connected)


def of(commands: list[Command], kind: type[C]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]


def to_client(commands: list[Command]) -> bytes:
    return b"".join(c.data for c in of(commands, ToClient))


def to_legacy(commands: list[Command]) -> bytes:
    return b"".join(c.data for c in of(commands, ToLegacy))


def frames(data: bytes, version: str = "1.2") -> list[Frame]:
    return [e for e in FrameParser(version=version).feed(data) if isinstance(e, Frame)]


def only(commands: list[Command], kind: type[C]) -> C:
    found = of(commands, kind)
    assert len(found) == 1, (kind.__name__, commands)
    return found[0]


def submitted(commands: list[Command]) -> list[ToAmazonMQ]:
    return of(commands, ToAmazonMQ)


def subscribed(commands: list[Command]) -> list[SubscribeAmazonMQ]:
    return of(commands, SubscribeAmazonMQ)


def header(frame: Frame, name: str) -> str | None:
    return frame.get(name)


def fields(found: list[dict[str, Any]], *names: str) -> list[Mapping[str, Any]]:
    return [{n: f.get(n) for n in names} for f in found]
