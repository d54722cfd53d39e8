"""Where a pass-through SEND's CPU goes in the running proxy's code, in-process.

    .venv/bin/python -m bench.core      # ~15 s

A ``SessionCore`` (the proxy's sans-I/O session, as the driver runs it) over a
``mode: legacy`` route, logged in, fed chunks of N whole 256-byte SENDs (N = 200: a
streaming producer like bench S1; N = 1: one that waits for each receipt, like S2) with
no receipt. Per SEND, median of 7 timings:

- ``pump``: the frame pump alone (split, pull the headers, splice the trace id);
- ``core``: ``SessionCore.client_data``: the pump, the routing decision, the
  ``message_routed`` fact recorded, the bytes queued for legacy;
- ``render``: the fact writer's work for that fact (the metrics counters and the JSON
  line), on its thread in the proxy but on the same 2 cores;
- ``total``: core + render, what S1's proxy CPU per message is compared with.

The last row is N = 1 with a receipt on each SEND (S2's producer), legacy's side only.

Hot timings (the same chunk in a loop, caches warm): a lower bound. The socket reads and
writes (uvloop, the kernel) come on top: bench S1's relay arm puts them at about 0.5 us
a message.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import TextIO

from strangler.admin.metrics import ProxyMetrics
from strangler.facts import FactSink
from strangler.proxy.context import ProxyContext, ProxySettings, RoutesHolder
from strangler.proxy.core.session import SessionCore
from strangler.proxy.traces import TraceIds
from strangler.routes import parse_routes
from strangler.stomp import native

ROUTES = """\
brokers:
  legacy: {url: "stomp://127.0.0.1:61611"}
  amazonmq: {url: "stomp+ssl://127.0.0.1:61614"}
routes:
  - {name: stay, match: {prefix: /queue/bench.}, mode: legacy}
"""
SEND = (
    b"SEND\ndestination:/queue/bench.S1.0123456789abcdef\ncontent-type:text/plain\n"
    b"bench-seq:4711\ncontent-length:256\n\n" + b"x" * 256 + b"\0"
)
# The same SEND asking for a receipt (one id: legacy's owed receipts stay at one entry).
RECEIPTED = SEND.replace(b"bench-seq:4711\n", b"bench-seq:4711\nreceipt:r-4711\n")


def median_us(step: Callable[[], object], per: int, budget: float = 0.3) -> float:
    """Median of 7 timings of ``step`` (repeated for ``budget`` s), per frame, in us."""
    runs = []
    for _ in range(7):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < budget:
            step()
            n += 1
        runs.append(elapsed / n / per * 1e6)
    return statistics.median(runs)


def logged_in_core(sink: FactSink) -> SessionCore:
    ctx = ProxyContext(ProxySettings(), RoutesHolder(parse_routes(ROUTES, "routes.yaml")), sink)
    core = SessionCore(ctx, "s1", "127.0.0.1:5000", TraceIds())
    core.start()
    core.client_data(b"CONNECT\naccept-version:1.2\nhost:x\nlogin:p\npasscode:p\n\n\0")
    core.legacy_opened()
    core.legacy_data(b"CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:ActiveMQ\n\n\0\n")
    return core


def measure(per: int, devnull: TextIO, send: bytes = SEND) -> tuple[float, float, float]:
    """(pump, core, render) in us per SEND, for reads of ``per`` SENDs."""
    chunk = send * per
    sink = FactSink(devnull, interval=3600.0)  # rendered below, not by its thread
    core = logged_in_core(sink)
    metrics = ProxyMetrics(core.state.ctx, open_sessions=lambda: 1)
    sink.writer_listeners.append(metrics.on_fact)  # as strangler run does
    sink.writer_counters.append(metrics.on_facts)
    state = core.state
    pump = state.new_client_pump()
    pump.version = "1.2"

    def session() -> object:
        out = core.client_data(chunk)
        state.legacy_out.clear()
        sink._pending.clear()  # as the writer would: a growing deque times the GC instead
        return out

    pump_us = median_us(lambda: pump.feed(chunk), per)
    core_us = median_us(session, per)
    renders = []  # exactly one read's facts per timing: recorded, then written
    for _ in range(7):
        core.client_data(chunk)
        state.legacy_out.clear()
        start = time.perf_counter()
        sink._write_pending()  # what the writer thread does
        renders.append((time.perf_counter() - start) / per * 1e6)
    sink.close()
    return pump_us, core_us, statistics.median(renders)


def main() -> None:
    print(f"frame pump: {native.BUILD}; per 256-byte SEND, us (hot, median of 7)")
    print(f"{'frames/read':>11} {'pump':>7} {'core':>7} {'render':>7} {'total':>7}")
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        for per, send, label in ((200, SEND, "200"), (1, SEND, "1"), (1, RECEIPTED, "1 receipt")):
            pump_us, core_us, render_us = measure(per, devnull, send)
            total = core_us + render_us
            print(f"{label:>11} {pump_us:7.2f} {core_us:7.2f} {render_us:7.2f} {total:7.2f}")


if __name__ == "__main__":
    main()
