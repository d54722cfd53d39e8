"""A STOMP 1.2 load generator that is not itself the bottleneck.

Raw asyncio Protocols (no StreamReader copies), uvloop when installed, and every
frame encoded before the clock starts: a timed run only hands prepared byte
chunks to the transport and waits for receipts. The reader parses only what it
must (command, ``receipt-id``, ``content-length``, ``bench-seq``).

Each SEND carries ``bench-seq:N`` (unique within a run), so a consumer can
check that every message arrived exactly once, on the broker(s) it should be on.

Shapes (see bench/README.md): a run is one or more producers, each sending
*batches*; a batch ends with the message(s) carrying a receipt, and the
producer waits for those receipts before it starts the next batch. So
``receipt_every=1`` is request/response (S2), ``receipt_every=100`` is S3, and
``receipt_every=0`` is a single batch whose last message alone has a receipt
(S1, S4).

Standalone use (any STOMP endpoint, e.g. to compare another proxy)::

    python -m bench.loadgen --port 61611 --shape S2 --messages 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import ssl
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar, cast

CHUNK = 256 * 1024  # bytes handed to one transport.write
WRITE_HIGH_WATER = 1 << 20  # pause the producer when this much is queued in user space
TRACE_HEADER = "strangler-trace-id"  # the proxy's default: split markers, stamped runs
# A trace id shaped like the proxy's (a 16-hex-digit process prefix, the session, then
# 8 hex digits), for runs that send the proxy's header directly: what it costs the broker.
STAMP_PREFIX = "5f0c1d2e3a4b6978-1-"

T = TypeVar("T")


# -- event loop -----------------------------------------------------------------


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def cpu_self() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- endpoints and connections ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # "legacy", "amazonmq", "proxy"
    host: str
    port: int
    login: str
    passcode: str
    ca_file: str | None = None  # set: STOMP over TLS, verified against this CA

    def __str__(self) -> str:
        scheme = "stomp+ssl" if self.ca_file else "stomp"
        return f"{self.name} {scheme}://{self.host}:{self.port}"


@lru_cache(maxsize=8)
def _tls_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


class StompError(Exception):
    """The peer sent an ERROR frame, or the connection ended while we waited."""


def _header(head: bytes, name: bytes) -> bytes | None:
    """First value of header ``name`` in a frame head (command line + header lines)."""
    key = b"\n" + name + b":"
    at = head.find(key)
    if at < 0:
        return None
    start = at + len(key)
    end = head.find(b"\n", start)
    return head[start:] if end < 0 else head[start:end]


MessageHandler = Callable[[bytes], None]


class StompClient(asyncio.Protocol):
    """One STOMP connection: write prepared bytes, resolve receipts, count MESSAGEs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_message: MessageHandler | None) -> None:
        self._loop = loop
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._receipts: dict[bytes, asyncio.Future[None]] = {}
        self._writable: asyncio.Future[None] | None = None
        self.on_message = on_message
        self.messages = 0
        self.error: str | None = None

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.error or (f"connection lost: {exc}" if exc else "connection closed by peer")
        self._fail_all(StompError(reason))
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        fut, self._writable = self._writable, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        size = len(buf)
        while pos < size:
            first = buf[pos]
            if first in (0x0A, 0x0D):  # heart-beat EOL
                pos += 1
                continue
            head_end = buf.find(b"\n\n", pos)
            if head_end < 0:
                break
            head = bytes(buf[pos:head_end])
            length = _header(head, b"content-length")
            if length is not None:
                end = head_end + 2 + int(length)
                if end >= size:
                    break
            else:
                end = buf.find(b"\0", head_end + 2)
                if end < 0:
                    break
            self._on_frame(head, buf, head_end + 2, end)
            pos = end + 1
        if pos:
            del buf[:pos]

    # -- frames ---------------------------------------------------------------------

    def _on_frame(self, head: bytes, buf: bytearray, body_start: int, body_end: int) -> None:
        nl = head.find(b"\n")
        command = head if nl < 0 else head[:nl]
        if command == b"MESSAGE":
            self.messages += 1
            if self.on_message is not None:
                self.on_message(head)
        elif command == b"RECEIPT":
            fut = self._receipts.pop(_header(head, b"receipt-id") or b"", None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif command == b"CONNECTED":
            if not self.connected.done():
                self.connected.set_result(head)
        elif command == b"ERROR":
            message = (_header(head, b"message") or b"").decode("utf-8", "replace")
            body = bytes(buf[body_start:body_end]).decode("utf-8", "replace").strip()
            self.error = f"ERROR frame: {message}" + (f" ({body[:200]})" if body else "")
            self._fail_all(StompError(self.error))

    def _fail_all(self, exc: Exception) -> None:
        futures: list[asyncio.Future[Any]] = [self.connected, *self._receipts.values()]
        if self._writable is not None:
            futures.append(self._writable)
        self._receipts.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: whoever awaits it still gets the exception

    # -- API --------------------------------------------------------------------------

    def expect(self, receipt_id: bytes) -> asyncio.Future[None]:
        """A future resolved by the RECEIPT for ``receipt_id``; call before writing."""
        fut: asyncio.Future[None] = self._loop.create_future()
        if self.error is not None or self.closed.done():
            fut.set_exception(StompError(self.error or "connection closed"))
            fut.exception()
        else:
            self._receipts[receipt_id] = fut
        return fut

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def write_all(self, chunks: Sequence[bytes]) -> None:
        """Write ``chunks`` in order, waiting whenever the transport asks us to pause."""
        transport = self.transport
        assert transport is not None
        for chunk in chunks:
            if transport.is_closing():
                raise StompError(self.error or "connection closed while writing")
            transport.write(chunk)
            if self._writable is not None:
                await self._writable

    async def disconnect(self, timeout: float = 5.0) -> None:
        """DISCONNECT with a receipt (spec: graceful shutdown), then close."""
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(StompError, TimeoutError, OSError):
            fut = self.expect(b"bench-disconnect")
            self.write(b"DISCONNECT\nreceipt:bench-disconnect\n\n\0")
            async with asyncio.timeout(timeout):
                await fut
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def connect_frame(ep: Endpoint, heartbeat: str) -> bytes:
    return (
        f"CONNECT\naccept-version:1.2\nhost:{ep.host}\nlogin:{ep.login}\n"
        f"passcode:{ep.passcode}\nheart-beat:{heartbeat}\n\n\0"
    ).encode()


async def connect(
    ep: Endpoint,
    *,
    heartbeat: str = "0,0",
    on_message: MessageHandler | None = None,
    timeout: float = 15.0,
) -> StompClient:
    """A logged-in STOMP 1.2 connection (CONNECTED received)."""
    loop = asyncio.get_running_loop()
    tls = _tls_context(ep.ca_file) if ep.ca_file else None
    transport: asyncio.Transport | None = None
    try:
        async with asyncio.timeout(timeout):
            transport, client = await loop.create_connection(
                lambda: StompClient(loop, on_message),
                ep.host,
                ep.port,
                ssl=tls,
                server_hostname=ep.host if tls else None,
            )
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
            client.write(connect_frame(ep, heartbeat))
            await client.connected
    except BaseException:
        if transport is not None:
            transport.close()
        raise
    return client


# -- workloads --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """What a run sends: ``producers`` connections x ``messages`` each."""

    producers: int
    messages: int  # per producer
    size: int  # body bytes
    persistent: bool = False
    receipt_every: int = 0  # 0: only the last message; n: every n-th, waited for
    split_markers: bool = False  # last two messages: one receipted SEND per split side

    @property
    def total(self) -> int:
        return self.producers * self.messages


SHAPES: dict[str, Shape] = {
    "S1": Shape(producers=1, messages=60_000, size=256),
    "S2": Shape(producers=1, messages=5_000, size=256, receipt_every=1),
    "S3": Shape(producers=16, messages=2_000, size=1024, persistent=True, receipt_every=100),
    "S4": Shape(producers=1, messages=3_000, size=64 * 1024),
}


@dataclass(slots=True)
class Batch:
    chunks: list[bytes]  # the batch's frames, joined into <= CHUNK-sized writes
    receipts: list[bytes]  # receipt ids to wait for before the next batch


def body_of(size: int) -> bytes:
    pattern = b"strangler-bench-0123456789abcdefghijklmnopqrstuvwxyz."
    return (pattern * (size // len(pattern) + 1))[:size]


def split_marker_traces(weight: float = 50.0) -> tuple[str, str]:
    """Two trace ids: the first lands on Amazon MQ under a ``weight``% split, the second not.

    Used so that an S1-shaped split run can end with one receipt from each broker.
    """
    from strangler.routes.decide import split_bucket  # the proxy's own rule

    to_amazonmq = to_legacy = None
    while to_amazonmq is None or to_legacy is None:
        trace = f"bench-{uuid.uuid4().hex}"
        if split_bucket(trace) < weight:
            to_amazonmq = to_amazonmq or trace
        else:
            to_legacy = to_legacy or trace
    return to_amazonmq, to_legacy


def prepare(
    shape: Shape, destination: str, *, first_seq: int = 0, stamped: bool = False
) -> list[list[Batch]]:
    """Every producer's batches, fully encoded (done before the clock starts).

    ``stamped``: each SEND carries a trace header as the proxy adds it (right after the
    command line, an id of the same length), so a direct run shows what that header
    alone costs the broker."""
    body = body_of(shape.size)
    persistent = "persistent:true\n" if shape.persistent else ""
    headers = f"destination:{destination}\ncontent-length:{shape.size}\n{persistent}"
    if stamped and shape.split_markers:
        raise ValueError("split markers carry their own trace ids: a run is not stamped")
    tail = b"\n" + body + b"\0"
    markers = split_marker_traces() if shape.split_markers else None
    plan: list[list[Batch]] = []
    for producer in range(shape.producers):
        batches: list[Batch] = []
        frames: list[bytes] = []
        receipts: list[bytes] = []
        base = first_seq + producer * shape.messages
        last = shape.messages - 1
        for i in range(shape.messages):
            seq = base + i
            extra = ""
            receipted = (
                shape.receipt_every > 0 and (i + 1) % shape.receipt_every == 0
            ) or i == last
            if markers is not None and i >= last - 1:
                receipted = True
                extra = f"{TRACE_HEADER}:{markers[last - i]}\n"
            if receipted:
                rid = f"r{producer}-{i}"
                extra += f"receipt:{rid}\n"
                receipts.append(rid.encode())
            stamp = f"{TRACE_HEADER}:{STAMP_PREFIX}{seq:08x}\n" if stamped else ""
            frames.append(f"SEND\n{stamp}{headers}bench-seq:{seq}\n{extra}".encode() + tail)
            ends_batch = receipted and not (markers is not None and i == last - 1)
            if ends_batch:
                batches.append(Batch(_chunk(frames), receipts))
                frames, receipts = [], []
        plan.append(batches)
    return plan


def _chunk(frames: list[bytes]) -> list[bytes]:
    if len(frames) == 1:
        return frames
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for frame in frames:
        current.append(frame)
        size += len(frame)
        if size >= CHUNK:
            chunks.append(b"".join(current))
            current, size = [], 0
    if current:
        chunks.append(b"".join(current))
    return chunks


@dataclass(slots=True)
class RunStats:
    messages: int
    seconds: float
    latencies: list[float]  # seconds per waited batch (S2: per message)
    gen_cpu: float  # this process's CPU seconds during the timed part
    connect_seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        return percentile(self.latencies, q)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


async def _produce(client: StompClient, batches: list[Batch]) -> list[float]:
    clock = time.perf_counter
    latencies: list[float] = []
    for batch in batches:
        waits = [client.expect(rid) for rid in batch.receipts]
        start = clock()
        if len(batch.chunks) == 1:
            client.write(batch.chunks[0])
        else:
            await client.write_all(batch.chunks)
        for fut in waits:
            await fut
        latencies.append(clock() - start)
    return latencies


async def run_plan(ep: Endpoint, plan: list[list[Batch]], *, timeout: float = 300.0) -> RunStats:
    """Connect one client per producer, then time sending every batch."""
    t0 = time.perf_counter()
    clients = await asyncio.gather(*(connect(ep) for _ in plan))
    connect_seconds = time.perf_counter() - t0
    try:
        cpu0 = cpu_self()
        start = time.perf_counter()
        async with asyncio.timeout(timeout):
            results = await asyncio.gather(
                *(_produce(client, batches) for client, batches in zip(clients, plan, strict=True))
            )
        seconds = time.perf_counter() - start
        gen_cpu = cpu_self() - cpu0
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
    messages = sum(_count_frames(batches) for batches in plan)
    latencies = [x for r in results for x in r]
    return RunStats(messages, seconds, latencies, gen_cpu, connect_seconds)


def _count_frames(batches: list[Batch]) -> int:
    return sum(chunk.count(b"\nbench-seq:") for batch in batches for chunk in batch.chunks)


# -- consuming and verifying ----------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What one broker delivered for one destination."""

    broker: str
    counts: bytearray  # per bench-seq: how many times seen (saturates at 255)
    received: int = 0
    unexpected: int = 0  # no or out-of-range bench-seq


@dataclass(slots=True)
class _Progress:
    expected: int
    done: asyncio.Future[None]
    received: int = 0


async def drain(
    endpoints: Sequence[Endpoint],
    destination: str,
    total: int,
    *,
    expected: int | None = None,
    idle_timeout: float = 3.0,
    grace: float = 0.2,
    timeout: float = 300.0,
    subscribed: asyncio.Event | None = None,
    on_received: Callable[[int], None] | None = None,
) -> dict[str, Tally]:
    """Consume ``destination`` on every endpoint until ``expected`` messages in all arrived
    (then ``grace`` seconds more, to catch duplicates) or none came for ``idle_timeout``.
    ``on_received(n)`` is told the running count after each message.

    ``total`` is the number of bench-seq values of the run; each broker's tally counts
    how often it delivered each one. ``subscribed`` is set once every SUBSCRIBE is sent
    (to consume while a run is still sending).
    """
    loop = asyncio.get_running_loop()
    progress = _Progress(total if expected is None else expected, loop.create_future())
    if progress.expected <= 0:
        progress.done.set_result(None)
    tallies: dict[str, Tally] = {}
    clients: list[StompClient] = []

    def handler(tally: Tally) -> MessageHandler:
        counts = tally.counts

        def on_message(head: bytes) -> None:
            tally.received += 1
            raw = _header(head, b"bench-seq")
            seq = int(raw) if raw is not None and raw.isdigit() else -1
            if 0 <= seq < total:
                if counts[seq] < 255:
                    counts[seq] += 1
            else:
                tally.unexpected += 1
            progress.received += 1
            if on_received is not None:
                on_received(progress.received)
            if progress.received >= progress.expected and not progress.done.done():
                progress.done.set_result(None)

        return on_message

    try:
        async with asyncio.timeout(timeout):
            for ep in endpoints:
                tally = Tally(ep.name, bytearray(total))
                tallies[ep.name] = tally
                client = await connect(ep, on_message=handler(tally))
                clients.append(client)
                client.write(
                    f"SUBSCRIBE\nid:bench\ndestination:{destination}\nack:auto\n"
                    "activemq.prefetchSize:2000\n\n\0".encode()
                )
            if subscribed is not None:
                subscribed.set()
            while not progress.done.done():
                before = progress.received
                await asyncio.wait([progress.done], timeout=idle_timeout)
                if progress.received == before:
                    break  # idle: nothing more is coming
            if progress.done.done() and grace > 0:
                await asyncio.sleep(grace)
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
    return tallies


@dataclass(slots=True)
class Check:
    """The verdict on one broker's (or a split's) deliveries."""

    delivered: int  # distinct bench-seq values seen
    missing: int
    duplicates: int  # deliveries beyond the first of a value
    unexpected: int = 0
    on_both: int = 0  # split only: values delivered by both brokers

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.unexpected or self.on_both)

    def describe(self) -> str:
        if self.ok:
            return "ok"
        parts = []
        for name in ("missing", "duplicates", "unexpected", "on_both"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name.replace('_', ' ')} {value}")
        return ", ".join(parts)


def check_once(tally: Tally) -> Check:
    """Every bench-seq exactly once on this broker."""
    counts = tally.counts
    missing = counts.count(0)
    distinct = len(counts) - missing
    valid = tally.received - tally.unexpected
    return Check(distinct, missing, valid - distinct, tally.unexpected)


def check_split(a: Tally, b: Tally) -> Check:
    """Every bench-seq exactly once on exactly one of the two brokers."""
    missing = on_both = duplicates = 0
    for x, y in zip(a.counts, b.counts, strict=True):
        if x == 0 and y == 0:
            missing += 1
        elif x and y:
            on_both += 1
        if x > 1:
            duplicates += x - 1
        if y > 1:
            duplicates += y - 1
    total = len(a.counts)
    return Check(total - missing, missing, duplicates, a.unexpected + b.unexpected, on_both)


# -- many idle connections ------------------------------------------------------------


@dataclass(slots=True)
class ConnStats:
    wanted: int
    opened: int
    connect_seconds: float  # wall time until every connection was CONNECTED (or failed)
    connect_latencies: list[float]  # per connection: TCP connect through CONNECTED
    send_seconds: float  # every connection sends one SEND with a receipt; until all receipts
    receipts: int
    failures: list[str] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.opened / self.connect_seconds if self.connect_seconds > 0 else 0.0


async def run_connections(
    ep: Endpoint,
    count: int,
    destination: str,
    *,
    heartbeat: str = "10000,10000",
    concurrency: int = 50,
    hold: float = 1.0,
    probe: Callable[[], dict[str, Any]] | None = None,
    timeout: float = 180.0,
) -> ConnStats:
    """Open ``count`` mostly idle connections (heart-beating), one receipted SEND each,
    call ``probe`` while all are open, then close them."""
    gate = asyncio.Semaphore(concurrency)
    clock = time.perf_counter

    async def open_one() -> tuple[StompClient, float]:
        async with gate:
            start = clock()
            client = await connect(ep, heartbeat=heartbeat)
            return client, clock() - start

    clients: list[StompClient] = []
    failures: list[str] = []
    latencies: list[float] = []
    beating: asyncio.Task[None] | None = None

    async def heartbeats(every: float) -> None:
        while True:
            await asyncio.sleep(every)
            for client in clients:
                if client.transport is not None and not client.transport.is_closing():
                    client.write(b"\n")

    try:
        async with asyncio.timeout(timeout):
            start = clock()
            results = await asyncio.gather(
                *(open_one() for _ in range(count)), return_exceptions=True
            )
            connect_seconds = clock() - start
            for result in results:
                if isinstance(result, BaseException):
                    failures.append(f"{type(result).__name__}: {result}")
                else:
                    clients.append(result[0])
                    latencies.append(result[1])
            send_ms = int(heartbeat.split(",")[0])
            if send_ms:
                beating = asyncio.create_task(heartbeats(send_ms / 2000))
            body = body_of(64)
            waits = []
            start = clock()
            for i, client in enumerate(clients):
                waits.append(client.expect(b"c%d" % i))
                client.write(
                    f"SEND\ndestination:{destination}\ncontent-length:{len(body)}\n"
                    f"bench-seq:{i}\nreceipt:c{i}\n\n".encode()
                    + body
                    + b"\0"
                )
            outcomes = await asyncio.gather(*waits, return_exceptions=True)
            send_seconds = clock() - start
            receipts = 0
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    failures.append(f"receipt: {outcome}")
                else:
                    receipts += 1
            await asyncio.sleep(hold)
            probed = probe() if probe is not None else {}
    finally:
        if beating is not None:
            beating.cancel()
        for client in clients:
            with contextlib.suppress(Exception):
                client.write(b"DISCONNECT\n\n\0")
                client.close()
        await asyncio.sleep(0)
    return ConnStats(
        count,
        len(clients),
        connect_seconds,
        latencies,
        send_seconds,
        receipts,
        failures,
        probed,
    )


# -- standalone -----------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description="Send one benchmark shape to any STOMP endpoint, consuming it meanwhile.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--login", default="producer")
    parser.add_argument("--passcode", default="producer-secret")
    parser.add_argument("--drain-port", type=int, help="drain from here (default: --port)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="S2")
    parser.add_argument("--messages", type=int, help="per producer (default: the shape's)")
    parser.add_argument(
        "--stamped", action="store_true", help="each SEND carries a trace header like the proxy's"
    )
    args = parser.parse_args(argv)
    shape = SHAPES[args.shape]
    if args.messages:
        shape = Shape(
            shape.producers, args.messages, shape.size, shape.persistent, shape.receipt_every
        )
    ep = Endpoint("target", args.host, args.port, args.login, args.passcode)
    drain_ep = Endpoint("drain", args.host, args.drain_port or args.port, args.login, args.passcode)
    destination = f"/queue/bench.{args.shape}.{uuid.uuid4().hex}"

    async def go() -> int:
        # Consume while sending: a 60k-message S1 left queued fills a 256 MB broker heap.
        subscribed = asyncio.Event()
        consumer = asyncio.create_task(
            drain([drain_ep], destination, shape.total, idle_timeout=30.0, subscribed=subscribed)
        )
        async with asyncio.timeout(30):
            await subscribed.wait()
        stats = await run_plan(ep, prepare(shape, destination, stamped=args.stamped))
        tallies = await consumer
        check = check_once(tallies["drain"])
        p50, p99 = stats.percentile(0.5), stats.percentile(0.99)
        print(
            f"{args.shape} via {ep}: {stats.messages} msgs in {stats.seconds:.3f}s = "
            f"{stats.rate:,.0f} msg/s; batch latency p50 {1000 * (p50 or 0):.3f} ms, "
            f"p99 {1000 * (p99 or 0):.3f} ms; loadgen CPU {stats.gen_cpu / stats.seconds:.0%}; "
            f"verify: {check.describe()}"
        )
        return 0 if check.ok else 1

    return run(go())


if __name__ == "__main__":
    sys.exit(_main())
