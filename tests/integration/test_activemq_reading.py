"""Our model of how ActiveMQ reads a header is checked against the real broker.

Routing decides on what the broker will do with a frame (``routes/destinations.py``,
``stomp/activemq.py``). Each case here is sent straight to the legacy broker (no
proxy), and the destinations it really reached are read back through wildcard
subscriptions (``/queue/>``, ``/topic/>``: the MESSAGE ``destination`` header names the
destination each copy was stored into). They must be exactly the model's.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from strangler.routes.destinations import broker_destinations
from strangler.stomp import Frame, FrameParser
from strangler.stomp.activemq import broker_value

from .brokers import BrokerInfo

pytestmark = pytest.mark.integration

# {p} is replaced by a run-unique prefix.
CASES = [
    " /queue/{p}.ws\t",
    "\t/queue/{p}.tab ",
    "/queue/{p}.c1,/queue/{p}.c2",
    "/queue/ {p}.s1 , {p}.s2 ,",
    "{p}.bare",
    "/queue/{p}.o1?consumer.prefetchSize=1,/queue/{p}.o2",
    "/topic/{p}.t1,/queue/{p}.q1",
    "queue://{p}.qq",
    "/queue/topic://{p}.cd",
    "/queue/{p}.cb,topic://{p}.ct",
    "/queue/{p}.a1 , /topic/{p}.b1",
    "/queue/{p}.x1,{p}.x2,/topic/{p}.x3",
]


class RawClient:
    """A STOMP session over a plain socket, reading frames with our own parser."""

    def __init__(self, broker: BrokerInfo, version: str, login: str | None = None) -> None:
        self.sock = socket.create_connection(broker.host_and_port, timeout=10)
        self.parser = FrameParser()
        self.pending: list[Frame] = []
        self.sock.sendall(
            f"CONNECT\naccept-version:{version}\nhost:localhost\n"
            f"login:{login if login is not None else broker.username}\n"
            f"passcode:{broker.password}\n\n\0".encode()
        )
        self.connected = self.next_frame()
        self.parser.version = self.connected.get("version") or "1.0"

    def next_frame(self) -> Frame:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "connection closed before a frame arrived"
            self.pending += [e for e in self.parser.feed(data) if isinstance(e, Frame)]
        return self.pending.pop(0)

    def send(self, frame: str) -> None:
        self.sock.sendall(frame.encode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def prefix() -> str:
    return f"amqread{uuid.uuid4().hex[:10]}"


def _collect(reader: RawClient, marker: str, count: int) -> list[str]:
    """Destinations of the next ``count`` MESSAGEs whose body is ``marker``."""
    found: list[str] = []
    while len(found) < count:
        frame = reader.next_frame()
        if frame.command == "MESSAGE" and frame.body == marker.encode():
            found.append(frame.get("destination") or "")
    return found


def _collect_until(reader: RawClient, marker: str) -> list[bytes]:
    """The bodies of the MESSAGEs before the one whose body is ``marker``."""
    bodies: list[bytes] = []
    while True:
        frame = reader.next_frame()
        if frame.command != "MESSAGE":
            continue
        if frame.body == marker.encode():
            return bodies
        bodies.append(frame.body)


@pytest.mark.parametrize("version", ["1.0", "1.2"])
def test_destinations_the_broker_stores_into_are_the_models(
    version: str, legacy: BrokerInfo, prefix: str
) -> None:
    reader = RawClient(legacy, "1.2")
    for n, wildcard in enumerate(("/queue/>", "/topic/>")):
        reader.send(f"SUBSCRIBE\nid:w{n}\ndestination:{wildcard}\nack:auto\nreceipt:w{n}\n\n\0")
        assert reader.next_frame().command == "RECEIPT"
    sender = RawClient(legacy, version)
    for index, case in enumerate(CASES):
        value = case.format(p=prefix)
        marker = f"{prefix}-{index}"
        sender.send(f"SEND\ndestination:{value}\nreceipt:r{index}\n\n{marker}\0")
        answer = sender.next_frame()
        assert answer.command == "RECEIPT", (value, answer)
        expected = [
            d.stomp for d in broker_destinations(broker_value(value, version, "SEND") or "")
        ]
        # A composite stores one copy per destination; the ones outside /queue/ and
        # /topic/ (none here) would not reach the wildcards.
        got = _collect(reader, marker, len(expected))
        assert sorted(got) == sorted(expected), value
    # No extra copy of a case: none arrives before a final marker (other tests' leftovers
    # on the shared broker may, and are not ours to judge).
    sender.send(f"SEND\ndestination:/queue/{prefix}.end\nreceipt:end\n\n{prefix}-end\0")
    assert sender.next_frame().command == "RECEIPT"
    extra = _collect_until(reader, f"{prefix}-end")
    assert not [body for body in extra if body.startswith(prefix.encode())], extra
    sender.close()
    reader.close()


def test_a_1_0_destination_is_decoded_and_trimmed_as_the_broker_does(
    legacy: BrokerInfo, prefix: str
) -> None:
    reader = RawClient(legacy, "1.2")
    reader.send("SUBSCRIBE\nid:w\ndestination:/queue/>\nack:auto\nreceipt:w\n\n\0")
    assert reader.next_frame().command == "RECEIPT"
    sender = RawClient(legacy, "1.0")
    value = f"  /queue/{prefix}.e\\cx  "
    sender.send(f"SEND\ndestination:{value}\nreceipt:r\n\n{prefix}\0")
    assert sender.next_frame().command == "RECEIPT"
    (got,) = _collect(reader, prefix, 1)
    assert got == f"/queue/{prefix}.e:x"
    assert [d.stomp for d in broker_destinations(broker_value(value, "1.0", "SEND") or "")] == [got]
    sender.close()
    reader.close()


@pytest.mark.parametrize("padded", [" producer-a", "producer-a ", "producer-a\t", "\tproducer-a"])
def test_the_broker_authenticates_a_padded_login_as_the_trimmed_one(
    padded: str, legacy: BrokerInfo
) -> None:
    # producer-a's password, with the login padded: legacy accepts it (it trims).
    client = RawClient(
        BrokerInfo(
            legacy.name,
            legacy.kind,
            legacy.host,
            legacy.port,
            None,
            padded,
            "producer-a-secret",
            legacy.pid,
        ),
        "1.2",
    )
    assert client.connected.command == "CONNECTED"
    assert broker_value(padded, "1.2", "CONNECT") == "producer-a"
    client.close()
