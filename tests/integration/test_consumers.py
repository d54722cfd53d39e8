"""Consumers through the proxy: one subscription reading both real brokers.

For a cutover queue, a consumer gets legacy's backlog and Amazon MQ's new
messages through one subscription, each exactly once, and every ACK lands on
the broker the message came from: after the consumer leaves, whatever it
acknowledged is gone from both brokers and whatever it did not is still there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from stomp.utils import Frame as StompFrame

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .faults import Relay
from .harness import (
    Client,
    RunningProxy,
    connect,
    connect_broker,
    drain,
    routes_yaml,
    unique_queue,
)

pytestmark = pytest.mark.integration

CHECK = 0.3  # backlog check period: short, so legacy's side is dropped within a test


def backlog(broker: BrokerInfo, destination: str, bodies: list[str]) -> None:
    """Messages already queued on ``broker`` before anyone moves (sent with receipts)."""
    client = connect_broker(broker)
    try:
        for body in bodies:
            client.send(destination, body)
        assert client.wait_receipts(client.sent)
    finally:
        client.close()


def produce(proxy: RunningProxy, legacy: BrokerInfo, destination: str, bodies: list[str]) -> None:
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    try:
        for body in bodies:
            client.send(destination, body)
        assert client.wait_receipts(client.sent)
        assert not client.recorder.errors
    finally:
        client.close()


def consumer(proxy: RunningProxy, legacy: BrokerInfo, version: str = "1.2") -> Client:
    return connect(proxy.host, proxy.port, legacy.username, legacy.password, version=version)


def receive(client: Client, count: int) -> list[StompFrame]:
    assert client.recorder.wait(lambda: len(client.recorder.messages) >= count), (
        f"{len(client.recorder.messages)} of {count} messages arrived"
    )
    return list(client.recorder.messages)


def bodies(messages: list[StompFrame]) -> list[str]:
    return [m.body.decode() for m in messages]


def ack_each(client: Client, messages: list[StompFrame], prefix: str, first: int = 0) -> bool:
    """ACK every message with a receipt of its own (``prefix`` + n); True once all came."""
    receipts = [f"{prefix}{i}" for i in range(first, first + len(messages))]
    for message, receipt in zip(messages, receipts, strict=True):
        client.conn.ack(message.headers["ack"], receipt=receipt)
    return client.wait_receipts(receipts)


def cutover(dest: str, **fields: Any) -> str:
    extra = "".join(f", {k}: '{v}'" for k, v in fields.items())
    return (
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject"
        f"{extra}}}\n"
    )


def test_cutover_consumer_gets_backlog_and_new_messages_once_with_acks_on_each_broker(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("consume")
    target = unique_queue("consume.target")  # the route renames it on Amazon MQ
    old = [f"old{i}" for i in range(20)]
    new = [f"new{i}" for i in range(20)]
    backlog(legacy, dest, old)
    proxy = make_proxy(cutover(dest, target_destination=target), backlog_check_interval=CHECK)
    produce(proxy, legacy, dest, new)

    client = consumer(proxy, legacy)
    try:
        client.conn.subscribe(dest, id="c1", ack="client-individual")
        messages = receive(client, len(old) + len(new))
        assert sorted(bodies(messages)) == sorted(old + new)  # each exactly once
        # The client sees the name it subscribed to, from either broker.
        assert {m.headers["destination"] for m in messages} == {dest}
        assert ack_each(client, messages, "a"), "an ACK was not confirmed"
        drained = proxy.wait_fact("consumer_drained", subscription="c1")
        assert drained[0]["from_legacy"] == len(old)
        assert not client.recorder.errors
    finally:
        client.close()

    delivered = proxy.facts("message_delivered", subscription="c1")
    assert sorted(f["broker"] for f in delivered) == ["amazonmq"] * 20 + ["legacy"] * 20
    # Every ACK was honoured where the message came from: nothing left anywhere.
    assert drain(legacy, dest) == []
    assert drain(amazonmq, target) == []
    assert not proxy.facts("consumer_ack_failed")


def test_cumulative_ack_covers_both_brokers_up_to_the_named_message(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("cumulative")
    old = [f"old{i}" for i in range(10)]
    new = [f"new{i}" for i in range(10)]
    backlog(legacy, dest, old)
    proxy = make_proxy(cutover(dest), backlog_check_interval=60.0)
    produce(proxy, legacy, dest, new)

    client = consumer(proxy, legacy)
    try:
        client.conn.subscribe(dest, id="c2", ack="client")
        messages = receive(client, 20)
        cut = 12  # ACK the 13th: in client mode that covers everything delivered before it
        client.conn.ack(messages[cut].headers["ack"], receipt="cumulative")
        assert client.wait_receipts(["cumulative"])
    finally:
        client.close()  # the rest goes back to its broker, unacknowledged

    left = bodies(drain(legacy, dest)) + bodies(drain(amazonmq, dest))
    assert sorted(left) == sorted(bodies(messages)[cut + 1 :])


def test_transactional_acks_commit_or_abort_on_both_brokers(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("txack")
    backlog(legacy, dest, ["old"])
    proxy = make_proxy(cutover(dest), backlog_check_interval=60.0)
    produce(proxy, legacy, dest, ["new"])

    # Acknowledged inside a transaction that is aborted: both stay.
    client = consumer(proxy, legacy)
    try:
        client.conn.subscribe(dest, id="t1", ack="client-individual")
        messages = receive(client, 2)
        tx = client.conn.begin()
        for m in messages:
            client.conn.ack(m.headers["ack"], transaction=tx)
        client.conn.abort(tx, receipt="aborted")
        assert client.wait_receipts(["aborted"])
    finally:
        client.close()

    client = consumer(proxy, legacy)
    try:
        client.conn.subscribe(dest, id="t2", ack="client-individual")
        messages = receive(client, 2)
        assert sorted(bodies(messages)) == ["new", "old"]  # redelivered by each broker
        tx = client.conn.begin()
        for m in messages:
            client.conn.ack(m.headers["ack"], transaction=tx)
        client.conn.commit(tx, receipt="committed")
        assert client.wait_receipts(["committed"])
        assert not client.recorder.errors
    finally:
        client.close()

    assert drain(legacy, dest) == []
    assert drain(amazonmq, dest) == []
    assert proxy.facts("transaction_committed", transaction=tx)


def test_stomp_11_consumer_acks_by_message_id_and_subscription(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("v11")
    backlog(legacy, dest, ["old"])
    proxy = make_proxy(cutover(dest), backlog_check_interval=CHECK)
    produce(proxy, legacy, dest, ["new"])

    client = consumer(proxy, legacy, version="1.1")
    try:
        client.conn.subscribe(dest, id="v1", ack="client-individual")
        messages = receive(client, 2)
        for i, m in enumerate(messages):
            client.conn.ack(m.headers["message-id"], "v1", receipt=f"v{i}")
        assert client.wait_receipts(["v0", "v1"])
        proxy.wait_fact("consumer_drained", subscription="v1")
    finally:
        client.close()
    assert drain(legacy, dest) == []
    assert drain(amazonmq, dest) == []


def test_mirror_consumers_stay_on_legacy(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("mirror.consume")
    proxy = make_proxy(f"  - {{name: copy, match: {{exact: '{dest}'}}, mode: mirror}}\n")
    produce(proxy, legacy, dest, ["a", "b", "c"])
    proxy.wait_fact("message_confirmed", 3, broker="amazonmq", role="mirror")

    client = consumer(proxy, legacy)
    try:
        client.conn.subscribe(dest, id="m1", ack="auto")
        assert sorted(bodies(receive(client, 3))) == ["a", "b", "c"]
        # A receipted round trip after the three: nothing else was delivered meanwhile.
        client.send("/queue/strangler.fence", "fence")
        assert client.wait_receipts(client.sent)
        assert len(client.recorder.messages) == 3
    finally:
        client.close()
    assert sorted(bodies(drain(amazonmq, dest))) == ["a", "b", "c"]  # the copies, untouched
    assert not proxy.facts("consumer_subscribed", subscription="m1")


def test_split_consumer_reads_both_brokers(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("split.consume")
    proxy = make_proxy(
        f"  - {{name: half, match: {{exact: '{dest}'}}, mode: split, weight: 50,"
        " on_failure: legacy}\n",
        backlog_check_interval=CHECK,
    )
    sent = [f"s{i}" for i in range(40)]
    produce(proxy, legacy, dest, sent)
    targets = [f["targets"] for f in proxy.facts("message_routed", destination=dest)]
    assert ["legacy"] in targets and ["amazonmq"] in targets  # both got some

    client = consumer(proxy, legacy)
    try:
        client.conn.subscribe(dest, id="p1", ack="auto")
        assert sorted(bodies(receive(client, 40))) == sorted(sent)
    finally:
        client.close()
    assert drain(legacy, dest) == []
    assert drain(amazonmq, dest) == []


def test_consumer_survives_a_lost_amazonmq_connection(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    """The link subscribes again on its next connection; an ACK from before it is refused
    (a fact), and Amazon MQ redelivers that message, which is then acknowledged."""
    dest = unique_queue("relink")
    with Relay(amazonmq.port) as relay:
        proxy = make_proxy(cutover(dest), amazonmq_port=relay.port, backlog_check_interval=60.0)
        client = consumer(proxy, legacy)
        try:
            client.conn.subscribe(dest, id="r1", ack="client-individual")
            proxy.wait_fact("consumer_subscribed", subscription="r1", broker="amazonmq")
            produce(proxy, legacy, dest, ["before"])
            (held,) = receive(client, 1)
            assert relay.sever() >= 1  # the proxy's Amazon MQ connections are reset
            proxy.wait_fact("consumer_subscribed", 2, subscription="r1", broker="amazonmq")
            produce(proxy, legacy, dest, ["after"])
            messages = receive(client, 3)  # "before" comes again, then "after"
            assert sorted(bodies(messages)) == ["after", "before", "before"]
            client.conn.ack(held.headers["ack"])  # names the lost connection's delivery
            proxy.wait_fact("consumer_ack_failed", subscription="r1")
            assert ack_each(client, messages[1:], "k")
            assert not client.recorder.errors
        finally:
            client.close()
    assert drain(amazonmq, dest) == []
    assert drain(legacy, dest) == []


def test_routes_change_reaches_open_subscriptions_both_ways(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: Path
) -> None:
    """mirror -> cutover gives an open subscription its Amazon MQ side (and legacy's side
    drains); cutover -> legacy (rollback) gives legacy's side back, without a reconnect."""
    dest = unique_queue("reroute")
    routes_file = tmp_path / "live-routes.yaml"

    def apply(mode: str) -> None:
        rule = f"  - {{name: r, match: {{exact: '{dest}'}}, mode: {mode}, on_failure: legacy}}\n"
        routes_file.write_text(routes_yaml(legacy, amazonmq, rule))

    apply("mirror")
    proxy = make_proxy("", routes_file=routes_file, backlog_check_interval=CHECK)
    client = consumer(proxy, legacy)
    try:
        client.conn.subscribe(dest, id="u1", ack="client-individual")
        produce(proxy, legacy, dest, ["mirrored"])
        (first,) = receive(client, 1)
        client.conn.ack(first.headers["ack"], receipt="first")  # legacy's, passed through
        assert client.wait_receipts(["first"])
        apply("cutover")
        assert proxy.reload()
        proxy.wait_fact("consumer_subscribed", subscription="u1", broker="amazonmq")
        produce(proxy, legacy, dest, ["moved"])
        drained = proxy.wait_fact("consumer_drained", subscription="u1")
        assert drained[0]["from_legacy"] == 0  # "mirrored" came before the change
        apply("legacy")
        assert proxy.reload()
        proxy.wait_fact("consumer_subscribed", 2, subscription="u1", broker="legacy")
        produce(proxy, legacy, dest, ["rolled back"])
        messages = receive(client, 4)
        # "mirrored"'s copy was waiting on Amazon MQ: now read there too.
        assert sorted(bodies(messages)) == ["mirrored", "mirrored", "moved", "rolled back"]
        assert ack_each(client, messages[1:], "u", first=1)
        assert not client.recorder.errors
    finally:
        client.close()
    assert drain(legacy, dest) == []
    assert drain(amazonmq, dest) == []


def test_a_fallback_after_consumer_drained_opens_legacys_side_again(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    """A message that falls back to legacy after the consumer stopped reading legacy is
    not stranded there: legacy's side opens again, and drains again once it is read."""
    dest = unique_queue("refill")
    route = f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: legacy}}\n"
    with Relay(amazonmq.port) as relay:
        proxy = make_proxy(route, amazonmq_port=relay.port, backlog_check_interval=CHECK)
        client = consumer(proxy, legacy)
        try:
            client.conn.subscribe(dest, id="f1", ack="auto")
            proxy.wait_fact("consumer_drained", subscription="f1")  # legacy had nothing
            relay.cut()  # Amazon MQ unreachable: the next message falls back to legacy
            produce(proxy, legacy, dest, ["fallback"])
            assert proxy.wait_fact("message_fell_back", rule="moved")
            proxy.wait_fact("consumer_subscribed", 2, subscription="f1", broker="legacy")
            assert bodies(receive(client, 1)) == ["fallback"]
            assert len(proxy.wait_fact("consumer_drained", 2, subscription="f1")) == 2
            assert not client.recorder.errors
        finally:
            client.close()
    assert drain(legacy, dest) == []
