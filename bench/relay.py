"""The floor: the fastest a Python proxy on this machine can be.

A byte relay on uvloop with asyncio Protocols: every chunk a producer sends goes to
the broker as it is, and back, with no parsing, no routing and no facts. Nothing a
Python STOMP proxy does per message can be cheaper than this, so its ratio to a
direct connection (the bench's ``relay`` arm, measured in the same run) separates
what Python costs from what strangler's own work costs.

    python -m bench.relay --listen 127.0.0.1:62000 --to 127.0.0.1:61611
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from strangler import allocator

from .loadgen import run


class _Upstream(asyncio.Protocol):
    def __init__(self, downstream: asyncio.Transport) -> None:
        self.downstream = downstream

    def data_received(self, data: bytes) -> None:
        self.downstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.downstream.close()


class _Downstream(asyncio.Protocol):
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.early: list[bytes] = []  # what the producer sent before the broker answered
        self._connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(
                lambda: _Upstream(self.transport),  # type: ignore[arg-type]
                *self.target,
            )
        except OSError:
            self.transport.close()
            return
        self.upstream = upstream
        upstream.writelines(self.early)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(listen: tuple[str, int], to: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Downstream(*to), *listen, reuse_address=True)
    print(f"relay: listening on {listen[0]}:{listen[1]}", file=sys.stderr, flush=True)
    await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT")
    parser.add_argument("--to", type=_address, required=True, help="the broker's HOST:PORT")
    args = parser.parse_args(argv)
    allocator.tune()  # glibc's thresholds as `strangler run` sets them: the same floor
    with contextlib.suppress(KeyboardInterrupt):
        run(serve(args.listen, args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main())
