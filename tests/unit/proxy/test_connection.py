"""``Connection``: chunks handed to a handler in order, reading paused while it waits.

Real loopback sockets, on both event loops the proxy runs on (asyncio's and uvloop's:
uvloop's transports are not ``asyncio.Transport`` subclasses).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine
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


def test_chunks_wait_while_the_handler_waits_then_arrive_in_order(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()
        seen: list[bytes] = []
        gate = asyncio.Event()

        async def wait_for_gate() -> None:
            await gate.wait()

        def handler(data: bytes) -> Awaitable[None] | None:
            seen.append(data)
            return wait_for_gate() if data.startswith(b"wait") else None

        serving = asyncio.ensure_future(connection.serve(handler))
        client.write(b"wait;")
        await until(lambda: connection.waiting)
        client.write(b"one;")
        await client.drain()
        await asyncio.sleep(0.05)  # time for "one;" to arrive, if it were going to
        assert b"".join(seen) == b"wait;"  # nothing handed over while the handler waits
        client.write(b"two;")
        client.write_eof()
        await asyncio.sleep(0.05)
        assert not serving.done()  # EOF came, but chunks are still owed to the handler
        gate.set()
        await serving  # returns at EOF, after every chunk was handled
        assert b"".join(seen) == b"wait;one;two;"
        client.close()

    run(main())


def test_a_handler_error_ends_serving_and_later_bytes_go_to_read(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()

        def handler(data: bytes) -> None:
            raise ValueError(f"bad {data!r}")

        serving = asyncio.ensure_future(connection.serve(handler))
        client.write(b"first")
        with pytest.raises(ValueError, match="bad b'first'"):
            await serving
        client.write(b"rest")
        client.write_eof()
        data = b""
        while chunk := await connection.read():
            data += chunk
        assert data == b"rest"
        client.close()

    run(main())


def test_a_failed_wait_ends_serving_with_its_error(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()

        async def broken() -> None:
            raise ConnectionError("legacy went away")

        serving = asyncio.ensure_future(connection.serve(lambda data: broken()))
        client.write(b"x")
        with pytest.raises(ConnectionError, match="legacy went away"):
            await serving
        client.close()

    run(main())


def test_fail_ends_serving_and_read_returns_what_came_before(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()
        client.write(b"CONNECT")
        assert await connection.read() == b"CONNECT"
        serving = asyncio.ensure_future(connection.serve(lambda data: None))
        await asyncio.sleep(0)
        connection.fail(TimeoutError("frame not completed"))
        with pytest.raises(TimeoutError, match="frame not completed"):
            await serving
        client.close()
        assert await connection.read() == b""  # end of input

    run(main())


def test_a_reset_ends_serving_with_the_error(run: Any) -> None:
    async def main() -> None:
        connection, _, client = await pair()
        serving = asyncio.ensure_future(connection.serve(lambda data: None))
        sock = client.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.transport.abort()  # RST, not FIN
        with pytest.raises(OSError):
            await serving
        await connection.closed

    run(main())


def test_drain_waits_for_a_peer_that_reads_slowly(run: Any) -> None:
    async def main() -> None:
        connection, reader, client = await pair()
        connection.transport.set_write_buffer_limits(high=64 * 1024)
        chunk = b"x" * (32 << 20)
        connection.write(chunk)  # far beyond what the kernel's socket buffers take
        draining = asyncio.ensure_future(connection.drain())
        await asyncio.sleep(0.05)
        assert not draining.done()  # the peer has not read: back-pressure holds
        received = 0
        while received < len(chunk):
            received += len(await reader.read(1 << 16))
        await draining
        client.close()

    run(main())
