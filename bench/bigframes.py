"""The frame pump on 64 KiB SENDs (bench S4's frames), in-process, by socket read size.

    .venv/bin/python -m bench.bigframes      # ~15 s

16 SENDs of a 64 KiB body, fed in reads of 64, 256 and 16 KiB; microseconds per frame
(median of 7 timings of 20 feeds) for the compiled pump, the pure pump, and the path
cd2fac6 used (``FrameParser`` then ``insert_header`` per SEND). A frame a little over
64 KiB read 64 KiB at a time straddles every read: each of its bytes is copied into the
pump's buffer and again into the spliced output.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

from bench.pump import FIELDS, SPLICE, compiled
from strangler.stomp import Frame, FrameParser, insert_header
from strangler.stomp.pump import FramePump as PurePump

BODY = b"x" * 65536
SEND = (
    b"SEND\ndestination:/queue/bench.S4\ncontent-type:text/plain\ncontent-length:65536\n\n"
    + BODY
    + b"\0\n"
)
N = 16
STREAM = SEND * N


def reads(size: int) -> list[bytes]:
    return [STREAM[i : i + size] for i in range(0, len(STREAM), size)]


def pump(cls: type[PurePump], parts: list[bytes]) -> None:
    p = cls(version="1.2", fields=FIELDS, splice=SPLICE, trace_prefix="0123456789abcdef")
    for part in parts:
        p.feed(part)


def parser_and_splice(parts: list[bytes]) -> None:
    parser = FrameParser(version="1.2")
    for part in parts:
        for event in parser.feed(part):
            if isinstance(event, Frame):
                insert_header(event.raw, SPLICE, "0123456789abcdef", "1.2")


def per_frame(step: Callable[[], None]) -> float:
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(20):
            step()
        timings.append((time.perf_counter() - start) / 20 / N * 1e6)
    return statistics.median(timings)


def main() -> None:
    built = compiled()
    print("us per 64 KiB SEND, by read size")
    print(f"{'read':>8} {'compiled':>9} {'pure':>7} {'parser+splice':>14}")
    for size in (65536, 262144, 16384):
        parts = reads(size)
        fast = "-" if built is None else f"{per_frame(partial(pump, built, parts)):.1f}"
        pure = per_frame(partial(pump, PurePump, parts))
        old = per_frame(partial(parser_and_splice, parts))
        print(f"{size:>8} {fast:>9} {pure:>7.1f} {old:>14.1f}")


if __name__ == "__main__":
    main()
