"""What one pass-through SEND costs the proxy in Python, step by step, in-process.

    .venv/bin/python -m bench.hotpath      # ~10 s

The steps are the ones ``ClientSession._on_send`` takes for a ``legacy`` route, with
the proxy's own code: parse the frame, splice the trace id header into its bytes,
decide the route (a repeat destination: a cache hit), enqueue the ``message_routed``
fact, and render that fact to its JSON line (on the fact writer's thread, but the same
CPU). The frame pump's rows do the first two steps in one call (both builds), as the
proxy will once it is wired in. Timings are "hot": the same frame in a tight loop, with
caches warm. On the data
path each step costs more (about 3-4x for a producer that waits for each receipt, as
every wake-up starts cold), so these figures are a lower bound.

They answer one question: how much CPU per message can the proxy spend before the
broker, which shares the machine's cores, slows down (bench S1). That budget is in
``bench/README.md`` ("Where the time goes").
"""

from __future__ import annotations

import functools
import io
import statistics
import time
from collections.abc import Callable

from strangler.facts import Fact, FactSink
from strangler.routes import Mode, Route, RouteTable, decide_send
from strangler.stomp import Frame, FrameParser, insert_header
from strangler.stomp.pump import FramePump as PurePump

SEND = (
    b"SEND\ndestination:/queue/bench.S1.0123456789abcdef\ncontent-type:text/plain\n"
    b"bench-seq:4711\ncontent-length:256\n\n" + b"x" * 256 + b"\0"
)


def per_call(
    step: Callable[[], object], budget: float = 0.2, repeat: int = 7, per: int = 1
) -> float:
    """Microseconds per call (a step doing ``per`` of them), median of ``repeat`` timings
    of ``budget`` seconds each."""
    timings = []
    for _ in range(repeat):
        calls = 0
        start = time.perf_counter()
        while time.perf_counter() - start < budget:
            for _ in range(500):
                step()
            calls += 500
        timings.append((time.perf_counter() - start) / (calls * per) * 1e6)
    return statistics.median(timings)


def compiled_pump() -> type[PurePump] | None:
    try:
        from strangler.stomp._pump import FramePump
    except ImportError:
        return None
    return FramePump


def main() -> int:
    parser = FrameParser()
    parser.version = "1.2"
    frame = parser.feed(SEND)[0]
    assert isinstance(frame, Frame) and frame.raw is not None
    table = RouteTable(
        version="bench",
        source="bench",
        brokers={},
        routes=[Route("bench", "prefix", "/queue/bench.", Mode.LEGACY)],
    )
    sink = FactSink(io.StringIO(), capacity=10_000_000, interval=3600)
    fields = {
        "session": "s1",
        "trace_id": "0123456789abcdef00000001",
        "destination": "/queue/bench.S1.0123456789abcdef",
        "rule": "bench",
        "mode": "legacy",
        "targets": ("legacy",),
        "primary": "legacy",
        "would_target": None,
        "dry_run": False,
        "routes_version": "bench",
        "transaction": None,
        "receipt": False,
    }

    destination = "/queue/bench.S1.0123456789abcdef"

    sink.close()  # no writer thread: the steps below do its work on this one, alone
    pending = sink._pending

    def emit() -> None:  # ten, then the queue emptied: a long queue costs GC time
        for _ in range(10):
            sink.emit(Fact.MESSAGE_ROUTED, **fields)
        pending.clear()

    def record() -> None:
        for _ in range(10):
            sink.record(Fact.MESSAGE_ROUTED, fields)
        pending.clear()

    def render() -> None:  # 64 at a time, as the writer renders a batch
        for _ in range(64):
            sink.emit(Fact.MESSAGE_ROUTED, **fields)
        sink._write_pending()
        sink._stream.seek(0)
        sink._stream.truncate()

    raw = frame.raw
    pumps = {"pure": PurePump, "compiled": compiled_pump()}
    fields_wanted = ("destination", "receipt", "transaction", "content-length")
    steps: list[tuple[str, Callable[[], object], int]] = [
        ("parse the SEND (284 B)", lambda: parser.feed(SEND), 1),
        ("splice the trace id", lambda: insert_header(raw, "strangler-trace-id", "t", "1.2"), 1),
        ("decide (cached)", lambda: decide_send(table, destination, frame.get, "t"), 1),
        ("enqueue the fact (emit)", emit, 10),
        ("enqueue the fact (record)", record, 10),
        ("enqueue + render the fact", render, 64),
    ]
    for build, cls in pumps.items():
        if cls is not None:
            pump = cls(version="1.2", fields=fields_wanted, splice="strangler-trace-id")
            steps.append((f"pump: parse + splice, {build}", functools.partial(pump.feed, SEND), 1))
    total = 0.0
    print("one pass-through SEND, hot, us per step (median of 7)")
    for name, step, per in steps:
        cost = per_call(step, per=per)
        if not name.startswith(("enqueue the fact", "pump")):
            total += cost
        print(f"  {name:<32} {cost:6.2f}")
    print(f"  {'sum (parse, splice, decide, enqueue + render)':<32} {total:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
