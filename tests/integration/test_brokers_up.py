"""Smoke tests for the real-broker harness (scripts/brokers.sh + tests/integration/brokers.py)."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stomp
from stomp.exception import ConnectFailedException

from . import brokers
from .brokers import BrokerInfo

pytestmark = pytest.mark.integration

TIMEOUT = 15.0
QUEUE = "/queue/brokers-up-check"


@pytest.fixture(scope="module")
def standard() -> tuple[BrokerInfo, BrokerInfo]:
    return brokers.ensure_standard()


@pytest.fixture
def legacy(standard: tuple[BrokerInfo, BrokerInfo]) -> BrokerInfo:
    return standard[0]


@pytest.fixture
def amazonmq(standard: tuple[BrokerInfo, BrokerInfo]) -> BrokerInfo:
    return standard[1]


class Recorder(stomp.ConnectionListener):  # type: ignore[misc]
    """Collects ERROR frames, receipts and messages; sets events instead of sleeping."""

    def __init__(self, want_body: str | None = None) -> None:
        self.errors: list[Any] = []
        self.error = threading.Event()
        self.receipts: set[str] = set()
        self.receipt = threading.Event()
        self.want_body = want_body
        self.message: Any = None
        self.received = threading.Event()

    def on_error(self, frame: Any) -> None:
        self.errors.append(frame)
        self.error.set()

    def on_receipt(self, frame: Any) -> None:
        self.receipts.add(frame.headers.get("receipt-id", ""))
        self.receipt.set()

    def on_message(self, frame: Any) -> None:
        # The queue is durable and shared between runs: ignore leftovers.
        if frame.body == self.want_body:
            self.message = frame
            self.received.set()


def connection(b: BrokerInfo, ca_file: str | None = None) -> stomp.Connection:
    conn = stomp.Connection(
        [b.host_and_port], timeout=TIMEOUT, reconnect_attempts_max=1, heartbeats=(0, 0)
    )
    if b.kind == "tls":
        conn.set_ssl(for_hosts=[b.host_and_port], ca_certs=ca_file or b.ca_file)
    return conn


@pytest.fixture
def connected() -> Iterator[list[stomp.Connection]]:
    """A list the test appends connections to; all are disconnected afterwards."""
    conns: list[stomp.Connection] = []
    yield conns
    for c in conns:
        if c.is_connected():
            c.disconnect()
        c.transport.stop()


def assert_login(b: BrokerInfo, connected: list[stomp.Connection]) -> None:
    good = connection(b)
    connected.append(good)
    good.connect(b.username, b.password, wait=True)
    assert good.is_connected()

    bad = connection(b)
    connected.append(bad)
    rec = Recorder()
    bad.set_listener("rec", rec)
    with pytest.raises(ConnectFailedException):
        bad.connect(b.username, b.password + "-wrong", wait=True)
    assert rec.error.wait(TIMEOUT)
    assert "password is invalid" in rec.errors[0].headers.get("message", "")

    nobody = connection(b)
    connected.append(nobody)
    with pytest.raises(ConnectFailedException):
        nobody.connect(wait=True)  # anonymous access is off, like Amazon MQ


def test_legacy_login(legacy: BrokerInfo, connected: list[stomp.Connection]) -> None:
    assert legacy.url == "stomp://127.0.0.1:" + str(legacy.port)
    assert (legacy.username, legacy.password) == ("producer", "producer-secret")
    assert_login(legacy, connected)


def test_amazonmq_tls_login(amazonmq: BrokerInfo, connected: list[stomp.Connection]) -> None:
    assert amazonmq.url == "stomp+ssl://127.0.0.1:" + str(amazonmq.port)
    assert amazonmq.ca_file is not None
    assert (amazonmq.username, amazonmq.password) == ("strangler", "amazonmq-secret-1")
    assert_login(amazonmq, connected)


def test_amazonmq_cert_needs_ca(amazonmq: BrokerInfo, connected: list[stomp.Connection]) -> None:
    """Without ca.pem the self-signed certificate fails verification (TLS is really checked)."""
    conn = stomp.Connection([amazonmq.host_and_port], timeout=TIMEOUT, reconnect_attempts_max=1)
    connected.append(conn)
    conn.set_ssl(for_hosts=[amazonmq.host_and_port])  # system CAs only
    with pytest.raises(ConnectFailedException):
        conn.connect(amazonmq.username, amazonmq.password, wait=True)


@pytest.mark.parametrize("which", ["legacy", "amazonmq"])
def test_round_trip(
    which: str, standard: tuple[BrokerInfo, BrokerInfo], connected: list[stomp.Connection]
) -> None:
    b = standard[0] if which == "legacy" else standard[1]
    body = f"brokers-up-check {which} {uuid.uuid4()}"

    consumer = connection(b)
    connected.append(consumer)
    got = Recorder(want_body=body)
    consumer.set_listener("rec", got)
    consumer.connect(b.username, b.password, wait=True)
    consumer.subscribe(QUEUE, id="1", ack="auto", headers={"receipt": "sub-1"})
    assert got.receipt.wait(TIMEOUT), "no receipt for SUBSCRIBE"

    producer = connection(b)
    connected.append(producer)
    sent = Recorder()
    producer.set_listener("rec", sent)
    producer.connect(b.username, b.password, wait=True)
    producer.send(QUEUE, body, headers={"receipt": "send-1", "persistent": "true"})
    assert sent.receipt.wait(TIMEOUT), "no receipt for SEND"
    assert "send-1" in sent.receipts
    assert not sent.errors, sent.errors

    assert got.received.wait(TIMEOUT), "message not delivered back"
    assert got.message.headers["destination"] == QUEUE
    assert got.message.headers.get("persistent") == "true"


def test_start_one_and_kill(
    standard: tuple[BrokerInfo, BrokerInfo], connected: list[stomp.Connection]
) -> None:
    name = f"test-extra-{uuid.uuid4().hex[:8]}"
    port = brokers.free_port()
    try:
        b = brokers.start_one(name, "tls", port)
        assert (b.kind, b.port, b.username) == ("tls", port, "strangler")
        assert b.url == f"stomp+ssl://127.0.0.1:{port}"
        assert b.ca_file is not None and b.ca_file != standard[1].ca_file
        assert brokers.pid_is_broker(b.pid, name)

        conn = connection(b)
        connected.append(conn)
        conn.connect(b.username, b.password, wait=True)
        assert conn.is_connected()

        brokers.kill(name)
        assert not brokers.pid_alive(b.pid)
        assert not brokers.port_open(port)
        # The shared brokers are untouched.
        for s in standard:
            assert brokers.pid_is_broker(s.pid, s.name)
    finally:
        brokers.stop(name)
        shutil.rmtree(brokers.state_dir() / name, ignore_errors=True)
    assert not brokers.port_open(port)
