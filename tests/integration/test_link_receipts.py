"""The Amazon MQ link's deferred receipts against the real TLS broker (ActiveMQ 5.17).

Batchable frames ask one receipt for many, so a frame the broker refuses may have been
written without one. ActiveMQ then answers with an ERROR that names no receipt and keeps
the connection open (checked by hand: a receipt-less SEND with ``transaction:nope``, then
a receipted SEND, gets ``ERROR`` without ``receipt-id`` and then the ``RECEIPT``). The
link must not take that later RECEIPT as confirming the refused frame. And batches caught
by a severed, cut or stalled connection (held, written, or awaiting their receipt) are
resent, fall back or fail with a fact: never lost, never silently doubled. (The fault
matrix's producers ask a receipt for each message; these cells are its receipt-less
counterpart.)
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter

import pytest

from strangler.facts import FactSink
from strangler.routes import parse_routes
from strangler.stomp import Limits
from strangler.upstream import BrokerHealth, BrokerLink

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .faults import Relay
from .harness import WAIT, connect, drain, routes_yaml, traces_of, unique_queue

pytestmark = pytest.mark.integration


def copy(queue: str, body: str, extra: str = "") -> bytes:
    return f"SEND\ndestination:{queue}\n{extra}\n{body}\0".encode()


def test_a_copy_refused_without_a_receipt_fails_alone_and_the_others_are_confirmed(
    legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    queue = unique_queue("link.refused")
    config = parse_routes(routes_yaml(legacy, amazonmq, "  []\n"), "r.yaml").brokers["amazonmq"]
    sink = FactSink(io.StringIO(), interval=0.01)
    outcomes: dict[str, tuple[str | None, bool]] = {}
    bodies = [f"m{n}" for n in range(6)]

    async def main() -> None:
        link = BrokerLink("amazonmq", config, "1.2", BrokerHealth(sink), limits=Limits())
        done = asyncio.Event()

        def outcome(token: str, failure: str | None, stored: bool) -> None:
            outcomes[token] = (failure, stored)
            if len(outcomes) == len(bodies) + 1:
                done.set()

        link.on_outcome = outcome
        # One write: m0..m2, the refused frame, m3..m5; only the last would ask a receipt.
        for body in bodies[:3]:
            link.submit(body, copy(queue, body), batch=True)
        link.submit("bad", copy(queue, "bad", "transaction:nope\n"), batch=True)
        for body in bodies[3:]:
            link.submit(body, copy(queue, body), batch=True)
        await asyncio.wait_for(done.wait(), 30)
        await link.close(graceful=True)

    asyncio.run(main())
    sink.close()
    failure, stored = outcomes.pop("bad")
    assert failure is not None and "Invalid transaction id" in failure and not stored
    assert outcomes == {body: (None, False) for body in bodies}
    # Those written before the ERROR were stored and then resent (the link could not tell
    # which frame was refused): each is on the broker, none is lost.
    on_broker = [m.body.decode() for m in drain(amazonmq, queue)]
    assert set(on_broker) == set(bodies) and "bad" not in on_broker


FAULTS = ("sever", "cut", "stall")


@pytest.mark.parametrize("mode", ["cutover", "mirror"])
@pytest.mark.parametrize("fault", FAULTS)
def test_receipt_less_messages_in_batches_survive_amazonmq_faults(
    fault: str,
    mode: str,
    make_proxy: ProxyFactory,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    relay: Relay,
) -> None:
    """A producer that asks no receipts: its cutover primaries or mirror copies go to
    Amazon MQ in batches, one receipt each. Halfway through the stream Amazon MQ's
    connection is severed (the next one works), cut (nothing connects until healed) or
    stalled (connections kept, nothing answered: the confirmation deadline settles it).
    Whatever the batches held, had written or awaited, nothing is lost, and each copy
    beyond the first, each fallback and each missing copy is named by a fact."""
    dest = unique_queue(f"batch.{fault}.{mode}")
    on_failure = ", on_failure: legacy" if mode == "cutover" else ""
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: {mode}{on_failure}}}\n",
        amazonmq_port=relay.port,
        confirm_timeout=1.0,
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "warm")])
    if mode == "mirror":  # legacy answered: the copy's link may still be connecting
        proxy.wait_fact("message_confirmed", role="mirror")
    bodies = [f"m{n}" for n in range(400)]
    for n, body in enumerate(bodies):
        client.send(dest, body, receipt=False)
        if n == 200:  # frames held, written or awaiting their batch's receipt
            {"sever": relay.sever, "cut": relay.cut, "stall": relay.stall}[fault]()
    # Answered once everything before it has an outcome (or, for a copy, once legacy
    # has it): the deadline settles a stall within a second.
    assert client.wait_receipts([client.send(dest, "end")])
    client.close()
    role = "primary" if mode == "cutover" else "mirror"
    failure = "message_fell_back" if mode == "cutover" else "message_mirror_failed"

    def settled() -> bool:  # every message's Amazon MQ part has its outcome
        outcomes: int = sum(
            name == failure
            or (name == "message_confirmed" and f.get("broker") == "amazonmq" and f["role"] == role)
            for name, f in proxy.emitted
        )
        return outcomes >= len(bodies) + 2

    with proxy.changed:
        assert proxy.changed.wait_for(settled, WAIT)
    relay.pass_through()
    on_amazonmq = drain(amazonmq, dest)
    on_legacy = drain(legacy, dest)
    facts = proxy.facts()

    def traces(event: str, **match: object) -> set[str]:
        return {
            f["trace_id"]
            for f in facts
            if f["event"] == event and all(f.get(k) == v for k, v in match.items())
        }

    resent, in_doubt = traces("message_resent"), traces("message_fell_back", possibly_stored=True)
    copies = Counter(traces_of(on_amazonmq))
    twice = {t for t, n in copies.items() if n > 1}
    if mode == "cutover":
        got = Counter(m.body.decode() for m in on_amazonmq + on_legacy)
        assert {b for b in bodies if got[b] == 0} == set()  # none lost
        assert set(traces_of(on_legacy)) <= traces("message_fell_back")  # by a fallback
        assert twice <= resent  # a second copy on Amazon MQ is named
        assert set(copies) & set(traces_of(on_legacy)) <= in_doubt  # on both: in doubt
    else:
        primaries = dict(
            zip((m.body.decode() for m in on_legacy), traces_of(on_legacy), strict=True)
        )
        assert set(bodies) <= set(primaries)  # legacy has every primary
        failed = traces("message_mirror_failed")
        assert {t for t in primaries.values() if t not in copies} <= failed  # explained
        assert twice <= resent | traces("message_mirror_failed", possibly_stored=True)
    if fault == "sever":
        assert relay.stats.severed >= 1
    else:  # the link gave up: its frames fell back or failed
        assert traces(failure)
