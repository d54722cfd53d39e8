"""Hostile and broken producers: limits answered with an ERROR naming them, slow or
never-reading clients closed after a bounded time, buffers bounded meanwhile."""

from __future__ import annotations

import socket

import pytest

from strangler.stomp import Limits

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .harness import WAIT, closed_by_peer, connect, next_frame, raw_login, unique_queue

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (b"BOGUS\n\n\0", "unknown command"),
        (b"SEND\ndestination\n\nx\0", "without ':'"),
        (b"SEND\ndestination:/queue/x\ncontent-length:abc\n\n\0", "content-length"),
        (b"SEND\ndestination:/queue/x\ncontent-length:99999\n\n", "larger than 4096"),
        (
            b"SEND\ndestination:/queue/x\n" + b"".join(b"h%d:v\n" % i for i in range(20)) + b"\n\0",
            "more than 10 headers",
        ),
        (b"SEND\ndestination:/queue/x\nlong:" + b"v" * 400 + b"\n\n\0", "longer than 256 bytes"),
        (b"SEND\ndestination:/queue/x\nendless:" + b"v" * 400, "longer than 256 bytes"),
        (b"SEND\ndestination:/queue/x\n\n" + b"no NUL ever " * 500, "larger than 4096"),
    ],
)
def test_malformed_frames_and_limits_get_an_error_naming_the_problem_then_close(
    payload: bytes, named: str, make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy(
        "  []\n", limits=Limits(max_frame_bytes=4096, max_headers=10, max_header_line=256)
    )
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        parser = raw_login(sock, legacy)
        sock.sendall(payload)
        error = next_frame(sock, parser)
        assert error.command == "ERROR"
        assert named in (error.get("message") or "")
        assert closed_by_peer(sock)
    assert proxy.wait_fact("client_protocol_error")


def test_a_send_without_destination_is_refused_by_legacy_as_it_always_was(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    """Nothing to route, nothing to store: legacy answers it (its ERROR names the receipt,
    and ActiveMQ keeps the connection open), exactly as without the proxy."""
    proxy = make_proxy("  []\n")
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        parser = raw_login(sock, legacy)
        sock.sendall(b"SEND\nreceipt:e\n\nno destination\0")
        error = next_frame(sock, parser)
        assert error.command == "ERROR" and error.get("receipt-id") == "e"
        assert "Destination" in (error.get("message") or "")
        sock.sendall(b"SEND\ndestination:/queue/strangler.after\nreceipt:next\n\nx\0")
        assert next_frame(sock, parser).get("receipt-id") == "next"


def test_slowloris_frame_is_cut_off_after_the_frame_timeout(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy("  []\n", frame_timeout=1.0)
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        parser = raw_login(sock, legacy)
        sock.sendall(b"SEND\ndestination:/queue/slow\n")  # ...and never the rest
        error = next_frame(sock, parser)
        assert error.command == "ERROR"
        assert "not completed within 1 seconds" in (error.get("message") or "")
        assert closed_by_peer(sock)
    assert proxy.wait_fact("client_protocol_error")


def test_client_that_never_reads_is_closed_and_buffers_stay_bounded(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    dest = unique_queue("never-read")
    producer = connect(legacy.host, legacy.port, legacy.username, legacy.password)
    body = b"x" * 65536
    assert producer.wait_receipts([producer.send(dest, body) for _ in range(300)])
    producer.close()

    proxy = make_proxy("  []\n", write_timeout=1.0)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    sock.connect((proxy.host, proxy.port))
    try:
        raw_login(sock, legacy)
        sock.sendall(f"SUBSCRIBE\nid:0\ndestination:{dest}\nack:client\n\n\0".encode())
        reason = proxy.wait_fact("client_protocol_error")
        assert reason and reason[0]["reason"] == "client stopped reading"
        # While it waited, the proxy held at most one read's worth plus the transport's
        # high-water mark for this client, not the ~19 MiB legacy had queued.
        disconnected = proxy.wait_fact("client_disconnected")
        assert "read nothing" in disconnected[0]["reason"]
    finally:
        sock.close()
    # Nothing was acked: every message is still on legacy for a healthy consumer.
    consumer = connect(legacy.host, legacy.port, legacy.username, legacy.password)
    consumer.conn.subscribe(dest, id="all", ack="auto")
    assert consumer.recorder.wait(lambda: len(consumer.recorder.messages) == 300)
    consumer.close()


def test_error_survives_input_the_proxy_never_read(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    """A client pipelining frames behind a bad one still reads the ERROR: the proxy
    half-closes and drains instead of closing with unread input (which resets the
    connection and can destroy the ERROR in the client's receive buffer)."""
    proxy = make_proxy("  []\n")
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        parser = raw_login(sock, legacy)
        behind = b"SEND\ndestination:/queue/strangler.behind\n\nx\0" * 20_000  # ~0.9 MB
        sock.sendall(b"BOGUS\n\n\0" + behind)
        error = next_frame(sock, parser)
        assert error.command == "ERROR"
        assert "unknown command" in (error.get("message") or "")
        assert closed_by_peer(sock)
