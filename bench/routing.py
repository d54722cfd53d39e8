"""Routing decision cost from 10 to 10,000 routes: a micro-benchmark, not a test.

    .venv/bin/python -m bench.routing            # ~10 s; exits 1 if a case is not flat

Each table has N routes in file order: a third exact, a third prefix, a third glob (all
``mirror``, so each destination gets its own Decision objects), and a ``split`` route.
It times ``decide_send``, the proxy's one call per SEND, in four cases:

- ``repeat``: a destination decided before: the steady state (producers reuse a small
  set of destinations), one dict hit in the table's cache;
- ``exact``, first sight: a destination an exact route names, with the cache emptied
  before each call;
- ``split``: a repeat destination on a 50% split route, so each decision also hashes
  the message's key (a different key per call);
- ``no match``, first sight: a destination no route matches. A linear first-match scan
  would try every prefix and glob here (1 ms a destination at 10,000 routes, measured
  before the table indexed prefixes by length and globs by literal head).

Each must be flat: at 10,000 routes within ``--tolerance`` (1.5x) of its cost at 10
routes, median of ``--repeat`` timings. Timings are in-process and relative,
on a shared machine: read the ratio column, not the nanoseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from strangler.routes import Mode, Route, RouteTable, decide_send

SIZES = (10, 100, 1_000, 10_000)
FLAT = ("repeat", "exact", "split", "no match")


def table_of(size: int) -> RouteTable:
    routes: list[Route] = [
        Route("split", "exact", "/queue/split.target", Mode.SPLIT, weight=50.0),
    ]
    for i in range(size - 1):
        kind = ("exact", "prefix", "glob")[i % 3]
        pattern = {
            "exact": f"/queue/exact.{i}",
            "prefix": f"/queue/prefix.{i}.",
            "glob": f"/topic/glob.{i}.*.events",
        }[kind]
        routes.append(Route(f"r{i}", kind, pattern, Mode.MIRROR))  # type: ignore[arg-type]
    return RouteTable(version="bench", source="bench", brokers={}, routes=routes)


def _no_header(name: str) -> str | None:
    return None


def cases(table: RouteTable, size: int) -> dict[str, Callable[[int], object]]:
    exact = f"/queue/exact.{3 * ((size - 2) // 3)}"  # the last exact route in the file
    cache = table._cache  # emptied to time first sight; the cache is a pure memo
    decide_send(table, "/queue/split.target", _no_header, "k")
    decide_send(table, exact, _no_header, "k")
    keys = [f"trace-{i}" for i in range(1024)]

    def repeat(i: int) -> object:
        return decide_send(table, exact, _no_header, "k")

    def first_exact(i: int) -> object:
        cache.clear()
        return decide_send(table, exact, _no_header, "k")

    def split(i: int) -> object:
        return decide_send(table, "/queue/split.target", _no_header, keys[i & 1023])

    def no_match(i: int) -> object:
        cache.clear()
        return decide_send(table, "/queue/nowhere", _no_header, "k")

    return {"repeat": repeat, "exact": first_exact, "split": split, "no match": no_match}


def time_case(case: Callable[[int], object], budget: float) -> float:
    """Nanoseconds per call: as many calls as fit in ``budget`` seconds, at least 200."""
    calls = 0
    start = time.perf_counter()
    while True:
        for i in range(200):
            case(i)
        calls += 200
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return elapsed / calls * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--repeat", type=int, default=9, help="timings per case (median)")
    parser.add_argument("--budget", type=float, default=0.05, help="seconds per timing")
    parser.add_argument("--tolerance", type=float, default=1.5, help="allowed 10k/10 ratio")
    args = parser.parse_args(argv)

    built: dict[int, float] = {}
    timed: dict[int, dict[str, Callable[[int], object]]] = {}
    for size in SIZES:
        start = time.perf_counter()
        table = table_of(size)
        built[size] = time.perf_counter() - start
        timed[size] = cases(table, size)
    # Round-robin over sizes, so a noisy moment on the machine hits every size alike.
    samples: dict[str, dict[int, list[float]]] = {}
    for _ in range(args.repeat):
        for size in SIZES:
            for name, case in timed[size].items():
                sample = time_case(case, args.budget)
                samples.setdefault(name, {}).setdefault(size, []).append(sample)
    results = {
        name: {size: statistics.median(values) for size, values in by_size.items()}
        for name, by_size in samples.items()
    }

    header = f"{'case':<10}" + "".join(f"{n:>10,}" for n in SIZES) + f"{'10k/10':>9}"
    print("decide_send, ns per decision (median), by number of routes")
    print(header)
    print("-" * len(header))
    failed = []
    for name, by_size in results.items():
        ratio = by_size[SIZES[-1]] / by_size[SIZES[0]]
        flat = name in FLAT
        mark = "" if not flat else (" ok" if ratio <= args.tolerance else " NOT FLAT")
        print(
            f"{name:<10}"
            + "".join(f"{by_size[n]:>10,.0f}" for n in SIZES)
            + f"{ratio:>8.2f}x{mark}"
        )
        if flat and ratio > args.tolerance:
            failed.append(name)
    print(
        f"{'build ms':<10}"
        + "".join(f"{built[n] * 1000:>10,.1f}" for n in SIZES)
        + "   (RouteTable with its shadowing check: what a reload costs)"
    )
    print(f"\nmust be flat (<= {args.tolerance:g}x from 10 to 10,000 routes): {', '.join(FLAT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
