"""Transactions across two brokers, without sockets: Amazon MQ commits first, legacy after;
a lost Amazon MQ part falls back into legacy's side or is rejected; facts for each case."""

from __future__ import annotations

import pytest
from playbook import Play, frames, only, submitted, to_client, to_legacy

from strangler.proxy.core.commands import CloseClient, PauseClient, ResumeClient

ROUTES = """\
    - {name: moved, match: {prefix: /queue/cut.}, mode: cutover, on_failure: legacy}
    - {name: strict, match: {prefix: /queue/strict.}, mode: cutover, on_failure: reject}
    - {name: copied, match: {prefix: /queue/mirror.}, mode: mirror}
    - {name: all-in, match: {prefix: /queue/split.}, mode: split, weight: 100, on_failure: legacy}
    """
MOVED = ["/queue/cut.a", "/queue/split.a"]  # a cutover, and a split that chose Amazon MQ


def begun(destination: str, receipt: bool = True) -> tuple[Play, list[str]]:
    """A transaction ``t`` with one SEND to ``destination``; the Amazon MQ tokens."""
    play = Play(ROUTES)
    play.connect()
    extra = "receipt:r1\n" if receipt else ""
    out = play.client(
        f"BEGIN\ntransaction:t\n\n\0SEND\ndestination:{destination}\ntransaction:t\n{extra}\nx\0"
    )
    return play, [s.token for s in submitted(out)]


@pytest.mark.parametrize("destination", MOVED)
def test_a_moved_send_begins_on_amazonmq_and_commits_there_first(destination: str) -> None:
    play, (begin, send) = begun(destination)
    commands = [frames(s.data)[0].command for s in submitted(play.log)]
    assert commands == ["BEGIN", "SEND"]
    assert all(not s.resendable for s in submitted(play.log))  # never resent
    play.outcome(begin)
    receipted = play.outcome(send)
    assert b"receipt-id:r1" in to_client(receipted)  # Amazon MQ has it (uncommitted)
    commit = play.client("COMMIT\ntransaction:t\n\n\0")
    (control,) = submitted(commit)
    assert frames(control.data)[0].command == "COMMIT" and PauseClient() in commit
    assert to_legacy(commit) == b""  # legacy's COMMIT waits for Amazon MQ's
    done = play.outcome(control.token)
    (legacy_commit,) = frames(to_legacy(done))
    assert legacy_commit.command == "COMMIT" and ResumeClient() in done


def test_a_legacy_only_transaction_is_legacys_alone() -> None:
    play, tokens = begun("/queue/plain")
    assert tokens == []  # Amazon MQ never hears of it
    out = play.client("COMMIT\ntransaction:t\n\n\0")
    assert [f.command for f in frames(to_legacy(play.log))][1:] == ["BEGIN", "SEND", "COMMIT"]
    assert submitted(out) == [] and PauseClient() not in out
    answer = play.legacy("RECEIPT\nreceipt-id:r1\n\n\0\n")
    assert b"receipt-id:r1" in to_client(answer)


def test_a_mirror_only_transaction_commits_legacy_without_waiting() -> None:
    play, (_begin, _copy) = begun("/queue/mirror.a")
    out = play.client("COMMIT\ntransaction:t\n\n\0")
    assert [f.command for f in frames(to_legacy(out))] == ["COMMIT"]
    assert PauseClient() not in out
    (control,) = submitted(out)
    play.outcome(control.token, "refused", True)
    assert play.facts.named("message_mirror_failed")


@pytest.mark.parametrize("destination", MOVED)
@pytest.mark.parametrize("receipted", [False, True])
def test_amazonmq_lost_before_commit_moves_the_part_into_legacys_transaction(
    destination: str, receipted: bool
) -> None:
    play, (begin, send) = begun(destination)
    play.outcome(begin)
    if receipted:
        play.outcome(send)
    else:
        play.outcome(send, "connection lost", True)
    play.record(play.core.amazonmq_lost("connection lost"))
    moved = [f for f in frames(to_legacy(play.log)) if f.command == "SEND"]
    assert moved and moved[-1].get("transaction") == "t"
    # Already receipted: legacy must not answer that receipt a second time.
    assert (moved[-1].get("receipt") is None) is receipted
    (fact,) = play.facts.named("message_fell_back")
    assert fact["possibly_stored"] is False  # nothing is stored before COMMIT
    commit = play.client("COMMIT\ntransaction:t\n\n\0")
    assert [f.command for f in frames(to_legacy(commit))] == ["COMMIT"]


def test_an_unanswered_commit_falls_back_marked_possibly_stored() -> None:
    play, (begin, send) = begun("/queue/cut.a")
    play.outcome(begin)
    play.outcome(send)
    (control,) = submitted(play.client("COMMIT\ntransaction:t\n\n\0"))
    out = play.outcome(control.token, "no receipt", True)
    sent = frames(to_legacy(out))
    assert [f.command for f in sent] == ["SEND", "COMMIT"]  # the part, then the commit
    assert play.facts.named("message_fell_back")[0]["possibly_stored"] is True


def test_a_reject_route_errors_the_transaction_and_legacy_never_commits() -> None:
    play, (_begin, send) = begun("/queue/strict.a")
    out = play.outcome(send, "refused", False)
    (error,) = frames(to_client(out))
    assert error.command == "ERROR" and error.get("receipt-id") == "r1"
    assert only(out, CloseClient).after_error
    assert play.facts.named("message_rejected", transaction="t")
    assert b"COMMIT" not in to_legacy(play.client("COMMIT\ntransaction:t\n\n\0"))


def test_abort_reaches_both_brokers_and_is_a_fact() -> None:
    play, (_begin, _send) = begun("/queue/cut.a")
    out = play.client("ABORT\ntransaction:t\n\n\0")
    assert [f.command for f in frames(to_legacy(out))] == ["ABORT"]
    assert [frames(s.data)[0].command for s in submitted(out)] == ["ABORT"]
    assert play.facts.named("transaction_aborted", transaction="t")


def test_legacy_failing_after_amazonmq_committed_is_a_partial_commit() -> None:
    play, (begin, send) = begun("/queue/cut.a")
    play.outcome(begin)
    play.outcome(send)
    (control,) = submitted(play.client("COMMIT\ntransaction:t\n\n\0"))
    play.outcome(control.token)
    play.record(play.core.legacy_closed("reset"))
    (fact,) = play.facts.named("transaction_partial_commit")
    assert fact["committed"] == ("amazonmq",) and fact["failed"] == ("legacy",)
