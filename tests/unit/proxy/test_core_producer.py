"""The receipt promise, row by row, without sockets: each mode x receipt or not x Amazon MQ
confirming, failing, or losing the connection (after the frame was written or not)."""

from __future__ import annotations

from typing import Any

import pytest
from playbook import Play, frames, of, only, submitted, to_client, to_legacy

from strangler.proxy.core.commands import (
    CloseClient,
    DropAmazonMQ,
    PauseClient,
    ResumeClient,
    StartTimer,
    ToLegacy,
)

ROUTES = """\
    - {name: copied, match: {prefix: /queue/mirror.}, mode: mirror}
    - {name: moved, match: {prefix: /queue/cut.}, mode: cutover, on_failure: legacy}
    - {name: strict, match: {prefix: /queue/strict.}, mode: cutover, on_failure: reject}
    - {name: all-in, match: {prefix: /queue/split.}, mode: split, weight: 100, on_failure: legacy}
    - {name: none-in, match: {prefix: /queue/kept.}, mode: split, weight: 0, on_failure: legacy}
    - {name: split-strict, match: {prefix: /queue/sstrict.}, mode: split, weight: 100,
       on_failure: reject}
    """


def send(play: Play, destination: str, receipt: str | None = "r1", body: str = "hi") -> list:  # type: ignore[type-arg]
    extra = f"receipt:{receipt}\n" if receipt is not None else ""
    return play.client(f"SEND\ndestination:{destination}\n{extra}\n{body}\0")


def connected(**settings: Any) -> Play:
    play = Play(ROUTES, **settings)
    play.connect()
    return play


@pytest.mark.parametrize("destination", ["/queue/plain", "/queue/kept.a"])
@pytest.mark.parametrize("receipt", ["r1", None])
def test_legacy_bound_sends_go_to_legacy_as_sent_and_legacy_answers(
    destination: str, receipt: str | None
) -> None:
    play = connected()
    out = send(play, destination, receipt)
    assert submitted(out) == []
    (frame,) = frames(to_legacy(out))
    assert (frame.command, frame.get("destination"), frame.body) == ("SEND", destination, b"hi")
    trace = frame.get("strangler-trace-id")
    assert trace and play.facts.named("message_routed", trace_id=trace, targets=("legacy",))
    assert to_client(out) == b""
    if receipt is not None:
        answer = play.legacy(f"RECEIPT\nreceipt-id:{receipt}\n\n\0\n")
        assert to_client(answer) == f"RECEIPT\nreceipt-id:{receipt}\n\n\0\n".encode()
        assert play.facts.named("message_confirmed", trace_id=trace, broker="legacy")


@pytest.mark.parametrize("failure", [None, "refused", "lost"])
def test_mirror_receipt_is_legacys_and_the_copy_only_a_fact(failure: str | None) -> None:
    play = connected()
    out = send(play, "/queue/mirror.a")
    (copy,) = submitted(out)
    (legacy,) = frames(to_legacy(out))
    trace = legacy.get("strangler-trace-id")
    (on_amazonmq,) = frames(copy.data)
    assert on_amazonmq.get("strangler-trace-id") == trace and copy.resendable
    answer = play.legacy("RECEIPT\nreceipt-id:r1\n\n\0\n")
    assert b"receipt-id:r1" in to_client(answer)  # never waits for the copy
    after = play.outcome(copy.token, None if failure is None else failure, failure == "lost")
    assert to_client(after) == b""
    if failure is None:
        assert play.facts.named("message_confirmed", trace_id=trace, role="mirror")
    else:
        (failed,) = play.facts.named("message_mirror_failed", trace_id=trace)
        assert failed["possibly_stored"] is (failure == "lost")


@pytest.mark.parametrize("destination", ["/queue/cut.a", "/queue/strict.a", "/queue/split.a"])
@pytest.mark.parametrize("receipt", ["r1", None])
def test_amazonmq_primary_confirmed_answers_the_clients_receipt(
    destination: str, receipt: str | None
) -> None:
    play = connected()
    out = send(play, destination, receipt)
    assert to_legacy(out) == b""  # nothing on legacy
    (sent,) = submitted(out)
    assert b"receipt:" not in sent.data.split(b"\n\n")[0] or receipt is not None
    assert to_client(out) == b""  # not before Amazon MQ confirmed
    answer = play.outcome(sent.token)
    if receipt is None:
        assert to_client(answer) == b""
    else:
        assert to_client(answer) == b"RECEIPT\nreceipt-id:r1\n\n\0\n"  # ended like legacy's
    assert play.facts.named("message_confirmed", broker="amazonmq", role="primary")


@pytest.mark.parametrize("destination", ["/queue/cut.a", "/queue/split.a"])
@pytest.mark.parametrize("receipt", ["r1", None])
@pytest.mark.parametrize("stored", [False, True])
def test_on_failure_legacy_falls_back_with_the_same_bytes_and_legacy_answers(
    destination: str, receipt: str | None, stored: bool
) -> None:
    play = connected()
    out = send(play, destination, receipt)
    (sent,) = submitted(out)
    fell = play.outcome(sent.token, "connection lost", stored)
    (frame,) = frames(to_legacy(fell))
    assert frame.body == b"hi" and frame.get("receipt") == receipt
    (fact,) = play.facts.named("message_fell_back")
    assert (fact["possibly_stored"], fact["receipt"]) == (stored, receipt is not None)
    assert to_client(fell) == b""  # the receipt is legacy's to give
    if receipt is not None:
        answer = play.legacy("RECEIPT\nreceipt-id:r1\n\n\0\n")
        assert b"receipt-id:r1" in to_client(answer)
        assert play.facts.named("message_confirmed", broker="legacy")


@pytest.mark.parametrize("destination", ["/queue/strict.a", "/queue/sstrict.a"])
@pytest.mark.parametrize("receipt", ["r1", None])
@pytest.mark.parametrize("stored", [False, True])
def test_on_failure_reject_errors_naming_the_receipt_and_ends_the_session(
    destination: str, receipt: str | None, stored: bool
) -> None:
    play = connected()
    (sent,) = submitted(send(play, destination, receipt))
    out = play.outcome(sent.token, "refused", stored)
    (error,) = frames(to_client(out))  # without a receipt too: the producer must know
    assert error.command == "ERROR" and error.get("receipt-id") == receipt
    assert "amazonmq unavailable" in (error.get("message") or "")
    assert only(out, CloseClient).after_error
    assert to_legacy(out) == b""
    (fact,) = play.facts.named("message_rejected")
    assert fact["possibly_stored"] is stored


def test_a_hung_amazonmq_is_dropped_after_the_confirm_deadline_and_on_failure_applies() -> None:
    play = connected(confirm_timeout=2.0)
    out = send(play, "/queue/cut.a")
    (sent,) = submitted(out)
    assert StartTimer("confirm", 2.0) in out
    play.now += 1.0
    assert of(play.timer("confirm"), DropAmazonMQ) == []  # not yet: re-armed
    play.now += 1.5
    (drop,) = of(play.timer("confirm"), DropAmazonMQ)
    assert "within 2 seconds" in drop.reason
    fell = play.outcome(sent.token, drop.reason, True)  # the link fails what it had written
    assert frames(to_legacy(fell))[0].body == b"hi"
    assert play.facts.named("message_fell_back")[0]["possibly_stored"] is True


def test_a_full_window_holds_the_producer_until_amazonmq_answers() -> None:
    play = connected(max_inflight=2)
    out = play.client(
        "SEND\ndestination:/queue/cut.a\n\n1\0SEND\ndestination:/queue/cut.a\n\n2\0"
        "SEND\ndestination:/queue/cut.a\n\n3\0"
    )
    first, second = submitted(out)
    assert PauseClient() in out
    freed = play.outcome(first.token)
    (third,) = submitted(freed)
    assert frames(third.data)[0].body == b"3"
    assert ResumeClient() not in freed  # full again: still held
    assert ResumeClient() in play.outcome(second.token)


def test_whitespace_and_composite_forms_take_the_route_of_what_the_broker_stores() -> None:
    play = connected()
    (sent,) = submitted(send(play, " /queue/strict.a\t", receipt=None))
    (frame,) = frames(sent.data)
    assert frame.get("destination") == "/queue/strict.a"  # the name put first for Amazon MQ
    assert play.facts.named("message_routed")[0]["destinations"] == ("/queue/strict.a",)
    out = send(play, "/queue/plain,/queue/strict.b")
    (error,) = frames(to_client(out))
    assert error.command == "ERROR" and "different brokers" in (error.get("message") or "")
    assert to_legacy(out) == b"" and submitted(out) == []


def test_a_1_0_producer_is_read_as_the_broker_reads_it_padding_trimmed() -> None:
    play = Play(ROUTES)
    play.connect(version="1.0")
    out = play.client("SEND\ndestination: /queue/strict.a \nreceipt: r9 \n\nx\0")
    (sent,) = submitted(out)
    assert to_client(play.outcome(sent.token)) == b"RECEIPT\nreceipt-id:r9\n\n\0\n"


def test_a_producers_trace_id_is_kept_when_well_formed_and_new_else_replaced() -> None:
    play = connected()
    play.client("SEND\ndestination:/queue/plain\nstrangler-trace-id:mine-1\n\nx\0")
    dup = play.client("SEND\ndestination:/queue/plain\nstrangler-trace-id:mine-1\n\nx\0")
    long = play.client(f"SEND\ndestination:/queue/plain\nstrangler-trace-id:{'y' * 300}\n\nx\0")
    empty = play.client("SEND\ndestination:/queue/plain\nstrangler-trace-id:\n\nx\0")
    first, second, third, fourth = play.facts.named("message_routed")
    assert first["trace_id"] == "mine-1" and "producer_trace_id" not in first
    for fact, out, given in (
        (second, dup, "mine-1"),
        (third, long, "y" * 200),
        (fourth, empty, ""),
    ):
        assert fact["trace_id"] != "mine-1" and fact["producer_trace_id"] == given
        assert frames(to_legacy(out))[0].get("strangler-trace-id") == fact["trace_id"]


def test_traceparent_is_recorded_beside_the_trace_id() -> None:
    play = connected()
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    play.client(f"SEND\ndestination:/queue/plain\ntraceparent:{parent}\n\nx\0")
    assert play.facts.named("message_routed")[0]["traceparent"] == parent


def test_frames_before_a_malformed_one_are_handled_then_the_error_answers() -> None:
    play = connected()
    out = play.client("SEND\ndestination:/queue/plain\n\nfirst\0BOGUS\n\n\0")
    assert frames(to_legacy(out))[0].body == b"first"
    (error,) = frames(to_client(out))
    assert error.command == "ERROR" and "unknown command" in (error.get("message") or "")
    assert only(out, CloseClient).after_error


def test_before_connected_only_a_small_frame_is_buffered() -> None:
    play = Play()
    out = play.client(b"CONNECT\nlogin:x\n\n" + b"x" * 70_000)
    (error,) = frames(to_client(out))
    assert error.command == "ERROR" and "larger than 65536" in (error.get("message") or "")


def test_the_proxy_wide_buffer_budget_refuses_a_frame_that_would_exceed_it() -> None:
    play = connected(max_buffered_bytes=10_000)
    other = Play(ROUTES)
    other.ctx = play.ctx  # the same proxy: one budget
    out = play.client(b"SEND\ndestination:/queue/plain\n\n" + b"x" * 20_000)
    (error,) = frames(to_client(out))
    assert "budget" in (error.get("message") or "")
    assert play.ctx.buffer_budget.used == 0  # given back with the dropped frame


def test_heartbeats_pass_to_legacy() -> None:
    play = connected()
    assert to_legacy(play.client(b"\n\n")) == b"\n\n"


def test_a_slowloris_frame_is_cut_off_but_a_steady_stream_is_not() -> None:
    play = connected(frame_timeout=1.0)
    play.client(b"SEND\ndestination:/queue/plain\n\nbody")
    assert frames(to_client(play.client(b" more"))) == []
    out = play.timer("frame")  # progress: none since the timer started
    (error,) = frames(to_client(out))
    assert "not completed within 1 seconds" in (error.get("message") or "")
    steady = connected(frame_timeout=1.0)
    steady.client(b"SEND\ndestination:/queue/plain\n\na\0SEND\ndestination:/q")
    steady.client(b"ueue/plain\n\nb\0SEND\ndestination:/queue/plain\n\nc")  # frames completed
    assert to_client(steady.timer("frame")) == b""


def test_every_amazonmq_frame_has_an_outcome_fact_even_through_an_internal_error() -> None:
    play = connected()
    cut = submitted(send(play, "/queue/cut.a", "r1"))[0]
    mirrored = submitted(send(play, "/queue/mirror.a", None))[0]
    out = play.record(play.core.internal_error("boom", "test"))
    assert play.facts.named("internal_error", reason="boom")
    assert play.facts.named("message_fell_back")[0]["possibly_stored"] is True
    assert play.facts.named("message_mirror_failed")[0]["possibly_stored"] is True
    assert of(out, DropAmazonMQ)
    (error,) = [f for f in frames(to_client(out)) if f.command == "ERROR"]
    assert "internal error" in (error.get("message") or "")
    assert {cut.token, mirrored.token}.isdisjoint(play.core.state.pending)
    rejecting = connected()
    strict = submitted(send(rejecting, "/queue/strict.a", None))[0]
    rejecting.record(rejecting.core.internal_error("boom", "test"))
    assert rejecting.facts.named("message_rejected")[0]["possibly_stored"] is True
    assert strict.token not in rejecting.core.state.pending


def test_shutdown_reads_no_more_and_still_applies_on_failure() -> None:
    play = connected()
    (sent,) = submitted(send(play, "/queue/cut.a"))
    out = play.record(play.core.shutdown(5.0))
    assert PauseClient() in out and StartTimer("grace", 5.0) in out
    fell = play.outcome(sent.token, "refused", False)
    assert frames(to_legacy(fell))[0].body == b"hi"  # on_failure: legacy, as promised
    assert play.facts.named("message_fell_back")


def test_mirror_backlog_keeps_copies_in_order_beyond_the_window() -> None:
    play = connected(max_inflight=1)
    out = play.client("".join(f"SEND\ndestination:/queue/mirror.a\n\n{i}\0" for i in range(3)))
    assert len(of(out, ToLegacy)) == 1  # one write to legacy for the read
    assert PauseClient() not in out  # copies never hold the producer
    (first,) = submitted(out)
    (second,) = submitted(play.outcome(first.token))
    assert frames(second.data)[0].body == b"1"


def test_receipts_reach_the_client_in_the_order_of_its_frames_whoever_answers() -> None:
    # #20.6: legacy's RECEIPT for a later SEND came before Amazon MQ's for an earlier one.
    play = connected()
    (first,) = submitted(send(play, "/queue/cut.a", "r1"))  # Amazon MQ answers
    send(play, "/queue/plain", "r2")  # legacy answers
    held = play.legacy("RECEIPT\nreceipt-id:r2\n\n\0\n")
    assert to_client(held) == b""  # held in its place, with its EOL
    released = play.outcome(first.token)
    assert to_client(released) == b"RECEIPT\nreceipt-id:r1\n\n\0\nRECEIPT\nreceipt-id:r2\n\n\0\n"
    # Nothing owed any more: legacy's receipts pass as they come again.
    send(play, "/queue/plain", "r3")
    assert to_client(play.legacy("RECEIPT\nreceipt-id:r3\n\n\0\n")) == (
        b"RECEIPT\nreceipt-id:r3\n\n\0\n"
    )


def test_a_fallback_answers_its_receipt_in_its_place() -> None:
    play = connected()
    (first,) = submitted(send(play, "/queue/cut.a", "r1"))
    send(play, "/queue/plain", "r2")
    assert to_client(play.legacy("RECEIPT\nreceipt-id:r2\n\n\0\n")) == b""
    play.outcome(first.token, "refused", False)  # falls back: legacy answers r1 now
    out = play.legacy("RECEIPT\nreceipt-id:r1\n\n\0\n")
    assert to_client(out) == b"RECEIPT\nreceipt-id:r1\n\n\0\nRECEIPT\nreceipt-id:r2\n\n\0\n"


def test_a_session_that_ends_before_legacy_confirmed_leaves_those_unconfirmed() -> None:
    """The promise table's last row: legacy closed with receipts owed. The client got no
    RECEIPT for them (it resends); each is ``message_unconfirmed``, possibly stored."""
    play = connected()
    out = send(play, "/queue/plain", "r1") + send(play, "/queue/mirror.a", "r2")
    traces = [f.get("strangler-trace-id") for f in frames(to_legacy(out))]
    (copy,) = submitted(out)
    play.outcome(copy.token)  # the mirror copy is Amazon MQ's; the receipt is legacy's
    ended = play.record(play.core.legacy_closed("reset by peer"))
    assert b"RECEIPT" not in to_client(ended)
    unconfirmed = play.facts.named("message_unconfirmed")
    assert [f["trace_id"] for f in unconfirmed] == traces
    assert all(f["broker"] == "legacy" and f["possibly_stored"] for f in unconfirmed)
    assert "legacy closed the connection" in unconfirmed[0]["reason"]
