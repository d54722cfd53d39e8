"""``Connection``: chunks handed to the driver in order, reading paused when it asks.

Real loopback sockets, on both event loops the proxy runs on (asyncio's and uvloop's:
uvloop's transports are not ``asyncio.Transport`` subclasses).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from strangler.proxy.connection import Connection

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
WAIT = 5.0


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    def runner(main: Coroutine[Any, Any, None]) -> None:
        loop = LOOPS[request.param]()
        try:
            loop.run_until_complete(asyncio.wait_for(main, WAIT))
        finally:
            loop.close()

    return runner


async def pair() -> tuple[Connection, asyncio.StreamReader, asyncio.StreamWriter]:
    """A Connection (server side) and a stream client connected to it."""
    accepted: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
    server = await asyncio.get_running_loop().create_server(
        lambda: Connection(accepted.set_result), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = await accepted
    server.close()
    return connection, reader, writer


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def test_chunks_before_take_come_first_then_straight_through_in_order(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()
        client.write(b"early;")
        await client.drain()
        await asyncio.sleep(0.05)  # time for it to arrive before anyone takes over
        seen: list[bytes] = []
        ends: list[str | None] = []
        connection.take(seen.append, ends.append)
        assert b"".join(seen) == b"early;"
        client.write(b"late;")
        client.write_eof()
        await until(lambda: bool(ends))
        assert b"".join(seen) == b"early;late;" and ends == [None]
        client.close()

    run(main())


def test_paused_reading_holds_bytes_until_resumed(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()
        seen: list[bytes] = []
        connection.take(seen.append, lambda reason: None)
        connection.pause_reading()
        client.write(b"held")
        await client.drain()
        await asyncio.sleep(0.05)  # time for it to arrive, if it were going to
        assert seen == []
        connection.resume_reading()
        await until(lambda: bool(seen))
        assert b"".join(seen) == b"held"
        client.close()

    run(main())


def test_an_end_before_take_is_reported_at_take_exactly_once(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()
        client.write(b"CONNECT")
        client.close()
        await until(lambda: connection.ended)
        ends: list[str | None] = []
        seen: list[bytes] = []
        connection.take(seen.append, ends.append)
        assert seen == [b"CONNECT"] and ends == [None]
        connection.connection_lost(None)
        assert ends == [None]

    run(main())


def test_a_reset_ends_with_a_reason(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()
        ends: list[str | None] = []
        connection.take(lambda data: None, ends.append)
        sock = client.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.transport.abort()  # RST, not FIN
        await until(lambda: bool(ends))
        assert ends[0] is not None

    run(main())


def test_writing_pauses_for_a_peer_that_reads_slowly_and_says_when_it_drained(run: Any) -> None:
    async def main() -> None:
        connection, reader, client = await pair()
        connection.transport.set_write_buffer_limits(high=64 * 1024)
        writable: list[bool] = []
        connection.on_writable = lambda: writable.append(True)
        chunk = b"x" * (32 << 20)
        connection.write(chunk)  # far beyond what the kernel's socket buffers take
        assert connection.writing_paused and connection.buffered() > 64 * 1024
        received = 0
        while received < len(chunk):
            received += len(await reader.read(1 << 16))
        await until(lambda: bool(writable))
        assert not connection.writing_paused
        client.close()

    run(main())


class _Recording:
    """The connection's socket, with its TCP_QUICKACK re-arms counted."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.quickacks = 0

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if option == socket.TCP_QUICKACK:
            self.quickacks += 1
        self.sock.setsockopt(level, option, value)


def test_quickack_is_re_armed_after_each_read_unless_the_reader_lets_the_ack_wait(
    run: Any,
) -> None:
    async def main() -> None:
        connection, _, client = await pair()
        recording = _Recording(connection._socket)
        connection._socket = recording  # type: ignore[assignment]
        seen: list[bytes] = []

        def on_data(data: bytes) -> None:
            seen.append(data)
            if data.endswith(b"wait"):  # for this read only: the next one re-arms again
                connection.ack_may_wait = True

        connection.take(on_data, lambda reason: None)
        for n, chunk in enumerate((b"ack", b"wait", b"ack")):
            client.write(chunk)
            await until(lambda n=n: len(seen) > n)  # type: ignore[misc]
        assert seen == [b"ack", b"wait", b"ack"]
        assert recording.quickacks == 2
        client.close()

    run(main())
