"""``strangler verify --proxy-facts``: the facts explain what the brokers' queues differ by."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ledger_facts import AMAZONMQ, LEGACY, Proxy

from strangler.drain.verify import compare
from strangler.ledger.copies import read_copies


def test_facts_explain_missing_and_duplicated_copies(tmp_path: Path) -> None:
    p = Proxy().start()
    s = p.connect()
    ok, failed, doubted, resent, lost, unexplained = (
        p.send(s, "mirror", rule="orders") for _ in range(6)
    )
    other = p.send(s, "mirror", rule="elsewhere")
    for trace in (ok, failed, doubted, resent, lost, unexplained, other):
        p.confirmed(s, trace, LEGACY)
    p.confirmed(s, ok, AMAZONMQ, "mirror")
    p.mirror_failed(s, failed)
    p.mirror_failed(s, doubted, possibly_stored=True)  # the broker had it after all
    p.resent(s, resent)
    p.confirmed(s, resent, AMAZONMQ, "mirror")
    p.confirmed(s, unexplained, AMAZONMQ, "mirror")
    p.confirmed(s, other, AMAZONMQ, "mirror")
    # The proxy is killed now: `lost` never got an outcome for its copy.
    facts = read_copies([str(p.write(tmp_path / "facts.jsonl"))], "orders")
    assert facts.routed == 6
    assert facts.mirror_failed == {failed, doubted}
    assert facts.lost == {lost}
    assert facts.in_doubt == {doubted, resent}

    legacy = Counter([ok, failed, doubted, resent, lost, unexplained])
    amazonmq = Counter([ok, doubted, doubted, resent, resent, unexplained, unexplained])
    result = compare(legacy, amazonmq, legacy, facts)
    assert result.missing == sorted([failed, lost])
    assert result.missing_failed == [failed] and result.missing_lost == [lost]
    assert sorted(result.duplicated_in_doubt) == sorted([doubted, resent])
    assert result.unexplained_duplicates == [unexplained]
    assert not result.matches()

    # Only explained duplicates: the queues match (the facts said "maybe twice").
    clean = compare(Counter([ok, resent]), Counter([ok, resent, resent]), Counter(), facts)
    assert clean.duplicated == {resent: 1} and clean.matches()
    assert not compare(Counter([ok, resent]), Counter([ok, resent, resent]), Counter()).matches()
