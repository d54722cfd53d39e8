"""Transparency: a client reads through the proxy, in every mode, what it reads directly.

Each case (``conversations.CASES``) runs once against legacy directly and once through
a proxy whose routes put the conversation's destinations (``/queue/tx.``,
``/topic/tx.``) in the mode under test; ``transparency.differences`` says what differs.
A known difference stays in the matrix as a strict xfail naming its item in issue #20:
once the proxy is fixed, the marker must go.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .brokers import BrokerInfo
from .conversations import CASES, Bed, Case, handshake, send, subscribe
from .differences_found import known
from .harness import RunningProxy
from .modes import ALL_MODES, ProxyPool, SideBySide, selected_params
from .pieces import WriteLog
from .transparency import differences, pieces

pytestmark = pytest.mark.integration

# Strict xfails, as (modes, case ids, issue #20 items): none is open since #20.6-#20.10
# were fixed (main at 95d6fe9). A newly found difference goes here until it is fixed.
_FOUND: list[tuple[tuple[str, ...], list[str], tuple[int, ...]]] = []
# (mode, case id) -> the issue #20 items that explain the difference (differences_found)
KNOWN: dict[tuple[str, str], tuple[int, ...]] = {
    (mode, case): items for modes, cases, items in _FOUND for mode in modes for case in cases
}


@pytest.fixture(scope="module")
def pool(
    standard_brokers: tuple[BrokerInfo, BrokerInfo], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyPool]:
    legacy, amazonmq = standard_brokers
    running = ProxyPool(legacy, amazonmq, tmp_path_factory.mktemp("transparency"))
    yield running
    running.stop()


def run(
    case: Case,
    target_port: int,
    legacy: BrokerInfo,
    proxy: RunningProxy | None = None,
    mode: str = "legacy",
    writes: WriteLog | None = None,
) -> Bed:
    bed = Bed(target_port, legacy.port, proxy, mode, writes)
    try:
        case.conversation(bed, case.variant)
    finally:
        bed.close()
    return bed


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest,
    pool: ProxyPool,
    standard_brokers: tuple[BrokerInfo, BrokerInfo],
) -> Iterator[SideBySide[Bed]]:
    """The runs of the cases this session selected (``-k`` included), all started at once:
    the direct run once per case (key: case id), the proxied one per (mode, case id)."""
    legacy = standard_brokers[0]
    started: SideBySide[Bed] = SideBySide()
    for mode, case in selected_params(request.session.items, "mode", "case"):
        if not isinstance(case, Case):
            continue
        started.start(case.id, run, case, legacy.port, legacy)
        proxy = pool.get(mode, case.settings)  # started here, on the test's thread
        started.start(
            (mode, case.id), run, case, proxy.port, legacy, proxy, mode, pool.writes[proxy.port]
        )
    yield started
    started.close()


def _params() -> list[object]:
    params: list[object] = []
    for mode in ALL_MODES:
        for case in CASES:
            if mode not in case.modes:
                continue
            marks = known(KNOWN.get((mode, case.id), ()))
            params.append(pytest.param(mode, case, id=f"{mode}-{case.id}", marks=marks))
    return params


@pytest.mark.parametrize(("mode", "case"), _params())
def test_client_reads_through_the_proxy_what_it_reads_directly(
    mode: str, case: Case, runs: SideBySide[Bed]
) -> None:
    direct, proxied = runs.result(case.id), runs.result((mode, case.id))
    found = differences(direct, proxied, split=mode == "split")
    found += pieces(proxied, login=case.conversation is handshake)
    assert not found, "\n".join(found)


# -- a client that goes without DISCONNECT -------------------------------------------


def dispatch_after_drop(
    target_port: int,
    legacy: BrokerInfo,
    producer_via: str,
    proxy: RunningProxy | None = None,
    mode: str = "legacy",
) -> float:
    """Two consumers share a queue; one drops its connection (no DISCONNECT); six
    messages are then sent, on legacy or through the target. Seconds from the broker's
    last receipt until the other consumer has all six: a message the broker still gave
    the dropped one comes to it only once the broker noticed the drop (``redelivered``)."""
    bed = Bed(target_port, legacy.port, proxy, mode)
    try:
        q = bed.dest("q")
        gone = bed.open("gone")
        subscribe(gone, q, "g", "client-individual", "sub")
        live = bed.open("live")
        subscribe(live, q, "l", "auto", "sub")
        bed.amazonmq_side(q, 2)  # both consumers' Amazon MQ side, in split and cutover
        producer = bed.open("p", via_legacy=producer_via == "legacy")
        gone.drop()
        for i in range(6):
            send(producer, q, f"p:{i}", receipt=f"p{i}")
        for i in range(6):
            assert producer.receipt(f"p{i}")
        stored = producer.reads[-1].at
        messages = live.messages(6)
        assert len(messages) == 6, "the live consumer did not get every message"
        last = max(r.at for r in live.reads if any(t in messages for t in r.tokens))
        return max(0.0, last - stored)
    finally:
        bed.close()


# ActiveMQ drops a consumer whose connection closed within milliseconds; through the
# proxy it must not take longer than that by more than scheduling noise.
_DROP_SLACK = 0.25


@pytest.mark.parametrize("producer_via", ["legacy", "proxy"])
@pytest.mark.parametrize("mode", ALL_MODES)
def test_a_dropped_consumer_stops_taking_messages_as_soon_as_directly(
    mode: str, producer_via: str, pool: ProxyPool, legacy: BrokerInfo
) -> None:
    """Issue #20, item 2: legacy kept a dropped client's subscription for a second. The
    producer on legacy puts the messages where a consumer's legacy side reads them; the
    one through the proxy, where the mode sends them (Amazon MQ in split and cutover)."""
    direct_delay = dispatch_after_drop(legacy.port, legacy, "legacy")
    proxy = pool.get(mode, ())
    delay = dispatch_after_drop(proxy.port, legacy, producer_via, proxy, mode)
    assert delay <= direct_delay + _DROP_SLACK, (
        f"the last message reached the live consumer {delay * 1000:.0f} ms after the broker "
        f"confirmed it (the other consumer had dropped its connection); directly "
        f"{direct_delay * 1000:.0f} ms"
    )
