"""``strangler audit``'s speed and memory: a benchmark, not a test.

    .venv/bin/python -m bench.audit                 # ~30 s; exits 1 below the floors
    .venv/bin/python -m bench.audit --messages 1000000

A synthetic fleet writes fact files shaped as the proxy writes them (``message_routed``
with every field, ``message_confirmed`` with latency, sessions of 500 messages, each
replica's oldest file rotated and gzipped): a mix of legacy (with and without receipt),
mirror, split and cutover routes, with fallbacks in doubt and resent frames. Outcomes
follow their message within a window of 64, as receipts do.

It measures, in the same run:
- the *floor*: reading the same files and parsing every line with orjson, nothing else
  (no audit can be faster); then the whole audit (read, judge, close). Facts per second
  for both, per second of this process's CPU time and of wall time (on a machine other
  work shares, CPU time is the steadier figure, and the one checked), and the audit's
  share of the floor;
- memory for settled messages: peak traced memory (tracemalloc) of an audit of N and of
  4N messages (none in doubt): bounded when the 4N peak stays within ``--flat`` (1.5x) of
  N's; and what each in-doubt message listed in the report costs (a run where every
  Amazon MQ message is in doubt, against one where none is);
- memory per unresolved message: a replica killed with U messages in flight (no outcome,
  no session end): traced memory held by the ledger after the read, over U.

Floors (exit 1 below them): ``--min-rate`` facts per CPU second (200,000) for the audit,
settled memory flat within ``--flat``.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import itertools
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from strangler.ledger import FactReader, Ledger

VERSION = "3f2a9c1d7e55"
WINDOW = 64  # outcomes trail their message by up to this many messages
SESSION = 500  # messages per producer session


def _stamps() -> Iterator[str]:
    base = 1_740_866_400.0
    for n in itertools.count():
        second, micro = divmod(n * 37, 1_000_000)
        yield time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + second)) + f".{micro:06d}+00:00"


def replica_facts(
    messages: int, seed: int, *, killed_with: int = 0, doubt: float = 0.03
) -> Iterator[bytes]:
    """One replica's fact lines; ``killed_with``: the last N messages get no outcome;
    ``doubt``: the share of Amazon MQ's messages that fall back or are resent (in doubt:
    the report lists them)."""
    rng = random.Random(seed)
    prefix = os.urandom(8).hex()
    ts = _stamps()
    counter = itertools.count(1)
    dump = orjson.dumps

    def line(event: str, **fields: object) -> bytes:
        return dump({"event": event, "ts": next(ts), **fields}) + b"\n"

    yield line("routes_loaded", source="routes.yaml", routes_version=VERSION, routes=["r"])
    yield line("proxy_started", listen="0.0.0.0:61613", tls=False, routes_version=VERSION)
    session_no = 0
    sent = 0
    while sent < messages:
        session_no += 1
        session = f"s{session_no}"
        yield line(
            "client_connected",
            session=session,
            peer="10.0.3.17:51234",
            login=f"producer-{session_no % 7}",
            version="1.2",
            routes_version=VERSION,
        )
        pending: list[list[bytes]] = []
        count = min(SESSION, messages - sent)
        for _index in range(count):
            sent += 1
            trace = f"{prefix}{next(counter):08x}"
            pick = rng.random()
            mode, targets, rule, receipt = (
                ("legacy", ["legacy"], "default", True)
                if pick < 0.3
                else ("legacy", ["legacy"], "default", False)
                if pick < 0.4
                else ("mirror", ["legacy", "amazonmq"], "orders", True)
                if pick < 0.6
                else ("split", [rng.choice(("legacy", "amazonmq"))], "payments", True)
                if pick < 0.8
                else ("cutover", ["amazonmq"], "billing", True)
            )
            yield line(
                "message_routed",
                session=session,
                trace_id=trace,
                destination=f"/queue/{rule}",
                rule=rule,
                mode=mode,
                targets=targets,
                primary=targets[0],
                would_target=None,
                dry_run=False,
                routes_version=VERSION,
                transaction=None,
                receipt=receipt,
            )
            if killed_with and sent > messages - killed_with:
                continue
            outcomes: list[bytes] = []

            def confirmed(
                broker: str,
                role: str,
                trace: str = trace,
                rule: str = rule,
                session: str = session,
            ) -> bytes:
                return line(
                    "message_confirmed",
                    session=session,
                    trace_id=trace,
                    rule=rule,
                    broker=broker,
                    role=role,
                    latency_ms=round(rng.random() * 3, 3),
                )

            if "amazonmq" in targets and targets[0] == "amazonmq":
                roll = rng.random()
                if roll < doubt * 2 / 3:
                    outcomes.append(
                        line(
                            "message_fell_back",
                            session=session,
                            trace_id=trace,
                            rule=rule,
                            reason="amazonmq: connection lost",
                            to="legacy",
                            possibly_stored=True,
                            receipt=True,
                        )
                    )
                    outcomes.append(confirmed("legacy", "primary"))
                else:
                    if roll < doubt:
                        outcomes.append(
                            line(
                                "message_resent",
                                session=session,
                                trace_id=trace,
                                broker="amazonmq",
                                endpoint="b-1.mq:61614",
                            )
                        )
                    outcomes.append(confirmed("amazonmq", "primary"))
            elif receipt:
                outcomes.append(confirmed("legacy", "primary"))
            if len(targets) == 2:
                outcomes.append(confirmed("amazonmq", "mirror"))
            pending.append(outcomes)
            if len(pending) > rng.randrange(1, WINDOW):
                yield from pending.pop(0)
        for outcomes in pending:
            yield from outcomes
        if not killed_with or sent <= messages - killed_with:  # the rest died with the proxy
            yield line(
                "client_disconnected", session=session, reason="client DISCONNECT", messages=count
            )
    if not killed_with:
        yield line("proxy_stopped", sessions_closed=0)


def write_fleet(
    folder: Path, messages: int, replicas: int, *, killed_with: int = 0, doubt: float = 0.03
) -> list[str]:
    """One file per replica; the first replica's first half rotated away as ``.1.gz``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for replica in range(replicas):
        lines = list(
            replica_facts(
                messages // replicas,
                seed=replica,
                killed_with=killed_with if replica == 0 else 0,
                doubt=doubt,
            )
        )
        path = folder / f"pod{replica}.jsonl"
        if replica == 0:
            half = len(lines) // 2
            rotated = folder / "pod0.jsonl.1.gz"
            rotated.write_bytes(gzip.compress(b"".join(lines[:half]), compresslevel=1))
            paths.append(str(rotated))
            lines = lines[half:]
        path.write_bytes(b"".join(lines))
        paths.append(str(path))
    return paths


def floor(paths: list[str]) -> int:
    """Read and parse every line: the least any audit of these files must do."""
    loads = orjson.loads
    count = 0
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            for line in f:
                loads(line)
                count += 1
    return count


def audit(paths: list[str]) -> tuple[int, Ledger]:
    reader = FactReader(paths)
    ledger = Ledger(where=lambda: str(reader.position))
    reader.read(ledger)
    book = ledger.close()
    if not book.holds:
        raise SystemExit(f"bench fleet broke the promise: {book.violations[:3]}")
    return reader.stats.facts, ledger


def timed(fn: Callable[..., object], *args: object) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def peak_memory(paths: list[str]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        audit(paths)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def unresolved_bytes(folder: Path, in_flight: int) -> tuple[float, int]:
    """Memory the ledger holds per unresolved message, after the read and before close
    (the killed proxy's messages sent without a receipt to legacy need nothing more: they
    settle at once)."""
    paths = write_fleet(folder, in_flight + 1000, 1, killed_with=in_flight)
    gc.collect()
    tracemalloc.start()
    try:
        reader = FactReader(paths)
        ledger = Ledger()
        before = tracemalloc.get_traced_memory()[0]
        reader.read(ledger)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        open_messages = len(ledger.open)
    finally:
        tracemalloc.stop()
    return held / open_messages, open_messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400_000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=50_000)
    parser.add_argument("--min-rate", type=float, default=200_000.0)
    parser.add_argument("--flat", type=float, default=1.5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        folder = Path(tmp)
        paths = write_fleet(folder, args.messages, args.replicas)
        size = sum(os.path.getsize(p) for p in paths)
        floors = [timed(floor, paths) for _ in range(args.repeat)]
        runs = [timed(audit, paths) for _ in range(args.repeat)]
        facts = int(runs[0][2][0])  # type: ignore[index]
        small = folder / "small"
        large = folder / "large"
        n = args.messages // 4
        # Settled messages only: in-doubt ones are listed in the report (up to 100,000),
        # which is memory by design; it is measured apart, below.
        peak_n = peak_memory(write_fleet(small, n, 1, doubt=0.0))
        peak_4n = peak_memory(write_fleet(large, 4 * n, 1, doubt=0.0))
        doubtful = peak_memory(write_fleet(folder / "doubt", n, 1, doubt=1.0))
        per_unresolved, unresolved = unresolved_bytes(folder / "killed", args.in_flight)
    floor_wall, floor_cpu = min(w for w, _, _ in floors), min(c for _, c, _ in floors)
    audit_wall, audit_cpu = min(w for w, _, _ in runs), min(c for _, c, _ in runs)
    rate = facts / audit_cpu
    print(
        f"input: {facts:,} facts, {args.messages:,} messages, {args.replicas} replicas, "
        f"{size / 1e6:.0f} MB on disk (one rotated .gz); best of {args.repeat}"
    )
    print("                                      facts/s (CPU)  facts/s (wall)")
    floor_rates = f"{facts / floor_cpu:>13,.0f}  {facts / floor_wall:>14,.0f}"
    print(f"floor (read + orjson.loads per line): {floor_rates}")
    print(
        f"strangler audit:                      {rate:>13,.0f}  {facts / audit_wall:>14,.0f}"
        f"   ({floor_cpu / audit_cpu:.2f}x of the floor)"
    )
    print(
        f"peak memory, settled messages: {n:,} messages {peak_n / 1e6:.1f} MB, "
        f"{4 * n:,} messages {peak_4n / 1e6:.1f} MB ({peak_4n / peak_n:.2f}x)"
    )
    print(
        f"listed in-doubt messages: {(doubtful - peak_n) / (0.3 * n):.0f} bytes each "
        "(a run whose Amazon MQ messages, 30%, are all in doubt, against none)"
    )
    print(
        f"memory per unresolved message: {per_unresolved:.0f} bytes "
        f"({unresolved:,} unresolved when their proxy was killed)"
    )
    failed = []
    if rate < args.min_rate:
        failed.append(f"audit rate {rate:,.0f} facts/s < {args.min_rate:,.0f}")
    if peak_4n > args.flat * peak_n:
        failed.append(f"settled memory grew {peak_4n / peak_n:.2f}x for 4x the messages")
    for failure in failed:
        print(f"FAIL: {failure}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
