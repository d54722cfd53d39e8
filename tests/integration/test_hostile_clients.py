"""Hostile and broken producers: limits answered with an ERROR naming them, slow or
never-reading clients closed after a bounded time, buffers bounded meanwhile."""

from __future__ import annotations

import socket

import pytest

from strangler.stomp import Frame, FrameParser, Limits

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .harness import WAIT, connect, unique_queue

pytestmark = pytest.mark.integration


def _login(sock: socket.socket, legacy: BrokerInfo) -> FrameParser:
    sock.sendall(
        f"CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{legacy.username}\n"
        f"passcode:{legacy.password}\n\n\0".encode()
    )
    parser = FrameParser()
    assert _next_frame(sock, parser).command == "CONNECTED"
    parser.version = "1.2"
    return parser


def _next_frame(sock: socket.socket, parser: FrameParser) -> Frame:
    while True:
        data = sock.recv(65536)
        assert data, "connection closed before a frame arrived"
        frames = [e for e in parser.feed(data) if isinstance(e, Frame)]
        if frames:
            return frames[0]


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (
            b"SEND\ndestination:/queue/x\n" + b"".join(b"h%d:v\n" % i for i in range(20)) + b"\n\0",
            "more than 10 headers",
        ),
        (b"SEND\ndestination:/queue/x\nlong:" + b"v" * 400 + b"\n\n\0", "longer than 256 bytes"),
        (b"SEND\ndestination:/queue/x\nendless:" + b"v" * 400, "longer than 256 bytes"),
        (b"SEND\ndestination:/queue/x\n\n" + b"no NUL ever " * 500, "larger than 4096"),
    ],
)
def test_limits_are_answered_with_an_error_naming_them(
    payload: bytes, named: str, make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy(
        "  []\n", limits=Limits(max_frame_bytes=4096, max_headers=10, max_header_line=256)
    )
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        parser = _login(sock, legacy)
        sock.sendall(payload)
        error = _next_frame(sock, parser)
        assert error.command == "ERROR"
        assert named in (error.get("message") or "")
        assert _closed_by_peer(sock)


def test_slowloris_frame_is_cut_off_after_the_frame_timeout(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy("  []\n", frame_timeout=1.0)
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        parser = _login(sock, legacy)
        sock.sendall(b"SEND\ndestination:/queue/slow\n")  # ...and never the rest
        error = _next_frame(sock, parser)
        assert error.command == "ERROR"
        assert "not completed within 1 seconds" in (error.get("message") or "")
        assert _closed_by_peer(sock)
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
        _login(sock, legacy)
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
