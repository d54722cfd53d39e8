"""A tiny producer for the demo: sends a few messages per example route, with receipts.

Usage: python scripts/demo_producer.py HOST:PORT [COUNT]
"""

from __future__ import annotations

import sys
import threading

import stomp

DESTINATIONS = [
    "/queue/orders",  # mirror
    "/queue/payments.eu",  # split 25%, sticky by JMSXGroupID
    "/queue/billing.invoices",  # cutover, falls back to legacy
    "/topic/audit.login",  # pinned to legacy
    "/queue/untouched",  # no route: legacy
]


class Receipts(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen = 0
        self.done = threading.Event()
        self.errors: list[str] = []

    def on_receipt(self, frame: stomp.utils.Frame) -> None:
        self.seen += 1
        if self.seen >= self.expected:
            self.done.set()

    def on_error(self, frame: stomp.utils.Frame) -> None:
        self.errors.append(frame.headers.get("message", "?"))
        self.done.set()


def main() -> int:
    host, _, port = sys.argv[1].rpartition(":")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    conn = stomp.Connection12([(host, int(port))])
    listener = Receipts(count * len(DESTINATIONS))
    conn.set_listener("receipts", listener)
    conn.connect("producer", "producer-secret", wait=True)
    for i in range(count):
        for destination in DESTINATIONS:
            conn.send(
                destination,
                f"demo message {i} for {destination}",
                headers={"receipt": f"{destination}#{i}", "JMSXGroupID": f"customer-{i % 3}"},
            )
    ok = listener.done.wait(30)
    conn.disconnect()
    print(f"demo producer: {listener.seen} receipts for {listener.expected} messages", flush=True)
    if listener.errors or not ok:
        print(f"demo producer: errors {listener.errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
