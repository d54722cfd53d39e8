"""Regression tests for the five defects of #20: what a client reads through the proxy is
what the broker wrote, in the pieces it wrote it (tests/integration/test_transparency.py
compares whole conversations; these pin each defect on its own)."""

from __future__ import annotations

import socket
import statistics
import time
import uuid
from collections import defaultdict

import pytest
import stomp

from strangler.stomp import Frame, FrameParser

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .harness import WAIT, Recorder, connect, next_frame, raw_login, unique_queue

pytestmark = pytest.mark.integration


class Writes:
    """A traffic tap that keeps every write the proxy made to each client."""

    def __init__(self) -> None:
        self.to: dict[str, list[bytes]] = defaultdict(list)

    def opened(self, session: str, peer: str) -> None: ...

    def from_client(self, session: str, data: bytes) -> None: ...

    def to_client(self, session: str, data: bytes) -> None:
        self.to[session].append(data)

    def closed(self, session: str) -> None: ...


def cutover(dest: str) -> str:
    return f"  - {{name: moved, match: {{prefix: '{dest}'}}, mode: cutover, on_failure: legacy}}\n"


def test_connected_and_its_eol_leave_in_one_write(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    writes = Writes()
    proxy = make_proxy("  []\n", tap=writes)
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        raw_login(sock, legacy)
    proxy.wait_fact("client_disconnected")
    (session,) = writes.to
    first = writes.to[session][0]
    assert first.startswith(b"CONNECTED\n") and first.endswith(b"\0\n")  # as legacy wrote it


def test_an_abrupt_close_takes_the_subscription_off_legacy_at_once(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy("  []\n")
    dest = unique_queue("abrupt")
    sock = socket.create_connection((proxy.host, proxy.port), timeout=WAIT)
    parser = raw_login(sock, legacy)
    sock.sendall(f"SUBSCRIBE\nid:0\ndestination:{dest}\nreceipt:s\n\n\0".encode())
    assert next_frame(sock, parser).command == "RECEIPT"
    sock.close()  # no DISCONNECT: nothing awaits a reply from legacy
    # The old code waited a fixed second here, dispatching to the dead subscription.
    assert proxy.wait_fact("client_disconnected", within=0.5)


def test_an_idless_1_0_subscription_merges_both_brokers_in_cutover(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    prefix = f"/queue/idless.{uuid.uuid4().hex[:8]}"
    proxy = make_proxy(cutover(prefix))
    consumer = stomp.Connection10([(proxy.host, proxy.port)], auto_decode=False)
    recorder = Recorder()
    consumer.set_listener("r", recorder)
    consumer.connect(legacy.username, legacy.password, wait=True)
    consumer.subscribe(f"{prefix}.q", receipt="sub")  # STOMP 1.0: no id
    assert recorder.wait(lambda: "sub" in recorder.receipts)
    producer = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert producer.wait_receipts([producer.send(f"{prefix}.q", "moved")])  # to Amazon MQ
    producer.close()
    assert recorder.wait(lambda: len(recorder.messages) == 1)
    (message,) = recorder.messages
    assert message.body == b"moved" and "subscription" not in message.headers
    consumer.disconnect()


def _read_until(sock: socket.socket, *needles: bytes) -> bytes:
    data = b""
    while not all(needle in data for needle in needles):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def _frames_then_eols(data: bytes) -> list[str]:
    events = FrameParser(version="1.2").feed(data)
    return ["frame" if isinstance(e, Frame) else "eol" for e in events]


# Legacy ends every frame with one EOL and sends no heart-beats here: so must the proxy.


def test_amazonmq_messages_end_with_the_eol_legacys_frames_end_with(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    prefix = f"/queue/eol.{uuid.uuid4().hex[:8]}"
    proxy = make_proxy(cutover(prefix))
    producer = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        parser = raw_login(sock, legacy)
        sock.sendall(f"SUBSCRIBE\nid:0\ndestination:{prefix}.q\nreceipt:s\n\n\0".encode())
        assert next_frame(sock, parser).command == "RECEIPT"
        assert producer.wait_receipts([producer.send(f"{prefix}.q", "m")])  # via Amazon MQ
        data = _read_until(sock, b"\nm\0")
        sock.sendall(f"SEND\ndestination:{prefix}.q\nreceipt:after\n\nx\0".encode())
        data += _read_until(sock, b"receipt-id:after")
    producer.close()
    assert _frames_then_eols(data[data.index(b"MESSAGE") :]) == ["frame", "eol"] * 2, data


def test_a_frame_the_proxy_swallows_takes_its_eol_along(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    prefix = f"/queue/eol.{uuid.uuid4().hex[:8]}"
    proxy = make_proxy(cutover(prefix))
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        raw_login(sock, legacy)
        sock.sendall(
            f"BEGIN\ntransaction:t\n\n\0SEND\ndestination:{prefix}.q\ntransaction:t\n\nm\0"
            "COMMIT\ntransaction:t\n\n\0"  # legacy's COMMIT gets the proxy's own receipt
            f"SEND\ndestination:/queue/plain.{uuid.uuid4().hex[:8]}\nreceipt:after\n\nx\0".encode()
        )
        data = _read_until(sock, b"receipt-id:after")
    assert proxy.facts("transaction_committed")
    assert _frames_then_eols(data) == ["frame", "eol"], data


def test_a_wildcard_subscription_keeps_each_messages_destination(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    prefix = f"/queue/wild.{uuid.uuid4().hex[:8]}"
    proxy = make_proxy(cutover(prefix))
    consumer = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    consumer.conn.subscribe(f"{prefix}.*", id="w", ack="auto", headers={"receipt": "sub"})
    assert consumer.recorder.wait(lambda: "sub" in consumer.recorder.receipts)
    producer = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert producer.wait_receipts([producer.send(f"{prefix}.{n}", n) for n in ("a", "b")])
    producer.close()
    assert consumer.recorder.wait(lambda: len(consumer.recorder.messages) == 2)
    got = sorted(m.headers["destination"] for m in consumer.recorder.messages)
    assert got == [f"{prefix}.a", f"{prefix}.b"]
    consumer.close()


@pytest.mark.parametrize(
    ("a_receipt", "nodelay"),
    [(False, False), (True, False), (True, True)],
    ids=["a", "a+receipt", "a+receipt-client-nodelay"],
)
def test_a_nagle_clients_second_frame_is_not_held_by_a_delayed_ack(
    make_proxy: ProxyFactory, legacy: BrokerInfo, a_receipt: bool, nodelay: bool
) -> None:
    """#20's Nagle observation: a client that leaves Nagle on holds SEND b until SEND a is
    acknowledged. When a asks no receipt, only an ACK can release b: the proxy re-arms
    TCP_QUICKACK after such a read, so its kernel ACKs a at once rather than after the
    40 ms delayed-ACK timer (without it: 30 of 30 tries over 40 ms, bench/nagle.py).
    When a asks a receipt, the proxy lets the ACK ride on that RECEIPT instead. Legacy
    leaves Nagle on too: its RECEIPT for b waits for the proxy's ACK of its RECEIPT for a
    (directly, 29 of 30 tries over 40 ms with a client that sets TCP_NODELAY), so the
    proxy acknowledges legacy at once while it owes receipts."""
    proxy = make_proxy("  []\n")
    dest = unique_queue("nagle")
    took = []
    for i in range(10):
        with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            parser = raw_login(sock, legacy)  # else Nagle on: the socket default
            start = time.perf_counter()
            receipt = f"receipt:a{i}\n" if a_receipt else ""
            sock.send(f"SEND\ndestination:{dest}\n{receipt}\na{i}\0".encode())
            sock.send(f"SEND\ndestination:{dest}\nreceipt:b{i}\n\nb{i}\0".encode())
            if a_receipt:
                answer = next_frame(sock, parser)
                assert answer.command == "RECEIPT" and answer.get("receipt-id") == f"a{i}"
            answer = next_frame(sock, parser)
            took.append(time.perf_counter() - start)
            assert answer.command == "RECEIPT" and answer.get("receipt-id") == f"b{i}"
    assert statistics.median(took) < 0.02, [f"{t * 1000:.1f} ms" for t in took]
