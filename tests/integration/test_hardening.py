"""Regression tests for #14: routes that cannot be escaped, nothing that hangs in silence,
every possible duplicate explained by a fact. Real brokers; faults from a TCP relay."""

from __future__ import annotations

import select
import socket

import pytest

from strangler.stomp import FrameParser

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .faults import Relay
from .harness import WAIT, closed_by_peer, connect, drain, next_frame, raw_login, unique_queue

pytestmark = pytest.mark.integration


def cutover(name: str, dest: str, on_failure: str) -> str:
    match = f"{{exact: '{dest}'}}"
    return f"  - {{name: {name}, match: {match}, mode: cutover, on_failure: {on_failure}}}\n"


def mirror(name: str, dest: str) -> str:
    return f"  - {{name: {name}, match: {{exact: '{dest}'}}, mode: mirror}}\n"


# -- 14.1: what the broker stores into decides the route ----------------------------------


@pytest.mark.parametrize("pad", [(" ", ""), ("", " "), ("\t", ""), ("", "\t")])
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_a_padded_destination_takes_its_route(
    pad: tuple[str, str],
    version: str,
    make_proxy: ProxyFactory,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
) -> None:
    moved, copied = unique_queue("pad-moved"), unique_queue("pad-copied")
    proxy = make_proxy(cutover("moved", moved, "reject") + mirror("copied", copied))
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        accept = f"accept-version:{version}\n" if version != "1.0" else ""
        sock.sendall(
            f"CONNECT\n{accept}host:x\nlogin:{legacy.username}\npasscode:{legacy.password}\n\n\0"
            f"SEND\ndestination:{pad[0]}{moved}{pad[1]}\nreceipt:m\n\nmoved\0"
            f"SEND\ndestination:{pad[0]}{copied}{pad[1]}\nreceipt:c\n\ncopied\0".encode()
        )
        parser = FrameParser()
        answers = []
        try:
            for _ in range(3):
                answers.append(next_frame(sock, parser))
        except TimeoutError:
            facts = [(f["event"], f.get("reason")) for f in proxy.facts()]
            raise AssertionError(f"after {answers}: no answer; facts: {facts}") from None
        assert [f.command for f in answers] == ["CONNECTED", "RECEIPT", "RECEIPT"]
    proxy.wait_fact("message_confirmed", role="mirror")
    assert [m.body for m in drain(amazonmq, moved)] == [b"moved"]
    assert drain(legacy, moved) == []  # a cutover with reject never lands on legacy
    assert [m.body for m in drain(legacy, copied)] == [b"copied"]
    assert [m.body for m in drain(amazonmq, copied)] == [b"copied"]


def test_composite_destinations_are_decided_per_part(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    a, b, plain = unique_queue("comp-a"), unique_queue("comp-b"), unique_queue("pinned")
    proxy = make_proxy(
        "  - {name: moved, match: {prefix: '/queue/comp-'}, mode: cutover, on_failure: reject}\n"
        f"  - {{name: pinned, match: {{exact: '{plain}'}}, mode: legacy}}\n"
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(f"{a},{b}", "both")])  # one route: Amazon MQ
    refused = client.send(f"{a},{plain}", "split promise")
    assert client.recorder.wait(lambda: client.recorder.errors)
    error = client.recorder.errors[0]
    assert "different brokers" in error.headers["message"]
    assert error.headers.get("receipt-id") == refused
    assert [m.body for m in drain(amazonmq, a)] == [b"both"]
    assert [m.body for m in drain(amazonmq, b)] == [b"both"]
    assert drain(legacy, a) == [] and drain(legacy, plain) == []


# -- 14.3: a bad ca_file is a fallback with a reason, not a hang ---------------------------


def test_a_missing_ca_file_falls_back_with_a_fact_instead_of_hanging(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: object
) -> None:
    dest = unique_queue("no-ca")
    block = (
        "  amazonmq:\n"
        f"    url: stomp+ssl://{amazonmq.host}:{amazonmq.port}\n"
        "    ca_file: /nonexistent/strangler-ca.pem\n"
        "    credentials: {username_env: STRANGLER_TEST_AMQ_USER, "
        "password_env: STRANGLER_TEST_AMQ_PASSWORD}\n"
    )
    proxy = make_proxy(cutover("moved", dest, "legacy"), amazonmq_block=block)
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "x")])
    client.close()
    (fell,) = proxy.wait_fact("message_fell_back")
    assert "strangler-ca.pem" in fell["reason"] or "No such file" in fell["reason"]
    assert [m.body for m in drain(legacy, dest)] == [b"x"]


# -- 14.4 / 14.5: a hung Amazon MQ: deadline, fallback, in-doubt marked --------------------


def test_a_stalled_amazonmq_falls_back_at_the_deadline_marked_possibly_stored(
    make_proxy: ProxyFactory, legacy: BrokerInfo, relay: Relay
) -> None:
    dest = unique_queue("stall-cut")
    proxy = make_proxy(
        cutover("moved", dest, "legacy"), amazonmq_port=relay.port, confirm_timeout=1.0
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "warm")])  # the link is up
    relay.stall()
    receipts = [client.send(dest, f"m{i}") for i in range(5)]
    assert client.wait_receipts(receipts)  # legacy's, after the deadline: not 30 s later
    client.close()
    fell = proxy.wait_fact("message_fell_back", 5)
    assert all(f["possibly_stored"] for f in fell)  # written to Amazon MQ, never answered
    assert "within 1 seconds" in fell[0]["reason"]


def test_a_mirror_disconnect_is_not_held_by_copies(
    make_proxy: ProxyFactory, legacy: BrokerInfo, relay: Relay
) -> None:
    dest = unique_queue("stall-mirror")
    proxy = make_proxy(mirror("copied", dest), amazonmq_port=relay.port, confirm_timeout=3.0)
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "warm")])
    proxy.wait_fact("message_confirmed", role="mirror")
    relay.stall()
    assert client.wait_receipts([client.send(dest, f"m{i}") for i in range(5)])
    client.close()  # DISCONNECT with a receipt: answered by legacy, copies still pending
    assert proxy.facts("message_mirror_failed") == []  # they had not settled yet...
    failed = proxy.wait_fact("message_mirror_failed", 5)  # ...and do at their deadline
    assert all(f["possibly_stored"] for f in failed)


def test_amazonmq_seen_back_by_the_probe_ends_every_back_off(
    make_proxy: ProxyFactory, legacy: BrokerInfo, relay: Relay
) -> None:
    dest = unique_queue("probe")
    proxy = make_proxy(cutover("moved", dest, "legacy"), amazonmq_port=relay.port)
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    relay.cut()
    for i in range(4):  # each failure doubles the session's back-off (1, 2, 4, 8 s)
        assert client.wait_receipts([client.send(dest, f"down{i}")])
    proxy.wait_fact("message_fell_back", 1)
    relay.pass_through()
    assert proxy.wait_fact("broker_recovered")  # the probe, not a session, saw it
    assert client.wait_receipts([client.send(dest, "back")])
    client.close()
    assert proxy.wait_fact("message_confirmed", broker="amazonmq")


# -- 14.6: what an unauthenticated or excessive client can hold ---------------------------


def test_before_connected_a_big_frame_is_refused_and_nothing_reaches_legacy(
    make_proxy: ProxyFactory,
) -> None:
    proxy = make_proxy("  []\n")
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        sock.sendall(b"CONNECT\nlogin:x\n\n" + b"x" * 100_000)
        parser = FrameParser()
        error = next_frame(sock, parser)
        assert error.command == "ERROR" and "larger than 65536" in (error.get("message") or "")
        assert closed_by_peer(sock)
    assert proxy.wait_fact("client_protocol_error")


def test_connections_beyond_the_limit_are_refused_with_an_error(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy("  []\n", max_connections=2)
    first = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    second = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as sock:
        parser = FrameParser()
        error = next_frame(sock, parser)
        assert error.command == "ERROR" and error.get("message") == "too many connections"
    assert proxy.wait_fact("client_refused")
    first.close()
    second.close()


def test_the_proxy_wide_buffer_budget_refuses_what_exceeds_it(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    proxy = make_proxy("  []\n", max_buffered_bytes=1 << 20)
    socks: list[tuple[socket.socket, FrameParser]] = []
    try:
        for _ in range(2):
            sock = socket.create_connection((proxy.host, proxy.port), timeout=WAIT)
            socks.append((sock, raw_login(sock, legacy)))
        for sock, _ in socks:  # two unfinished frames of 700 KB: together over 1 MiB
            sock.sendall(b"SEND\ndestination:/queue/x\n\n" + b"x" * 700_000)
        (fact,) = proxy.wait_fact("client_protocol_error")
        assert "budget of 1048576 bytes" in fact["reason"]
        readable, _, _ = select.select([s for s, _ in socks], [], [], WAIT)
        (refused,) = readable  # the one that went over; the other is still being read
        parser = next(p for s, p in socks if s is refused)
        error = next_frame(refused, parser)
        assert error.command == "ERROR" and "budget" in (error.get("message") or "")
    finally:
        for sock, _ in socks:
            sock.close()


# -- 14.8: SIGTERM settles what was read --------------------------------------------------


def test_shutdown_under_load_settles_every_frame_it_read(
    make_proxy: ProxyFactory, legacy: BrokerInfo, relay: Relay
) -> None:
    dest = unique_queue("shutdown")
    proxy = make_proxy(cutover("moved", dest, "legacy"), amazonmq_port=relay.port)
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "warm")])
    relay.slow(0.3)
    receipts = [client.send(dest, f"m{i}") for i in range(20)]
    proxy.wait_fact("message_routed", 21)
    proxy.stop()
    routed = {f["trace_id"] for f in proxy.facts("message_routed")}
    settled = {
        f["trace_id"]
        for name in (
            "message_confirmed",
            "message_fell_back",
            "message_rejected",
            "message_unconfirmed",
        )
        for f in proxy.facts(name)
    }
    assert routed <= settled
    # on_failure: legacy, so what Amazon MQ had not confirmed went to legacy: never a
    # message_rejected (the defect: 22 of them, the producer told nothing)
    assert proxy.facts("message_rejected") == []
    confirmed = {f["trace_id"] for f in proxy.facts("message_confirmed", role="primary")}
    fell_back = {f["trace_id"] for f in proxy.facts("message_fell_back")}
    assert fell_back <= {f["trace_id"] for f in proxy.facts("message_confirmed", broker="legacy")}
    assert set(client.recorder.receipts) <= set(receipts) | {client.sent[0]}
    # a receipt only for a message its responsible broker confirmed
    assert len(set(client.recorder.receipts)) <= len(confirmed)


# -- 14.10: a producer's trace id is kept only when it can be trusted --------------------


def test_reused_and_oversized_trace_ids_are_replaced_and_recorded(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    dest = unique_queue("traces")
    proxy = make_proxy("  []\n")
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    given = ["same-id", "same-id", "x" * 9000]
    receipts = [
        client.send(dest, str(i), headers={"strangler-trace-id": t}) for i, t in enumerate(given)
    ]
    assert client.wait_receipts(receipts)
    client.close()
    routed = proxy.facts("message_routed", destination=dest)
    assert routed[0]["trace_id"] == "same-id" and "producer_trace_id" not in routed[0]
    assert routed[1]["trace_id"] != "same-id" and routed[1]["producer_trace_id"] == "same-id"
    assert routed[2]["producer_trace_id"] == "x" * 200
    on_legacy = [m.headers["strangler-trace-id"] for m in drain(legacy, dest)]
    assert on_legacy == [f["trace_id"] for f in routed]  # each message carries its own


def test_a_w3c_traceparent_is_recorded_beside_the_trace_id(
    make_proxy: ProxyFactory, legacy: BrokerInfo
) -> None:
    """#17's trace context through a running proxy: the producer's ``traceparent`` is in
    its message_routed fact (linking the migration to its distributed trace) and reaches
    the broker untouched."""
    dest = unique_queue("traceparent")
    proxy = make_proxy("  []\n")
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    try:
        assert client.wait_receipts([client.send(dest, "x", headers={"traceparent": parent})])
    finally:
        client.close()
    (routed,) = proxy.facts("message_routed", destination=dest)
    assert routed["traceparent"] == parent and routed["trace_id"] != parent
    (message,) = drain(legacy, dest)
    assert message.headers["traceparent"] == parent
    assert message.headers["strangler-trace-id"] == routed["trace_id"]
