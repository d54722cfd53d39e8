"""The Amazon MQ link's deferred receipts against the real TLS broker (ActiveMQ 5.17).

Batchable frames ask one receipt for many, so a frame the broker refuses may have been
written without one. ActiveMQ then answers with an ERROR that names no receipt and keeps
the connection open (checked by hand: a receipt-less SEND with ``transaction:nope``, then
a receipted SEND, gets ``ERROR`` without ``receipt-id`` and then the ``RECEIPT``). The
link must not take that later RECEIPT as confirming the refused frame.
"""

from __future__ import annotations

import asyncio
import io

import pytest

from strangler.facts import FactSink
from strangler.routes import parse_routes
from strangler.stomp import Limits
from strangler.upstream import BrokerHealth, BrokerLink

from .brokers import BrokerInfo
from .harness import drain, routes_yaml, unique_queue

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
