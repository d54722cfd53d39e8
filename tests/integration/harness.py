"""Test harness: a real proxy on a real socket, real brokers, stomp.py clients.

The proxy runs in-process on its own event loop thread (so a test can read its
facts and stop it), but it is reached only over TCP, exactly like a producer
reaches it. Nothing here mocks a broker.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stomp
from stomp.utils import Frame as StompFrame

from strangler.facts import FactSink
from strangler.proxy import (
    ProxyContext,
    ProxyServer,
    ProxySettings,
    RoutesHolder,
    RoutesReloader,
)
from strangler.proxy.context import TrafficTap
from strangler.routes import load_routes
from strangler.stomp import Frame, FrameParser

from .brokers import BrokerInfo

WAIT = 20.0  # upper bound for anything a test awaits; events end the wait much sooner


# -- routes ---------------------------------------------------------------------


def routes_yaml(
    legacy: BrokerInfo,
    amazonmq: BrokerInfo | None,
    routes: str,
    *,
    amazonmq_port: int | None = None,
    extra: str = "",
    amazonmq_block: str | None = None,
) -> str:
    """A routes.yaml for the test brokers; ``routes`` is the YAML list body.

    ``amazonmq_block`` replaces the generated ``amazonmq:`` broker section.
    """
    text = f"brokers:\n  legacy:\n    url: {legacy.url}\n"
    if amazonmq_block is not None:
        text += amazonmq_block
    elif amazonmq is not None:
        port = amazonmq_port if amazonmq_port is not None else amazonmq.port
        text += (
            "  amazonmq:\n"
            f"    url: stomp+ssl://{amazonmq.host}:{port}\n"
            f"    ca_file: {amazonmq.ca_file}\n"
            "    credentials:\n"
            "      username_env: STRANGLER_TEST_AMQ_USER\n"
            "      password_env: STRANGLER_TEST_AMQ_PASSWORD\n"
            "    heartbeat_ms: 4000\n"
        )
    return text + extra + "routes:\n" + routes


# -- the proxy ------------------------------------------------------------------


@dataclass
class RunningProxy:
    host: str
    port: int
    facts_path: Path
    sink: FactSink
    server: ProxyServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    reloader: RoutesReloader
    emitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def facts(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """Facts written so far (flushed first), optionally filtered."""
        self.sink.flush()
        found = []
        for line in self.facts_path.read_text().splitlines():
            fact = json.loads(line)
            if event is not None and fact["event"] != event:
                continue
            if all(fact.get(k) == v for k, v in match.items()):
                found.append(fact)
        return found

    def wait_fact(
        self, event: str, count: int = 1, *, within: float = WAIT, **match: Any
    ) -> list[dict[str, Any]]:
        """Wait (up to ``within`` seconds) until ``count`` matching facts were emitted,
        then read them from the file."""

        def enough() -> bool:
            seen = [
                fields
                for name, fields in self.emitted
                if name == event and all(fields.get(k) == v for k, v in match.items())
            ]
            return len(seen) >= count

        with self.changed:
            self.changed.wait_for(enough, within)
        return self.facts(event, **match)

    def _on_fact(self, name: str, fields: Any) -> None:
        with self.changed:
            self.emitted.append((str(name), dict(fields)))
            self.changed.notify_all()

    def reload(self, trigger: str = "test") -> bool:
        future = asyncio.run_coroutine_threadsafe(self.reloader.reload(trigger), self.loop)
        return future.result(timeout=WAIT)

    def stop(self) -> None:
        """Stop as SIGTERM does (a grace period for in-flight frames); idempotent."""
        if self.loop.is_closed() or not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.reloader.stop(), self.loop).result(timeout=30)
        future = asyncio.run_coroutine_threadsafe(self.server.stop(grace=5.0), self.loop)
        future.result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.sink.close()


def start_proxy(
    routes_file: Path,
    facts_path: Path,
    *,
    watch: bool = False,
    tap: TrafficTap | None = None,
    **settings: Any,
) -> RunningProxy:
    table = load_routes(routes_file)
    sink = FactSink(path=facts_path, interval=0.01)
    ctx = ProxyContext(
        ProxySettings(listen_host="127.0.0.1", listen_port=0, **settings),
        RoutesHolder(table),
        sink,
        tap=tap,
    )
    server = ProxyServer(ctx)
    reloader = RoutesReloader(ctx, routes_file)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def begin() -> None:
        await server.start()
        if watch:
            reloader.start_watching()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(begin())
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="strangler-proxy", daemon=True)
    thread.start()
    if not started.wait(WAIT):
        raise RuntimeError("proxy did not start")
    host, port = server.address
    proxy = RunningProxy(host, port, facts_path, sink, server, loop, thread, reloader)
    sink.listeners.append(proxy._on_fact)
    return proxy


# -- clients --------------------------------------------------------------------


class Recorder(stomp.ConnectionListener):  # type: ignore[misc]
    """Collects what a stomp.py connection receives; tests wait on its events."""

    def __init__(self) -> None:
        self.receipts: list[str] = []
        self.errors: list[StompFrame] = []
        self.messages: list[StompFrame] = []
        self.disconnected = threading.Event()
        self._changed = threading.Condition()

    def _note(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def on_receipt(self, frame: StompFrame) -> None:
        self.receipts.append(frame.headers["receipt-id"])
        self._note()

    def on_error(self, frame: StompFrame) -> None:
        self.errors.append(frame)
        self._note()

    def on_message(self, frame: StompFrame) -> None:
        self.messages.append(frame)
        self._note()

    def on_disconnected(self) -> None:
        self.disconnected.set()
        self._note()

    def wait(self, predicate: Any, timeout: float = WAIT) -> bool:
        with self._changed:
            return bool(self._changed.wait_for(predicate, timeout))


@dataclass
class Client:
    conn: Any
    recorder: Recorder
    sent: list[str] = field(default_factory=list)

    def send(
        self,
        destination: str,
        body: bytes | str,
        *,
        receipt: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> str:
        receipt_id = f"r-{uuid.uuid4().hex[:12]}"
        extra = dict(headers or {})
        if receipt:
            extra["receipt"] = receipt_id
        self.conn.send(destination, body, headers=extra, **kwargs)
        self.sent.append(receipt_id)
        return receipt_id

    def wait_receipts(self, receipts: list[str], timeout: float = WAIT) -> bool:
        wanted = set(receipts)
        return self.recorder.wait(lambda: wanted <= set(self.recorder.receipts), timeout)

    def close(self) -> None:
        """DISCONNECT and wait until it is done (stomp.py's disconnect does not wait)."""
        if self.conn.is_connected():
            self.conn.disconnect()
            self.recorder.disconnected.wait(WAIT)


def connect(
    host: str,
    port: int,
    login: str,
    passcode: str,
    *,
    version: str = "1.2",
    ca_file: str | None = None,
    heartbeats: tuple[int, int] = (0, 0),
) -> Client:
    factory = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}
    kwargs: dict[str, Any] = {"auto_decode": False}
    if version != "1.0":
        kwargs["heartbeats"] = heartbeats
    conn = factory[version]([(host, port)], **kwargs)
    if ca_file is not None:
        conn.set_ssl(for_hosts=[(host, port)], ca_certs=ca_file)
    recorder = Recorder()
    conn.set_listener("recorder", recorder)
    conn.connect(login, passcode, wait=True)
    return Client(conn, recorder)


def connect_broker(broker: BrokerInfo) -> Client:
    return connect(
        broker.host, broker.port, broker.username, broker.password, ca_file=broker.ca_file
    )


def drain(broker: BrokerInfo, destination: str) -> list[StompFrame]:
    """Every message now on ``destination`` (a queue), consumed.

    A sentinel is sent with a receipt after the messages under test were
    confirmed; reading until the sentinel proves nothing else is queued before
    it, without waiting an arbitrary time for "no more messages".
    """
    client = connect_broker(broker)
    try:
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        client.send(destination, sentinel, receipt=True)
        assert client.wait_receipts(client.sent), "sentinel not confirmed"
        client.conn.subscribe(destination, id="drain", ack="auto")
        done = client.recorder.wait(
            lambda: any(m.body == sentinel.encode() for m in client.recorder.messages)
        )
        assert done, f"sentinel never arrived on {destination}"
        messages = list(client.recorder.messages)
        cut = next(i for i, m in enumerate(messages) if m.body == sentinel.encode())
        return messages[:cut]
    finally:
        client.close()


def unique_queue(prefix: str) -> str:
    return f"/queue/{prefix}.{uuid.uuid4().hex[:10]}"


def traces_of(messages: list[StompFrame], header: str = "strangler-trace-id") -> list[str]:
    return [m.headers[header] for m in messages]


def routed_traces(proxy: RunningProxy, destination: str) -> dict[str, dict[str, Any]]:
    return {f["trace_id"]: f for f in proxy.facts("message_routed", destination=destination)}


def iter_bodies(messages: list[StompFrame]) -> Iterator[bytes]:
    for m in messages:
        yield m.body


# -- raw sockets, for what a well-behaved client library cannot send -----------------


def raw_login(sock: socket.socket, legacy: BrokerInfo) -> FrameParser:
    """Log in over a plain socket (STOMP 1.2); the parser to read the session with."""
    sock.sendall(
        f"CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{legacy.username}\n"
        f"passcode:{legacy.password}\n\n\0".encode()
    )
    parser = FrameParser()
    assert next_frame(sock, parser).command == "CONNECTED"
    parser.version = "1.2"
    return parser


def next_frame(sock: socket.socket, parser: FrameParser) -> Frame:
    """The next frame on a raw socket (heart-beats skipped)."""
    while True:
        data = sock.recv(65536)
        assert data, "connection closed before a frame arrived"
        frames = [e for e in parser.feed(data) if isinstance(e, Frame)]
        if frames:
            return frames[0]


def closed_by_peer(sock: socket.socket) -> bool:
    """Read until the peer closes (a reset counts as closed)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True
