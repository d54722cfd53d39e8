"""STOMP through the proxy as producers and consumers see it: versions, bodies,
transactions, consumers, heart-beats and logins (malformed input: test_hostile_clients)."""

from __future__ import annotations

import threading

import pytest
import stomp

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .harness import WAIT, connect, drain, routed_traces, traces_of, unique_queue

pytestmark = pytest.mark.integration

BINARY = bytes(range(256)) + b"\0\0tail\0"


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_each_stomp_version_keeps_headers_and_bodies_on_both_brokers(
    version: str, make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue(f"v{version}")
    proxy = make_proxy(f"  - {{name: mirrored, match: {{exact: '{dest}'}}, mode: mirror}}\n")
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password, version=version)
    receipts = [
        client.send(dest, f"text {i}", headers={"note": "a:b c", "seq": str(i)}) for i in range(5)
    ]
    receipts.append(client.send(dest, BINARY, headers={"note": "binary"}))
    assert client.wait_receipts(receipts)
    client.close()
    proxy.wait_fact("message_confirmed", 6, broker="amazonmq")

    for broker in (legacy, amazonmq):
        messages = drain(broker, dest)
        assert [m.body for m in messages] == [f"text {i}".encode() for i in range(5)] + [BINARY]
        assert [m.headers["note"] for m in messages] == ["a:b c"] * 5 + ["binary"]
        assert set(traces_of(messages)) == set(routed_traces(proxy, dest))


def test_binary_body_with_nul_reaches_amazonmq_in_cutover(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("binary")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject}}\n"
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, BINARY)])
    client.close()
    assert [m.body for m in drain(amazonmq, dest)] == [BINARY]


def test_client_trace_id_is_kept_not_replaced(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("own-trace")
    proxy = make_proxy(f"  - {{name: mirrored, match: {{exact: '{dest}'}}, mode: mirror}}\n")
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "x", headers={"strangler-trace-id": "t-1"})])
    client.close()
    proxy.wait_fact("message_confirmed", broker="amazonmq")
    assert traces_of(drain(legacy, dest)) == ["t-1"] == traces_of(drain(amazonmq, dest))


def test_transaction_across_both_brokers_commits_on_both(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    stay, move = unique_queue("tx-stay"), unique_queue("tx-move")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{move}'}}, mode: cutover, on_failure: legacy}}\n"
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    tx = client.conn.begin()
    receipts = [client.send(stay, f"s{i}", transaction=tx) for i in range(3)]
    receipts += [client.send(move, f"m{i}", transaction=tx) for i in range(3)]
    assert client.wait_receipts(receipts)
    # Received but not committed: nothing is visible on either broker yet.
    assert drain(legacy, stay) == [] and drain(amazonmq, move) == []
    commit = "commit-1"
    client.conn.commit(transaction=tx, headers={"receipt": commit})
    assert client.wait_receipts([commit])
    client.close()

    assert [m.body for m in drain(legacy, stay)] == [b"s0", b"s1", b"s2"]
    assert [m.body for m in drain(amazonmq, move)] == [b"m0", b"m1", b"m2"]
    committed = proxy.wait_fact("transaction_committed", transaction=tx)
    assert committed and committed[0]["brokers"] == ["amazonmq", "legacy"]


def test_transaction_abort_leaves_both_brokers_empty(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    stay, move = unique_queue("abort-stay"), unique_queue("abort-move")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{move}'}}, mode: cutover, on_failure: legacy}}\n"
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    tx = client.conn.begin()
    receipts = [client.send(stay, "s", transaction=tx), client.send(move, "m", transaction=tx)]
    assert client.wait_receipts(receipts)
    client.conn.abort(transaction=tx, headers={"receipt": "abort-1"})
    assert client.wait_receipts(["abort-1"])
    client.close()
    assert drain(legacy, stay) == [] and drain(amazonmq, move) == []
    assert proxy.wait_fact("transaction_aborted", transaction=tx)


def test_transaction_fails_whole_when_amazonmq_is_down_at_commit(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    from .brokers import free_port

    stay, move = unique_queue("txdown-stay"), unique_queue("txdown-move")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{move}'}}, mode: cutover, on_failure: legacy}}\n",
        amazonmq_port=free_port(),
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    tx = client.conn.begin()
    receipts = [client.send(stay, "s", transaction=tx), client.send(move, "m", transaction=tx)]
    # Amazon MQ was never reachable, so the cutover message fell back inside the transaction.
    assert client.wait_receipts(receipts)
    client.conn.commit(transaction=tx, headers={"receipt": "c"})
    assert client.wait_receipts(["c"])
    client.close()
    assert [m.body for m in drain(legacy, stay)] == [b"s"]
    assert [m.body for m in drain(legacy, move)] == [b"m"]
    assert proxy.facts("message_fell_back")


def test_consumer_through_the_proxy_receives_and_acks_on_legacy(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("consume")
    proxy = make_proxy(f"  - {{name: mirrored, match: {{exact: '{dest}'}}, mode: mirror}}\n")
    direct = connect(legacy.host, legacy.port, legacy.username, legacy.password)
    assert direct.wait_receipts([direct.send(dest, f"c{i}") for i in range(5)])
    direct.close()

    consumer = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    consumer.conn.subscribe(dest, id="sub-1", ack="client-individual")
    assert consumer.recorder.wait(lambda: len(consumer.recorder.messages) == 5)
    for message in consumer.recorder.messages[:3]:
        consumer.conn.ack(message.headers["ack"])
    consumer.conn.unsubscribe(id="sub-1", headers={"receipt": "unsub"})
    assert consumer.wait_receipts(["unsub"])
    consumer.close()
    # Acked ones are gone; the two unacked ones were redelivered to the queue.
    assert [m.body for m in drain(legacy, dest)] == [b"c3", b"c4"]
    assert [m.body for m in consumer.recorder.messages] == [f"c{i}".encode() for i in range(5)]


def test_heartbeats_flow_between_client_and_legacy(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy("  []\n")
    beats = threading.Event()
    count = [0]

    class Beats(stomp.ConnectionListener):  # type: ignore[misc]
        def on_heartbeat(self) -> None:
            count[0] += 1
            if count[0] >= 2:
                beats.set()

    conn = stomp.Connection12([(proxy.host, proxy.port)], heartbeats=(500, 500))
    conn.set_listener("beats", Beats())
    conn.connect(legacy.username, legacy.password, wait=True)
    try:
        assert beats.wait(WAIT), "no heart-beats from legacy through the proxy"
        assert conn.is_connected()
    finally:
        conn.disconnect()


def test_login_refused_by_legacy_is_refused_by_the_proxy(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy("  []\n")
    with pytest.raises(stomp.exception.ConnectFailedException):
        connect(proxy.host, proxy.port, legacy.username, "wrong-password")
    refused = proxy.wait_fact("client_refused")
    assert refused and "password" in refused[0]["reason"].lower()
    assert not proxy.facts("client_connected")
