"""Each route mode against the two real brokers: where every message ends up."""

from __future__ import annotations

from typing import Any

import pytest

from .brokers import BrokerInfo, free_port
from .conftest import ProxyFactory
from .harness import RunningProxy, connect, drain, routed_traces, traces_of, unique_queue

pytestmark = pytest.mark.integration

N = 50


def produce(
    proxy: RunningProxy, legacy: BrokerInfo, destination: str, n: int = N, **send: Any
) -> list[str]:
    """Send ``n`` messages through the proxy, each with a receipt unless told otherwise."""
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    try:
        receipts = [client.send(destination, f"m{i}", **send) for i in range(n)]
        if send.get("receipt", True):
            assert client.wait_receipts(receipts), "not every receipt arrived"
        else:  # one receipted frame behind them: legacy has processed all before it
            assert client.wait_receipts([client.send("/queue/strangler.fence", "fence")])
        assert not client.recorder.errors
    finally:
        client.close()
    return receipts


def test_legacy_mode_passes_every_message_to_legacy_only(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("legacy")
    proxy = make_proxy(f"  - {{name: pinned, match: {{exact: '{dest}'}}, mode: legacy}}\n")
    produce(proxy, legacy, dest)

    on_legacy = drain(legacy, dest)
    assert [m.body for m in on_legacy] == [f"m{i}".encode() for i in range(N)]
    assert drain(amazonmq, dest) == []
    routed = routed_traces(proxy, dest)
    assert set(traces_of(on_legacy)) == set(routed)
    assert all(f["rule"] == "pinned" and f["targets"] == ["legacy"] for f in routed.values())
    confirmed = proxy.wait_fact("message_confirmed", N, broker="legacy")
    assert {f["trace_id"] for f in confirmed} == set(routed)


def test_unmatched_destination_goes_to_legacy_under_the_default_rule(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("unmatched")
    proxy = make_proxy(
        "  - {name: other, match: {prefix: /queue/elsewhere.}, mode: cutover, on_failure: reject}\n"
    )
    produce(proxy, legacy, dest, n=5)
    assert len(drain(legacy, dest)) == 5
    assert drain(amazonmq, dest) == []
    assert {f["rule"] for f in routed_traces(proxy, dest).values()} == {"default"}


def test_mirror_puts_each_message_on_both_brokers_and_receipts_come_from_legacy(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("mirror")
    proxy = make_proxy(f"  - {{name: mirrored, match: {{exact: '{dest}'}}, mode: mirror}}\n")
    produce(proxy, legacy, dest)
    # The copies are not awaited by the client; their confirmations are facts.
    assert len(proxy.wait_fact("message_confirmed", N, broker="amazonmq", role="mirror")) == N

    on_legacy, on_amazonmq = drain(legacy, dest), drain(amazonmq, dest)
    assert traces_of(on_legacy) == traces_of(on_amazonmq)
    assert len(set(traces_of(on_legacy))) == N
    assert [m.body for m in on_amazonmq] == [f"m{i}".encode() for i in range(N)]
    assert set(traces_of(on_legacy)) == set(routed_traces(proxy, dest))
    assert not proxy.facts("message_mirror_failed")


def test_cutover_sends_only_to_amazonmq_with_its_receipts(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("cutover")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject}}\n"
    )
    produce(proxy, legacy, dest)
    # A receipt means Amazon MQ has it: drain right away, no waiting on facts.
    on_amazonmq = drain(amazonmq, dest)
    assert [m.body for m in on_amazonmq] == [f"m{i}".encode() for i in range(N)]
    assert drain(legacy, dest) == []
    confirmed = proxy.facts("message_confirmed", broker="amazonmq", role="primary")
    assert {f["trace_id"] for f in confirmed} == set(traces_of(on_amazonmq))


def test_cutover_renames_to_target_destination_on_amazonmq(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest, renamed = unique_queue("old"), unique_queue("new")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject,"
        f" target_destination: '{renamed}'}}\n"
    )
    produce(proxy, legacy, dest, n=5)
    assert len(drain(amazonmq, renamed)) == 5
    assert drain(amazonmq, dest) == [] and drain(legacy, dest) == []


def test_split_is_sticky_per_key_and_near_its_weight(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("split")
    proxy = make_proxy(
        f"  - {{name: halves, match: {{exact: '{dest}'}}, mode: split, weight: 30,"
        " sticky_header: customer-id, on_failure: reject}\n"
    )
    keys = [f"group-{k}" for k in range(60)]
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    receipts = []
    for i in range(600):
        receipts.append(client.send(dest, f"m{i}", headers={"customer-id": keys[i % 60]}))
    assert client.wait_receipts(receipts)
    client.close()

    on_legacy, on_amazonmq = drain(legacy, dest), drain(amazonmq, dest)
    assert len(on_legacy) + len(on_amazonmq) == 600
    legacy_keys = {m.headers["customer-id"] for m in on_legacy}
    amazonmq_keys = {m.headers["customer-id"] for m in on_amazonmq}
    assert legacy_keys.isdisjoint(amazonmq_keys), "a key landed on both brokers"
    assert legacy_keys | amazonmq_keys == set(keys)
    # 60 keys at 30%: binomial sd is ~3.5 keys; allow 3 sd.
    assert 18 - 11 <= len(amazonmq_keys) <= 18 + 11
    routed = routed_traces(proxy, dest)
    for message in on_amazonmq:
        assert routed[message.headers["strangler-trace-id"]]["targets"] == ["amazonmq"]


def test_split_without_sticky_key_spreads_messages_by_weight(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("split-share")
    proxy = make_proxy(
        f"  - {{name: tenth, match: {{exact: '{dest}'}}, mode: split, weight: 10,"
        " on_failure: legacy}\n"
    )
    produce(proxy, legacy, dest, n=1000, receipt=False)
    # No client receipts: the proxy's own Amazon MQ confirmations are facts.
    routed = routed_traces(proxy, dest)
    moved = [t for t, f in routed.items() if f["targets"] == ["amazonmq"]]
    assert len(proxy.wait_fact("message_confirmed", len(moved), broker="amazonmq")) == len(moved)
    on_amazonmq = drain(amazonmq, dest)
    on_legacy = drain(legacy, dest)
    assert len(on_legacy) + len(on_amazonmq) == 1000
    # Binomial(1000, 0.1): sd ~9.5; allow 4 sd.
    assert 100 - 38 <= len(on_amazonmq) <= 100 + 38


def test_cutover_falls_back_to_legacy_when_amazonmq_is_down(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("fallback")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: legacy}}\n",
        amazonmq_port=free_port(),  # nothing listens: Amazon MQ is stopped
    )
    produce(proxy, legacy, dest, n=20)
    on_legacy = drain(legacy, dest)
    assert [m.body for m in on_legacy] == [f"m{i}".encode() for i in range(20)]
    fell_back = proxy.facts("message_fell_back")
    assert {f["trace_id"] for f in fell_back} == set(traces_of(on_legacy))
    assert proxy.facts("broker_unavailable", broker="amazonmq")
    assert not proxy.facts("message_confirmed", broker="amazonmq")


def test_cutover_with_reject_answers_error_and_no_receipt_when_amazonmq_is_down(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("reject")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject}}\n",
        amazonmq_port=free_port(),
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    receipt = client.send(dest, "refused")
    assert client.recorder.wait(lambda: client.recorder.errors)
    error = client.recorder.errors[0]
    assert "amazonmq unavailable" in error.headers["message"]
    assert error.headers.get("receipt-id") == receipt
    assert client.recorder.wait(lambda: client.recorder.disconnected.is_set())
    assert receipt not in client.recorder.receipts
    assert drain(legacy, dest) == [] and drain(amazonmq, dest) == []
    rejected = proxy.wait_fact("message_rejected")
    assert len(rejected) == 1


def test_mirror_with_amazonmq_down_leaves_the_client_unaffected(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("mirror-down")
    proxy = make_proxy(
        f"  - {{name: mirrored, match: {{exact: '{dest}'}}, mode: mirror}}\n",
        amazonmq_port=free_port(),
    )
    produce(proxy, legacy, dest, n=10)
    assert len(drain(legacy, dest)) == 10
    assert len(proxy.wait_fact("message_mirror_failed", 10)) == 10


def test_dry_run_records_decisions_but_sends_everything_to_legacy(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("dry")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject}}\n",
        dry_run=True,
    )
    produce(proxy, legacy, dest, n=10)
    assert len(drain(legacy, dest)) == 10
    assert drain(amazonmq, dest) == []
    routed = list(routed_traces(proxy, dest).values())
    assert all(f["dry_run"] and f["would_target"] == ["amazonmq"] for f in routed)
    assert all(f["targets"] == ["legacy"] for f in routed)


def test_mirror_copies_of_a_burst_wait_for_room_instead_of_being_dropped(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    """A producer without receipts outruns Amazon MQ's receipts; the copies beyond
    max_inflight wait in the session's mirror backlog and all arrive, in order."""
    dest = unique_queue("mirror.burst")
    n = 2000
    proxy = make_proxy(
        f"  - {{name: copy, match: {{exact: '{dest}'}}, mode: mirror}}\n", max_inflight=10
    )
    produce(proxy, legacy, dest, n=n, receipt=False)
    assert len(proxy.wait_fact("message_confirmed", n, broker="amazonmq", role="mirror")) == n
    on_legacy, on_amazonmq = drain(legacy, dest), drain(amazonmq, dest)
    assert traces_of(on_amazonmq) == traces_of(on_legacy)
    assert len(on_amazonmq) == n
    assert not proxy.facts("message_mirror_failed")


def test_mirror_backlog_overflow_drops_copies_with_a_fact_each(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("mirror.overflow")
    n = 500
    proxy = make_proxy(
        f"  - {{name: copy, match: {{exact: '{dest}'}}, mode: mirror}}\n",
        max_inflight=2,
        mirror_backlog_bytes=8192,
    )
    produce(proxy, legacy, dest, n=n, receipt=False)
    assert len(drain(legacy, dest)) == n  # the primary is never affected
    proxy.sink.flush()

    def settled() -> int:
        names = [name for name, f in proxy.emitted if f.get("rule") == "copy"]
        return names.count("message_mirror_failed") + names.count("message_confirmed")

    with proxy.changed:
        assert proxy.changed.wait_for(lambda: settled() >= n, 20.0)
    failed = proxy.facts("message_mirror_failed", rule="copy")
    confirmed = proxy.facts("message_confirmed", broker="amazonmq", rule="copy")
    assert failed and {f["reason"] for f in failed} == {"mirror backlog full"}
    assert len(failed) + len(confirmed) == n  # each copy: on Amazon MQ, or a fact saying not
    on_amazonmq = set(traces_of(drain(amazonmq, dest)))
    assert on_amazonmq == {f["trace_id"] for f in confirmed}
