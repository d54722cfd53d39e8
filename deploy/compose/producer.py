"""The compose demo's producer: sends to the example destinations forever, with receipts.

It knows nothing about strangler: it talks STOMP to 127.0.0.1:61613, which (through the
shared network namespace) is the strangler sidecar, exactly as a real producer would after
its broker URL was pointed at localhost. Reconnects with back-off when the proxy or a
broker is not there (yet).

Environment: STOMP_HOST (127.0.0.1), STOMP_PORT (61613), STOMP_LOGIN, STOMP_PASSCODE,
INTERVAL seconds between rounds (2), DESTINATIONS (comma-separated).
"""

from __future__ import annotations

import os
import sys
import threading
import time

import stomp

DEFAULT_DESTINATIONS = (
    "/queue/orders,/queue/payments.eu,/queue/billing.invoices,/topic/audit.login,/queue/untouched"
)


class Receipts(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.seen: set[str] = set()
        self.errors: list[str] = []
        self.disconnected = False

    def on_receipt(self, frame: stomp.utils.Frame) -> None:
        with self.lock:
            self.seen.add(frame.headers.get("receipt-id", ""))
            self.lock.notify_all()

    def on_error(self, frame: stomp.utils.Frame) -> None:
        with self.lock:
            self.errors.append(frame.headers.get("message", "?"))
            self.lock.notify_all()

    def on_disconnected(self) -> None:
        with self.lock:
            self.disconnected = True
            self.lock.notify_all()

    def wait_for(self, receipts: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not receipts <= self.seen and not self.errors and not self.disconnected:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return receipts <= self.seen


def log(message: str) -> None:
    print(f"producer: {message}", flush=True)


def session(host: str, port: int, destinations: list[str], interval: float, seq: int) -> int:
    """One connection: send rounds until something fails; return the next sequence number."""
    conn = stomp.Connection12([(host, port)], heartbeats=(10000, 10000))
    listener = Receipts()
    conn.set_listener("receipts", listener)
    conn.connect(os.environ["STOMP_LOGIN"], os.environ["STOMP_PASSCODE"], wait=True)
    log(f"connected to {host}:{port}")
    try:
        while True:
            wanted = set()
            for destination in destinations:
                receipt = f"{destination}#{seq}"
                wanted.add(receipt)
                conn.send(
                    destination,
                    f"compose demo message {seq} for {destination}",
                    headers={"receipt": receipt, "JMSXGroupID": f"customer-{seq % 3}"},
                )
            ok = listener.wait_for(wanted, timeout=30)
            if listener.errors:
                log(f"round {seq}: ERROR from the proxy: {listener.errors}")
                return seq + 1
            if not ok:
                log(f"round {seq}: {len(wanted - listener.seen)} receipts missing; reconnecting")
                return seq + 1
            log(f"round {seq}: {len(wanted)} messages confirmed")
            seq += 1
            time.sleep(interval)
    finally:
        if conn.is_connected():
            conn.disconnect()


def main() -> int:
    host = os.environ.get("STOMP_HOST", "127.0.0.1")
    port = int(os.environ.get("STOMP_PORT", "61613"))
    interval = float(os.environ.get("INTERVAL", "2"))
    destinations = [
        d.strip() for d in os.environ.get("DESTINATIONS", DEFAULT_DESTINATIONS).split(",") if d
    ]
    seq, backoff = 0, 1.0
    while True:
        try:
            seq = session(host, port, destinations, interval, seq)
            backoff = 1.0
            time.sleep(interval)
        except (stomp.exception.StompException, OSError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            log(f"cannot talk to {host}:{port} ({why}); retry in {backoff:g}s")
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


if __name__ == "__main__":
    sys.exit(main())
