"""A fault-injecting TCP relay on loopback, in the spirit of Toxiproxy.

``Relay(target_port).start()`` listens on ``127.0.0.1:<relay.port>`` and copies
bytes to and from ``127.0.0.1:<target_port>``. It knows nothing of STOMP or
TLS (a TLS session passes through end to end), so whatever sits behind it
sees exactly what a real network would deliver. The fault is switched at
runtime, from any thread:

- ``pass_through()``: forward every chunk as it is read (the default);
- ``slow(seconds)``: hold each chunk ``seconds`` before forwarding it (per
  direction, in order: a slow link, not a reordering one);
- ``stall()``: stop forwarding in both directions and stop reading (so TCP
  back-pressure reaches the sender) while every connection stays open; data
  already read is held and forwarded, in order, once the relay flows again;
  new connections are accepted but carry nothing until then;
- ``cut()``: close both sides of every connection now (reset, buffers
  dropped) and refuse new connections until the fault is switched off;
- ``sever()``: close both sides of every current connection once, then keep
  accepting (a dropped connection, the next one works).

The relay runs its own asyncio loop on a daemon thread; control calls return
once the change is in effect. It has no pytest import, so it can be used from
a REPL or a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
CHUNK = 65536


@dataclass
class RelayStats:
    accepted: int = 0  # connections accepted from the near side
    refused: int = 0  # closed at once: target unreachable, or the relay is cut
    severed: int = 0  # live connections closed by cut() / sever()
    bytes_up: int = 0  # near side -> target
    read_up: int = 0  # read from the near side, forwarded or still held (slow, stall)
    bytes_down: int = 0  # target -> near side


@dataclass(eq=False)
class _Pair:
    near: asyncio.StreamWriter
    far: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.near, self.far):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class Relay:
    def __init__(self, target_port: int, target_host: str = HOST, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._listen_port = listen_port
        self.port = 0
        self.mode = "pass"
        self.delay = 0.0
        self.stats = RelayStats()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._flowing: asyncio.Event | None = None

    # -- lifecycle (from the test thread) ------------------------------------

    def start(self) -> Relay:
        ready = threading.Event()

        async def begin() -> None:
            self._flowing = asyncio.Event()
            self._flowing.set()
            self._server = await asyncio.start_server(self._accept, HOST, self._listen_port)
            self.port = self._server.sockets[0].getsockname()[1]

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(begin())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-relay", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("relay did not start")
        return self

    def close(self) -> None:
        async def end() -> None:
            if self._server is not None:
                self._server.close()
            for pair in list(self._pairs):
                pair.abort()
            self._pairs.clear()
            # Handlers still connecting or pumping end now, not later in a closed loop
            # (a "loop is closed" warning from an _accept caught connecting, otherwise).
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        if self._thread is None:
            return
        if self._loop.is_running():
            self._call(end())
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()
        self._thread = None

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults (from any thread) --------------------------------------------

    def pass_through(self) -> None:
        self._set("pass", 0.0)

    def slow(self, seconds: float) -> None:
        """Hold each chunk ``seconds`` before forwarding it, in both directions."""
        self._set("slow", seconds)

    def stall(self) -> None:
        """Stop forwarding (and reading) in both directions; connections stay open."""
        self._set("stall", 0.0)

    def cut(self) -> None:
        """Reset every live connection and refuse new ones until the mode changes."""
        self._set("cut", 0.0)

    def sever(self) -> int:
        """Reset every live connection once; new connections are accepted as before."""

        async def do() -> int:
            return self._sever_all()

        return self._call(do())

    @property
    def connections(self) -> int:
        return len(self._pairs)

    def _set(self, mode: str, delay: float) -> None:
        async def do() -> None:
            assert self._flowing is not None
            self.mode, self.delay = mode, delay
            if mode == "stall":
                self._flowing.clear()
            else:
                self._flowing.set()
            if mode == "cut":
                self._sever_all()

        self._call(do())

    def _call(self, coro: Coroutine[Any, Any, int | None]) -> int:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return int(future.result(timeout=10) or 0)

    # -- the relay (on its loop) ---------------------------------------------

    def _sever_all(self) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        self._pairs.clear()
        self.stats.severed += len(pairs)
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        if self.mode == "cut":
            self.stats.refused += 1
            writer.transport.abort()
            return
        try:
            far_reader, far_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.stats.refused += 1
            writer.transport.abort()
            return
        if self.mode == "cut":  # cut while we were connecting
            self.stats.refused += 1
            writer.transport.abort()
            far_writer.transport.abort()
            return
        pair = _Pair(writer, far_writer)
        self._pairs.add(pair)
        up = asyncio.create_task(self._pump(reader, far_writer, pair, upward=True))
        down = asyncio.create_task(self._pump(far_reader, writer, pair, upward=False))
        pair.tasks += [up, down]
        await asyncio.gather(up, down, return_exceptions=True)
        self._pairs.discard(pair)
        pair.abort()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: _Pair,
        *,
        upward: bool,
    ) -> None:
        flowing = self._flowing
        assert flowing is not None
        try:
            while True:
                await flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                if upward:
                    self.stats.read_up += len(data)
                if self.mode == "slow" and self.delay > 0:
                    await asyncio.sleep(self.delay)
                await flowing.wait()  # a stall that began while this chunk was read holds it
                writer.write(data)
                await writer.drain()
                if upward:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other side too (what a proxy in the path would do).
            for w in (pair.near, pair.far):
                with contextlib.suppress(Exception):
                    w.close()
