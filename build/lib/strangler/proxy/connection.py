"""One socket as an asyncio Protocol: bytes handed to the session as they arrive.

asyncio's streams wake a task through a future for every read; for a producer that
waits for each receipt that wake-up is paid twice per message (once per direction)
and was about a sixth of the proxy's CPU (bench S2). Here ``serve`` calls the handler
straight from ``data_received``; only when the handler must wait (an awaitable: a
full Amazon MQ window, a slow peer) does reading pause and a task take over until the
wait ends. ``read`` covers the few places that want one chunk at a time (the CONNECT
handshake, draining a closing client).

Invariants: chunks reach the handler in arrival order, never two at once; while a
handler's wait is pending, the transport is paused, so memory is bounded by the one
chunk a paused transport may still deliver; writes go straight to the transport, and
``drain`` waits while the transport's buffer is over its high-water mark.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..routes import BrokerEndpoint
from ..upstream import BrokerUnavailable, describe_os_error
from ..upstream.transport import client_tls_context

Handler = Callable[[bytes], Awaitable[None] | None]
_READ_PAUSE = 1 << 20  # bytes buffered for read() before the transport is paused


class Connection(asyncio.Protocol):
    def __init__(self, on_open: Callable[[Connection], None] | None = None) -> None:
        self._on_open = on_open
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._eof = False
        self._lost: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None  # read() waiting for data
        self._handler: Handler | None = None
        self._waiting = False  # the handler returned an awaitable that is still pending
        self._served: asyncio.Future[None] | None = None
        self._wait_task: asyncio.Task[None] | None = None
        self._paused = False  # reading paused by us
        self._write_paused = False
        self._drainers: list[asyncio.Future[None]] = []
        self.closed = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        if self._on_open is not None:
            self._on_open(self)

    def data_received(self, data: bytes) -> None:
        if self._handler is not None and not self._waiting and not self._chunks:
            self._deliver(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._handler is None:
            self._wake_reader()
            if self._buffered > _READ_PAUSE:
                self._pause()

    def eof_received(self) -> bool:
        self._eof = True
        self._ended()
        # Keep a plain TCP connection half-open: receipts may still be owed to the peer.
        # (asyncio's SSL transports close on EOF whatever we answer.)
        return self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = exc
        self._ended()
        for waiter in self._drainers:
            if not waiter.done():
                waiter.set_result(None)
        self._drainers.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drainers:
            if not waiter.done():
                waiter.set_result(None)
        self._drainers.clear()

    # -- reading ------------------------------------------------------------------

    async def read(self) -> bytes:
        """The bytes received so far (at least one), or b"" at end of input."""
        while not self._chunks:
            if self._eof:
                if self._lost is not None:
                    raise self._lost
                return b""
            self._reader = asyncio.get_running_loop().create_future()
            self._resume()
            try:
                await self._reader
            finally:
                self._reader = None
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        return data

    async def serve(self, handler: Handler) -> None:
        """Hand every chunk to ``handler`` until end of input; a handler's exception ends
        serving and is raised here. A lost connection raises its error."""
        self._handler = handler
        self._served = served = asyncio.get_running_loop().create_future()
        self._catch_up()
        await served

    def fail(self, exc: BaseException) -> None:
        """End ``serve`` with ``exc`` (e.g. a timer saw a frame that never finished)."""
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        self._handler = None  # from now on, chunks wait for read()
        served = self._served
        if served is not None and not served.done():
            if exc is None:
                served.set_result(None)
            else:
                served.set_exception(exc)

    @property
    def waiting(self) -> bool:
        """The handler is waiting: nothing is read until the wait ends."""
        return self._waiting

    def _deliver(self, data: bytes) -> None:
        assert self._handler is not None
        try:
            waiting = self._handler(data)
        except BaseException as exc:
            self.fail(exc)
            return
        if waiting is not None:
            self._waiting = True
            self._pause()
            self._wait_task = asyncio.ensure_future(self._wait(waiting))

    async def _wait(self, waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except BaseException as exc:
            self.fail(exc)
            return
        self._waiting = False
        self._catch_up()

    def _catch_up(self) -> None:
        """Deliver what arrived while the handler waited, then read again."""
        while self._chunks and not self._waiting and self._handler is not None:
            data = self._chunks.popleft()
            self._buffered -= len(data)
            self._deliver(data)
        if not self._waiting:
            self._resume()
            self._ended()

    def _ended(self) -> None:
        """End of input: wake a reader; end serving once every chunk was handled."""
        if not self._eof:
            return
        self._wake_reader()
        if self._handler is not None and not self._waiting and not self._chunks:
            self._finish(self._lost)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _pause(self) -> None:
        if not self._paused and not self._eof:
            self._paused = True
            with contextlib.suppress(Exception):
                self.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and not self._eof:
            self._paused = False
            with contextlib.suppress(Exception):
                self.transport.resume_reading()

    # -- writing ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        self.transport.writelines(data)

    async def drain(self) -> None:
        """Wait while the transport holds more than its high-water mark."""
        if self.transport.is_closing():
            # As StreamWriter.drain: let connection_lost run, then report the loss.
            await asyncio.sleep(0)
            if self._lost is not None:
                raise self._lost
            if self.closed.done():
                raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drainers.append(waiter)
        await waiter
        if self._lost is not None:
            raise self._lost

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def write_eof(self) -> None:
        self.transport.write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


async def open_connection(
    broker: str, endpoint: BrokerEndpoint, ca_file: str | None, timeout: float
) -> Connection:
    """A :class:`Connection` to a broker endpoint (TLS when the endpoint says so)."""
    tls = client_tls_context(ca_file) if endpoint.tls else None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            _, connection = await loop.create_connection(
                Connection,
                endpoint.host,
                endpoint.port,
                ssl=tls,
                server_hostname=endpoint.host if tls else None,
            )
    except (OSError, TimeoutError) as exc:
        raise BrokerUnavailable(broker, f"{endpoint}: {describe_os_error(exc)}") from exc
    no_delay(connection)
    return connection


def no_delay(connection: Connection) -> None:
    """Receipts are small frames a producer waits on: no Nagle delay."""
    sock = connection.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
