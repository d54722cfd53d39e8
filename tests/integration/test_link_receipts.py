"""The Amazon MQ link's deferred receipts against the real TLS broker (ActiveMQ 5.17).

Batchable frames ask one receipt for many, so a frame the broker refuses may have been
written without one. ActiveMQ then answers with an ERROR that names no receipt and keeps
the connection open (checked by hand: a receipt-less SEND with ``transaction:nope``, then
a receipted SEND, gets ``ERROR`` without ``receipt-id`` and then the ``RECEIPT``). The
link must not take that later RECEIPT as confirming the refused frame. And a batch lost
with its connection (held, written, or awaiting its receipt) is resent or falls back,
never lost.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Iterator

import pytest

from strangler.facts import FactSink
from strangler.routes import parse_routes
from strangler.stomp import Limits
from strangler.upstream import BrokerHealth, BrokerLink

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .faults import Relay
from .harness import connect, drain, routes_yaml, traces_of, unique_queue

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


@pytest.fixture
def relay(amazonmq: BrokerInfo) -> Iterator[Relay]:
    """Amazon MQ behind a relay the test can sever."""
    with Relay(amazonmq.port) as started:
        yield started


def test_receipt_less_primaries_in_batches_survive_a_lost_connection(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, relay: Relay
) -> None:
    """A cutover producer that asks no receipts: its messages go to Amazon MQ in batches
    with one receipt each. The connection is severed in the middle of the stream; every
    message still ends on Amazon MQ (resent, a second copy named by ``message_resent``)
    or on legacy with ``message_fell_back``: none is lost."""
    dest = unique_queue("batch.sever")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: legacy}}\n",
        amazonmq_port=relay.port,
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "warm")])  # the link is up
    bodies = [f"m{n}" for n in range(400)]
    for n, body in enumerate(bodies):
        client.send(dest, body, receipt=False)
        if n == 200:
            relay.sever()  # frames held, written or awaiting their batch's receipt
    assert client.wait_receipts([client.send(dest, "end")])  # confirms all before it
    client.close()
    on_amazonmq = drain(amazonmq, dest)
    on_legacy = drain(legacy, dest)
    assert relay.stats.severed >= 1
    facts = proxy.facts()
    resent = {f["trace_id"] for f in facts if f["event"] == "message_resent"}
    fell_back = {f["trace_id"] for f in facts if f["event"] == "message_fell_back"}
    copies = Counter(traces_of(on_amazonmq))
    got = Counter(m.body.decode() for m in on_amazonmq + on_legacy)
    assert {b for b in bodies if got[b] == 0} == set()  # none lost
    assert {t for t, n in copies.items() if n > 1} <= resent  # a second copy is named
    assert set(traces_of(on_legacy)) <= fell_back  # legacy only by a fallback
    confirmed = proxy.facts("message_confirmed", broker="amazonmq", role="primary")
    assert len(confirmed) + len(fell_back) >= len(bodies) + 2  # each has its outcome
