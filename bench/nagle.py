"""Two frames a client with Nagle on writes back to back: when they reach legacy,
directly and through the proxy, and why (issue #20's last observation).

    .venv/bin/python -m bench.nagle               # ~1 min
    .venv/bin/python -m bench.nagle --tries 60 --json out.json

A client that leaves Nagle's algorithm on (no TCP_NODELAY, the socket default) holds a
small write while an earlier one is unacknowledged. The second frame therefore leaves
when the first one's ACK arrives: at once if the receiver ACKs at once, or with its
RECEIPT, or when the receiver's delayed-ACK timer fires (40 ms minimum on Linux).

Each try opens a connection (CONNECT, CONNECTED), optionally makes one receipted SEND
first (``warm``), then writes SEND a and SEND b in two ``send`` calls, and waits for the
receipts it asked for. Recorded per try: the client's time from writing a to its last
receipt; when a and b reached legacy (a consumer on legacy reads the broker's
``timestamp`` header, ms); through the proxy also when they reached the proxy
(``message_routed`` facts) and how long legacy took to confirm a (``message_confirmed``
``latency_ms``). Arms: directly, and through ``strangler run`` (which sets TCP_QUICKACK
on its client and legacy sockets after every read, so its kernel ACKs at once instead of
delaying the ACK: ``strangler/proxy/connection.py``); each with the client's Nagle on,
and off (TCP_NODELAY).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import run as bench_run

SLOW_MS = 20.0  # a gap this long is a held write, not scheduling noise (which is < 5 ms)
PATTERNS = {
    # name: (receipt on a?, receipt on b?)
    "a+receipt, b+receipt": (True, True),
    "a, b+receipt": (False, True),
}


# -- a raw client -------------------------------------------------------------------------


class Client:
    def __init__(self, port: int, login: str, passcode: str, *, nodelay: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self.sock.sendall(
            f"CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{login}\n"
            f"passcode:{passcode}\n\n\0".encode()
        )
        self.frame()

    def frame(self) -> bytes:
        while b"\0" not in self._buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the peer")
            self._buf += data
        frame, _, self._buf = self._buf.partition(b"\0")
        self._buf = self._buf.lstrip(b"\r\n")
        return frame

    def close(self) -> None:
        self.sock.sendall(b"DISCONNECT\nreceipt:bye\n\n\0")
        with_receipt = self.frame()
        assert with_receipt.startswith(b"RECEIPT")
        self.sock.close()


def send_frame(destination: str, receipt: str | None) -> bytes:
    head = f"SEND\ndestination:{destination}\n"
    if receipt is not None:
        head += f"receipt:{receipt}\n"
    return (head + "\nx\0").encode()


# -- one arm ------------------------------------------------------------------------------


@dataclass
class Try:
    client_ms: float  # writing a -> the last receipt
    legacy_gap_ms: float  # b's broker timestamp - a's
    proxy_gap_ms: float | None = None  # message_routed b - a
    confirm_a_ms: float | None = None  # legacy's receipt for a, as the proxy measured it


@dataclass
class Arm:
    name: str
    pattern: str
    warm: bool
    tries: list[Try] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> str:
            if not values:
                return "-"
            values = sorted(values)
            slow = sum(v > SLOW_MS for v in values)
            p90 = values[int(len(values) * 0.9) - 1]
            return (
                f"{slow}/{len(values)} slow, median {statistics.median(values):.1f}, "
                f"p90 {p90:.1f}, max {values[-1]:.1f} ms"
            )

        return {
            "arm": self.name,
            "pattern": self.pattern,
            "warm": self.warm,
            "client": stats([t.client_ms for t in self.tries]),
            "at legacy": stats([t.legacy_gap_ms for t in self.tries]),
            "at the proxy": stats(
                [t.proxy_gap_ms for t in self.tries if t.proxy_gap_ms is not None]
            ),
            "legacy confirms a": stats(
                [t.confirm_a_ms for t in self.tries if t.confirm_a_ms is not None]
            ),
        }


def run_arm(
    arm: Arm,
    port: int,
    brokers: bench_run.Brokers,
    tries: int,
    *,
    nodelay: bool,
    facts: Path | None,
) -> None:
    legacy = brokers.legacy
    prefix = f"/queue/bench.nagle.{uuid.uuid4().hex[:8]}"
    watcher = Client(legacy.port, legacy.login, legacy.passcode, nodelay=True)
    watcher.sock.sendall(f"SUBSCRIBE\nid:w\ndestination:{prefix}.>\nreceipt:w\n\n\0".encode())
    watcher.frame()
    receipt_a, receipt_b = PATTERNS[arm.pattern]
    for i in range(tries):
        client = Client(port, legacy.login, legacy.passcode, nodelay=nodelay)
        if arm.warm:
            client.sock.sendall(send_frame(f"{prefix}.{i}.warm", "warm"))
            client.frame()
        started = time.perf_counter()
        client.sock.send(send_frame(f"{prefix}.{i}.a", "a" if receipt_a else None))
        client.sock.send(send_frame(f"{prefix}.{i}.b", "b" if receipt_b else None))
        for _ in range(receipt_a + receipt_b):
            client.frame()
        client_ms = (time.perf_counter() - started) * 1000
        client.close()
        stamps: dict[str, int] = {}
        while len(stamps) < 2 + arm.warm:
            head = watcher.frame().decode().split("\n\n", 1)[0]
            headers = dict(line.split(":", 1) for line in head.split("\n")[1:])
            stamps[headers["destination"].rsplit(".", 1)[1]] = int(headers["timestamp"])
        arm.tries.append(Try(client_ms, float(stamps["b"] - stamps["a"])))
    watcher.close()
    if facts is not None:
        _add_proxy_times(arm, prefix, facts)


def _add_proxy_times(arm: Arm, prefix: str, facts: Path) -> None:
    routed: dict[str, float] = {}
    confirmed: dict[str, float] = {}
    trace_of: dict[str, str] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in facts.read_text().splitlines():
            fact = json.loads(line)
            destination = fact.get("destination", "")
            if fact["event"] == "message_routed" and destination.startswith(prefix):
                routed[destination] = datetime.fromisoformat(fact["ts"]).timestamp() * 1000
                trace_of[fact["trace_id"]] = destination
            elif fact["event"] == "message_confirmed" and fact["trace_id"] in trace_of:
                confirmed[trace_of[fact["trace_id"]]] = float(fact["latency_ms"])
        if len(routed) >= len(arm.tries) * 2:
            break
        time.sleep(0.1)  # the proxy's fact writer flushes on its own schedule
    for i, attempt in enumerate(arm.tries):
        a, b = f"{prefix}.{i}.a", f"{prefix}.{i}.b"
        if a in routed and b in routed:
            attempt.proxy_gap_ms = routed[b] - routed[a]
        attempt.confirm_a_ms = confirmed.get(a)


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    parser = argparse.ArgumentParser(prog="python -m bench.nagle", description=__doc__)
    parser.add_argument("--tries", type=int, default=30)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(args)
    brokers = bench_run.ensure_brokers()
    workdir = Path(tempfile.mkdtemp(prefix="strangler-nagle-"))
    plain = bench_run.Proxy(brokers, "legacy", workdir, "plain")
    plain.start()
    arms: list[Arm] = []
    try:
        for warm in (False, True):
            for pattern in PATTERNS:
                setups: list[tuple[str, int, bool, Path | None]] = [
                    ("direct", brokers.legacy.port, False, None),
                    ("proxy", plain.port, False, plain.facts),
                    ("direct, client NODELAY", brokers.legacy.port, True, None),
                    ("proxy, client NODELAY", plain.port, True, plain.facts),
                ]
                for name, port, nodelay, facts in setups:
                    arm = Arm(name, pattern, warm)
                    run_arm(arm, port, brokers, options.tries, nodelay=nodelay, facts=facts)
                    arms.append(arm)
                    print(json.dumps(arm.summary()), flush=True)
    finally:
        plain.stop()
    if options.json is not None:
        options.json.write_text(json.dumps([asdict(a) for a in arms], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
