"""The core's hot path: SENDs (with a receipt or without) to a destination that passes
through to legacy are forwarded in place and their fact recorded from a template, without
deciding again; legacy still owes their receipts.

It must be invisible: the same facts, the same bytes to legacy and to the client as the
full decision gives, whatever the SEND carries, the version, and routes reloaded in
between (the reference run below has the hot path switched off)."""

from __future__ import annotations

from textwrap import dedent
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from playbook import BROKERS, Play, frames, submitted, to_client, to_legacy

from strangler.proxy.core import producer
from strangler.routes import RouteTable, parse_routes

ROUTES = """\
    - {name: stay, match: {prefix: /queue/stay.}, mode: legacy}
    - {name: copy, match: {prefix: /queue/copy.}, mode: mirror}
    - {name: cut, match: {prefix: /queue/cut.}, mode: cutover, on_failure: legacy}
    - {name: half, match: {prefix: /queue/half.}, mode: split, weight: 50, on_failure: legacy}
    - {name: rehearse, match: {prefix: /queue/dry.}, mode: cutover, on_failure: legacy,
       dry_run: true}
    """
# The reload: stay and cut swap modes, half goes all the way.
RELOADED = """\
    - {name: stay, match: {prefix: /queue/stay.}, mode: cutover, on_failure: legacy}
    - {name: copy, match: {prefix: /queue/copy.}, mode: mirror}
    - {name: cut, match: {prefix: /queue/cut.}, mode: legacy}
    - {name: half, match: {prefix: /queue/half.}, mode: split, weight: 100, on_failure: legacy}
    - {name: rehearse, match: {prefix: /queue/dry.}, mode: legacy}
    """
DESTINATIONS = (
    "/queue/stay.a",
    " /queue/stay.a",  # 1.0: the broker trims it; 1.1 and 1.2: a name of its own
    "/queue/stay.b\t",
    "/queue/copy.a",
    "/queue/cut.a",
    "/queue/half.a",
    "/queue/dry.a",
    "/queue/stay.c,/queue/stay.d",
    "/topic/elsewhere",
    "/temp-queue/ID:x",
)
PREFIX = "p-1-"


def table(routes: str) -> RouteTable:
    return parse_routes(BROKERS + "routes:\n" + dedent(routes), "routes.yaml")


Op = tuple[str, int, bool, bool, bool, bool]


def play_out(
    ops: list[Op], version: str, together: bool = False
) -> tuple[list[dict[str, Any]], bytes, bytes, int]:
    """Facts, bytes to legacy, bytes to the client, facts recorded from a template;
    ``together``: the SENDs between two reloads in one read (the frame pump passes them)."""
    tables = (table(ROUTES), table(RELOADED))
    with mock.patch("strangler.proxy.core.state.session_trace_prefix", lambda: PREFIX):
        play = Play(ROUTES)
    play.ctx.routes.table = tables[0]
    templated = 0
    record_from = play.facts.record_from

    def counted(template: Any, value: str, ts: float) -> None:
        nonlocal templated
        templated += 1
        record_from(template, value, ts)

    play.facts.record_from = counted  # type: ignore[method-assign]
    play.connect(version)
    play.client("BEGIN\ntransaction:t1\n\n\0")
    current = 0
    burst: list[str] = []

    def answer(out: list[Any]) -> None:
        for command in submitted(out):  # Amazon MQ confirms everything at once
            play.outcome(command.token)
        for frame in frames(to_legacy(out), version):  # and legacy answers what it got
            if (answered := frame.get("receipt")) is not None:
                play.legacy(f"RECEIPT\nreceipt-id:{answered}\n\n\0\n")

    for n, (kind, index, receipt, tx, own, traceparent) in enumerate(ops):
        if kind == "reload":
            if burst:
                answer(play.client("".join(burst)))
                burst.clear()
            current = 1 - current
            play.ctx.routes.table = tables[current]
            out = play.record(play.core.routes_changed())
        else:
            headers = [f"destination:{DESTINATIONS[index]}"]
            if receipt:
                headers.append(f"receipt:r{n}")
            if tx:
                headers.append("transaction:t1")
            if own:
                headers.append(f"strangler-trace-id:own-{n}")
            if traceparent:
                headers.append(
                    "traceparent:00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                )
            send = "SEND\n" + "\n".join(headers) + f"\n\nbody {n}\0"
            if together:
                burst.append(send)
                continue
            out = play.client(send)
        answer(out)
    if burst:
        answer(play.client("".join(burst)))
    return (
        [{"event": name, **fields} for name, fields in play.facts.emitted],
        to_legacy(play.log),
        to_client(play.log),
        templated,
    )


# Mostly plain SENDs, half of them to one destination: what fills the cache, then what
# must not take it; now and then a reload (the other fields of a reload are ignored).
flag = st.sampled_from([False, False, False, True])
ops = st.lists(
    st.tuples(
        st.sampled_from(["send"] * 6 + ["reload"]),
        st.one_of(st.just(0), st.integers(0, len(DESTINATIONS) - 1)),
        flag,
        flag,
        flag,
        flag,
    ),
    min_size=2,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, version=st.sampled_from(["1.0", "1.1", "1.2"]), together=st.booleans())
def test_the_hot_path_changes_nothing_a_producer_or_an_auditor_can_see(
    ops: list[Op], version: str, together: bool
) -> None:
    """One SEND a read, or a read of many (the frame pump's pass-through then)."""
    with mock.patch.object(producer, "remember_pass_through", lambda *args: None):
        reference = play_out(ops, version, together)
    assert reference[3] == 0
    facts, legacy, client, _ = play_out(ops, version, together)
    assert facts == reference[0]
    assert legacy == reference[1]
    assert client == reference[2]


def test_plain_sends_to_a_legacy_destination_take_the_hot_path() -> None:
    """The property above would hold if the hot path were never taken: here it is."""
    plain: list[Op] = [("send", 0, False, False, False, False)] * 5
    facts, legacy, _, templated = play_out(plain, "1.2")
    assert templated == 3  # the first two are decided (the second makes the template)
    routed = [f for f in facts if f["event"] == "message_routed"]
    assert [f["trace_id"] for f in routed] == [f"{PREFIX}{n:08x}" for n in range(1, 6)]
    assert legacy.count(b"SEND\nstrangler-trace-id:") == 5
    assert all(list(f["targets"]) == ["legacy"] and f["rule"] == "stay" for f in routed)


def test_a_reload_reaches_a_destination_that_was_passing_through() -> None:
    """The cached decision belongs to the routes it was made under: once the file moves
    the destination to Amazon MQ, its next SEND goes there."""
    moved: list[Op] = [
        ("send", 0, False, False, False, False),
        ("send", 0, False, False, False, False),
        ("send", 0, False, False, False, False),
        ("reload", 0, False, False, False, False),
        ("send", 0, False, False, False, False),
    ]
    facts, legacy, _, templated = play_out(moved, "1.2")
    routed = [f for f in facts if f["event"] == "message_routed"]
    assert templated == 1
    assert [list(f["targets"]) for f in routed] == [["legacy"]] * 3 + [["amazonmq"]]
    assert legacy.count(b"SEND\n") == 3


def test_sends_with_a_receipt_take_the_hot_path_and_legacy_still_confirms_each() -> None:
    receipted: list[Op] = [("send", 0, True, False, False, False)] * 4
    facts, legacy, client, templated = play_out(receipted, "1.2")
    assert templated == 2
    routed = [f for f in facts if f["event"] == "message_routed"]
    assert all(f["receipt"] is True for f in routed)
    confirmed = [f for f in facts if f["event"] == "message_confirmed"]
    assert [f["trace_id"] for f in confirmed] == [f["trace_id"] for f in routed]
    assert all(f["broker"] == "legacy" and f["rule"] == "stay" for f in confirmed)
    assert [f.get("receipt-id") for f in frames(client)[1:]] == ["r0", "r1", "r2", "r3"]
    assert legacy.count(b"receipt:") == 4


def test_what_a_send_carries_keeps_it_off_the_hot_path() -> None:
    """A transaction, the producer's own trace id or a traceparent each need the full
    path (a transaction's routes, an id to check, a field to record), and a receipt the
    decision made for a SEND with one; a 1.0 destination the broker trims is decided on
    what it stores, and a 1.0 receipt too; a split decides per message."""
    first: Op = ("send", 0, False, False, False, False)
    for extra in (
        ("send", 0, True, False, False, False),
        ("send", 0, False, True, False, False),
        ("send", 0, False, False, True, False),
        ("send", 0, False, False, False, True),
    ):
        _, _, _, templated = play_out([first, first, extra], "1.2")
        assert templated == 0, extra
    padded: list[Op] = [("send", 1, False, False, False, False)] * 4
    assert play_out(padded, "1.0")[3] == 0
    assert play_out([("send", 0, True, False, False, False)] * 4, "1.0")[3] == 0
    assert play_out([("send", 0, False, False, False, False)] * 4, "1.0")[3] == 2
    assert play_out(padded, "1.2")[3] == 2
    split: list[Op] = [("send", 5, False, False, False, False)] * 4  # chosen per message
    assert play_out(split, "1.2")[3] == 0


def test_a_session_remembers_a_bounded_number_of_destinations() -> None:
    play = Play(ROUTES)
    play.connect()
    for n in range(producer.PASSING_LIMIT + 10):
        play.client(f"SEND\ndestination:/queue/stay.{n}\n\nx\0")
    assert 0 < len(play.core.state.passing) <= producer.PASSING_LIMIT


def test_a_read_s_first_plain_sends_pass_through_in_the_frame_pump() -> None:
    """Cached SENDs at the start of a read pass in the pump as one run (no record each);
    from the first SEND the core must see, the rest go the core's way, in order."""
    with mock.patch("strangler.proxy.core.state.session_trace_prefix", lambda: PREFIX):
        play = Play(ROUTES)
    runs: list[tuple[int, int]] = []
    record_run = play.facts.record_run

    def counted(template: Any, prefix: str, first: int, count: int, ts: float) -> None:
        runs.append((first, count))
        record_run(template, prefix, first, count, ts)

    play.facts.record_run = counted  # type: ignore[method-assign]
    play.connect()
    send = "SEND\ndestination:/queue/stay.a\n\nx\0"
    play.client(send)  # decided, noted
    play.client(send)  # decided, cached
    out = play.client(send * 5 + "SEND\ndestination:/queue/stay.a\nreceipt:r\n\nx\0" + send)
    assert runs == [(3, 5)]
    routed = play.facts.emitted[-7:]
    assert [f["trace_id"] for _, f in routed] == [f"{PREFIX}{n:08x}" for n in range(3, 10)]
    assert [f["receipt"] for _, f in routed] == [False] * 5 + [True, False]
    assert frames(to_legacy(out))[5].get("receipt") == "r"
    assert to_legacy(out).count(b"SEND\nstrangler-trace-id:") == 7


def test_nothing_passes_in_the_pump_while_the_session_holds_frames() -> None:
    """With Amazon MQ's window full the session holds the producer's frames: SENDs to a
    destination that passes through wait behind the cutover SEND that filled it, and
    pass (in order, with their facts) once Amazon MQ confirmed it."""
    with mock.patch("strangler.proxy.core.state.session_trace_prefix", lambda: PREFIX):
        play = Play(ROUTES, max_inflight=1)
    play.connect()
    stay = "SEND\ndestination:/queue/stay.a\n\nx\0"
    play.client(stay)  # decided, noted
    play.client(stay)  # decided, cached
    out = play.client("SEND\ndestination:/queue/cut.a\n\ny\0")
    (primary,) = submitted(out)
    assert play.core.state.blocked is not None
    out = play.client(stay * 3)
    assert b"SEND" not in to_legacy(out)
    routed = [f for name, f in play.facts.emitted if name == "message_routed"]
    assert len(routed) == 3
    out = play.outcome(primary.token)
    assert to_legacy(out).count(b"SEND\nstrangler-trace-id:") == 3
    routed = [f for name, f in play.facts.emitted if name == "message_routed"]
    assert [f["trace_id"] for f in routed[3:]] == [f"{PREFIX}{n:08x}" for n in range(4, 7)]
