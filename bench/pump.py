"""The frame pump's cost per 256-byte SEND, in-process, both builds and today's path.

    .venv/bin/python -m bench.pump      # ~20 s

Each case feeds a chunk of N whole SEND frames (N = 1: a producer that waits for each
receipt; N = 200: a streaming producer, whose socket reads hold many frames) and reports
microseconds per frame, the median of 7 timings. The pumps splice a trace id into every
SEND and pull ``destination``, ``receipt``, ``transaction`` and ``content-length``, as
the proxy asks them to. "parser + splice" is the path the pump replaces:
``FrameParser.feed`` then ``insert_header`` per SEND, joined for the write.

Timings are hot (the same chunk in a tight loop): a lower bound for the running proxy.
The machine is shared, so compare the rows of one run with each other, not with another
run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from strangler.stomp import Frame, FrameParser, insert_header
from strangler.stomp.pump import FramePump as PurePump


def compiled() -> type[PurePump] | None:
    try:
        from strangler.stomp._pump import FramePump
    except ImportError:  # no compiled build: its rows say so
        return None
    return FramePump


FIELDS = ("destination", "receipt", "transaction", "content-length")
SPLICE = "strangler-trace-id"
SEND = (
    b"SEND\ndestination:/queue/bench.S1.0123456789abcdef\ncontent-type:text/plain\n"
    b"bench-seq:4711\ncontent-length:256\n\n" + b"x" * 256 + b"\0\n"
)


def per_frame(step: Callable[[], object], frames: int, budget: float) -> float:
    """Microseconds per frame over ``budget`` seconds of calls."""
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget:
        for _ in range(20):
            step()
        calls += 20
    return (time.perf_counter() - start) / (calls * frames) * 1e6


def today(chunk: bytes) -> Callable[[], object]:
    parser = FrameParser(version="1.2")

    def step() -> object:
        out = []
        for event in parser.feed(chunk):
            if isinstance(event, Frame) and event.raw is not None:
                out.append(insert_header(event.raw, SPLICE, "0123456789abcdef", "1.2"))
        return b"".join(out)

    return step


def pumping(cls: type[PurePump], chunk: bytes) -> Callable[[], object]:
    pump = cls(version="1.2", fields=FIELDS, splice=SPLICE, trace_prefix="0123456789abcdef")
    return lambda: pump.feed(chunk)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per timing")
    parser.add_argument("--repeat", type=int, default=7, help="timings per case")
    args = parser.parse_args(argv)
    print(f"us per 256-byte SEND (frame {len(SEND) - 1} B), median of {args.repeat}")
    print(f"{'path':<22} {'1 per call':>11} {'200 per call':>13}")
    rows: list[tuple[str, Callable[[bytes], Callable[[], object]] | None]] = [
        ("parser + splice", today),
        ("pump, pure", lambda c: pumping(PurePump, c)),
        ("pump, compiled", None if (cls := compiled()) is None else lambda c: pumping(cls, c)),
    ]
    steps = {(name, n): make(SEND * n) for name, make in rows if make is not None for n in (1, 200)}
    timings: dict[tuple[str, int], list[float]] = {key: [] for key in steps}
    for _ in range(args.repeat):  # round-robin, so a noisy moment hits every case alike
        for (name, n), step in steps.items():
            timings[name, n].append(per_frame(step, n, args.budget))
    for name, make in rows:
        if make is None:
            print(f"{name:<22} {'not built':>11} {'not built':>13}")
            continue
        one, many = (statistics.median(timings[name, n]) for n in (1, 200))
        print(f"{name:<22} {one:>11.2f} {many:>13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
