"""FactSink: JSON lines off the hot path, bounded memory, drops on record."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strangler.facts import Fact, FactSink, plain_json_string
from strangler.facts.sink import _Timestamps

# The writer waits this long between batches unless woken; large enough that in
# a test it only ever runs when flush()/close() wakes it.
IDLE = 3600.0


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def sink(stream: io.StringIO) -> Iterator[FactSink]:
    s = FactSink(stream, interval=IDLE, static={"service": "strangler", "node": "n1"})
    yield s
    s.close()


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_each_fact_is_one_json_line_with_event_first_then_iso_ts(
    sink: FactSink, stream: io.StringIO
) -> None:
    before = datetime.now(UTC)
    sink.emit(Fact.CLIENT_CONNECTED, session="s1", version="1.2")
    sink.emit(Fact.MESSAGE_ROUTED, session="s1", destination="/queue/a\nb", targets=["x"])
    assert sink.flush()
    after = datetime.now(UTC)

    raw_lines = stream.getvalue().splitlines()
    assert len(raw_lines) == 2  # a field holding a newline does not split the line
    facts = [json.loads(line) for line in raw_lines]
    assert [list(f)[:2] for f in facts] == [["event", "ts"], ["event", "ts"]]
    assert [f["event"] for f in facts] == ["client_connected", "message_routed"]
    for fact in facts:
        ts = datetime.fromisoformat(fact["ts"])
        assert ts.tzinfo is not None
        assert ts.utcoffset() == UTC.utcoffset(None)
        assert before - timedelta(milliseconds=1) <= ts <= after + timedelta(milliseconds=1)
    assert facts[0]["session"] == "s1"
    assert facts[0]["version"] == "1.2"
    assert facts[1]["destination"] == "/queue/a\nb"
    assert facts[1]["targets"] == ["x"]


def test_static_fields_are_in_every_line(sink: FactSink, stream: io.StringIO) -> None:
    sink.emit(Fact.PROXY_STARTED, port=61613)
    sink.emit(Fact.PROXY_STOPPED)
    assert sink.flush()
    facts = lines_of(stream)
    assert len(facts) == 2
    for fact in facts:
        assert fact["service"] == "strangler"
        assert fact["node"] == "n1"
    assert facts[0]["port"] == 61613


def test_facts_keep_emit_order(sink: FactSink, stream: io.StringIO) -> None:
    for i in range(500):
        sink.emit(Fact.MESSAGE_CONFIRMED, n=i)
    assert sink.flush()
    assert [f["n"] for f in lines_of(stream)] == list(range(500))


def test_flush_writes_everything_emitted_before_it(sink: FactSink, stream: io.StringIO) -> None:
    assert sink.flush()  # nothing pending: returns at once
    assert stream.getvalue() == ""
    for round_ in range(3):
        for i in range(10):
            sink.emit(Fact.MESSAGE_ROUTED, round=round_, n=i)
        # The writer sleeps for an hour unless woken: only flush can get these out.
        assert sink.flush()
        assert len(lines_of(stream)) == 10 * (round_ + 1)
    assert sink.written_total == 30
    assert sink.dropped_total == 0


def test_nothing_is_written_before_flush_when_the_writer_is_idle(
    sink: FactSink, stream: io.StringIO
) -> None:
    sink.emit(Fact.MESSAGE_ROUTED)
    assert stream.getvalue() == ""
    assert sink.flush()
    assert len(lines_of(stream)) == 1


def test_close_writes_pending_facts(stream: io.StringIO) -> None:
    sink = FactSink(stream, interval=IDLE)
    sink.emit(Fact.PROXY_STOPPED, sessions_open=0)
    sink.close()
    assert [f["event"] for f in lines_of(stream)] == ["proxy_stopped"]


def test_capacity_overflow_drops_and_records_facts_dropped_with_count(
    stream: io.StringIO,
) -> None:
    sink = FactSink(stream, capacity=5, interval=IDLE)
    try:
        for i in range(12):
            sink.emit(Fact.MESSAGE_ROUTED, n=i)
        assert sink.flush()
        facts = lines_of(stream)
        assert [f["n"] for f in facts if f["event"] == "message_routed"] == [0, 1, 2, 3, 4]
        dropped = [f for f in facts if f["event"] == "facts_dropped"]
        assert len(dropped) == 1
        assert dropped[0]["count"] == 7
        assert facts[-1] is dropped[0]
        assert sink.dropped_total == 7
        assert sink.written_total == 6

        # Once drained, there is room again and nothing more is dropped.
        sink.emit(Fact.MESSAGE_CONFIRMED)
        assert sink.flush()
        facts = lines_of(stream)
        assert facts[-1]["event"] == "message_confirmed"
        assert sum(1 for f in facts if f["event"] == "facts_dropped") == 1
        assert sink.dropped_total == 7
    finally:
        sink.close()


def test_listeners_see_every_emit_including_dropped_ones(stream: io.StringIO) -> None:
    sink = FactSink(stream, capacity=2, interval=IDLE)
    seen: list[tuple[str, Mapping[str, Any]]] = []
    sink.listeners.append(lambda fact, fields: seen.append((fact, dict(fields))))
    try:
        for i in range(4):
            sink.emit(Fact.MESSAGE_ROUTED, n=i)
        sink.emit(Fact.BROKER_UNAVAILABLE, broker="legacy")
        assert seen == [
            (Fact.MESSAGE_ROUTED, {"n": 0}),
            (Fact.MESSAGE_ROUTED, {"n": 1}),
            (Fact.MESSAGE_ROUTED, {"n": 2}),
            (Fact.MESSAGE_ROUTED, {"n": 3}),
            (Fact.BROKER_UNAVAILABLE, {"broker": "legacy"}),
        ]
    finally:
        sink.close()


def test_writer_listeners_see_written_facts_in_order_on_the_writer_thread(
    sink: FactSink, stream: io.StringIO
) -> None:
    seen: list[tuple[str, dict[str, Any], str]] = []

    def broken(fact: str, fields: Mapping[str, Any]) -> None:
        raise RuntimeError("a metrics bug")

    sink.writer_listeners.append(broken)
    sink.writer_listeners.append(
        lambda fact, fields: seen.append((fact, dict(fields), threading.current_thread().name))
    )
    sink.emit(Fact.MESSAGE_ROUTED, n=1)
    sink.emit(Fact.MESSAGE_CONFIRMED, n=2)
    assert seen == []  # nothing in emit: the writer has not run yet (IDLE)
    assert sink.flush()
    assert seen == [
        (Fact.MESSAGE_ROUTED, {"n": 1}, "strangler-facts"),
        (Fact.MESSAGE_CONFIRMED, {"n": 2}, "strangler-facts"),
    ]
    assert sink.writer_listener_errors == 2
    assert [line["n"] for line in lines_of(stream)] == [1, 2]  # the bug stopped no line


def test_a_burst_is_written_without_waiting_for_the_interval_in_small_batches(
    sink: FactSink, stream: io.StringIO
) -> None:
    writes: list[int] = []
    real_write = stream.write

    def counting_write(text: str) -> int:
        writes.append(text.count("\n"))
        return real_write(text)

    stream.write = counting_write  # type: ignore[method-assign]
    for n in range(1500):
        sink.emit(Fact.MESSAGE_ROUTED, n=n)
    handoff = sink._handoff
    with handoff._done:  # no flush(): the writer must wake by itself (interval is IDLE)
        assert handoff._done.wait_for(lambda: handoff.finished >= 512, timeout=5.0)
    assert sink.flush()
    assert [line["n"] for line in lines_of(stream)] == list(range(1500))
    assert max(writes) <= 512  # rendered and written 512 at a time, never all at once


def test_failing_stream_does_not_raise_from_emit_flush_or_writer() -> None:
    broken = io.StringIO()
    broken.close()
    sink = FactSink(broken, interval=IDLE)
    sink.emit(Fact.MESSAGE_ROUTED, n=1)
    sink.emit(Fact.MESSAGE_ROUTED, n=2)
    assert sink.flush()  # the writer survived and accounted for both facts
    assert sink.written_total == 0
    assert sink.dropped_total == 2
    # The writer thread is still alive and keeps serving flushes.
    sink.emit(Fact.MESSAGE_ROUTED, n=3)
    assert sink.flush()
    assert sink.dropped_total == 3
    sink.close()


class _OSErrorStream(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError(28, "No space left on device")


def test_stream_raising_oserror_counts_lost_lines() -> None:
    sink = FactSink(_OSErrorStream(), interval=IDLE)
    sink.emit(Fact.MESSAGE_ROUTED)
    assert sink.flush()
    assert sink.dropped_total == 1
    assert sink.written_total == 0
    sink.close()


def test_path_mode_creates_parent_dirs_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "facts.jsonl"
    first = FactSink(path=path, interval=IDLE)
    first.emit(Fact.PROXY_STARTED, run=1)
    first.close()
    assert path.exists()

    second = FactSink(path=str(path), interval=IDLE)
    second.emit(Fact.PROXY_STARTED, run=2)
    second.emit(Fact.PROXY_STOPPED, run=2)
    second.close()

    facts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(f["event"], f["run"]) for f in facts] == [
        ("proxy_started", 1),
        ("proxy_started", 2),
        ("proxy_stopped", 2),
    ]


def test_path_mode_closes_its_own_file_but_not_a_given_stream(
    tmp_path: Path, stream: io.StringIO
) -> None:
    owned = FactSink(path=tmp_path / "f.jsonl", interval=IDLE)
    owned.close()
    assert owned._stream.closed

    borrowed = FactSink(stream, interval=IDLE)
    borrowed.close()
    assert not stream.closed


def test_timestamps_match_datetime_isoformat_across_second_boundaries() -> None:
    stamp = _Timestamps()
    for ts in (1795750493.0, 1795750493.999999, 1795750494.000001, 1795750494.5, 0.25):
        expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")
        assert stamp(ts) == expected, ts


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False))
def test_timestamps_agree_with_datetime_for_any_time(ts: float) -> None:
    expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")
    assert _Timestamps()(ts) == expected


def test_reopen_writes_to_a_new_file_after_the_old_one_was_moved(tmp_path: Path) -> None:
    # Before: the sink kept writing to the renamed file forever (logrotate's move was lost).
    path = tmp_path / "facts.jsonl"
    sink = FactSink(path=path, interval=IDLE)
    sink.emit(Fact.PROXY_STARTED)
    assert sink.flush()
    path.rename(tmp_path / "facts.jsonl.1")
    sink.reopen()
    sink.emit(Fact.PROXY_STOPPED)
    sink.close()
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    old = [
        json.loads(line)["event"] for line in (tmp_path / "facts.jsonl.1").read_text().splitlines()
    ]
    assert (old, events) == (["proxy_started"], ["proxy_stopped"])


def test_reopen_that_fails_keeps_the_open_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "facts.jsonl"
    sink = FactSink(path=path, interval=IDLE)
    path.rename(tmp_path / "moved.jsonl")
    path.mkdir()  # a directory where the file was: it cannot be opened
    sink.reopen()
    sink.emit(Fact.PROXY_STOPPED)
    sink.close()
    assert sink.reopen_errors == 1
    assert "cannot reopen the facts file" in capsys.readouterr().err
    assert json.loads((tmp_path / "moved.jsonl").read_text())["event"] == "proxy_stopped"


def test_reopen_of_a_stream_sink_does_nothing(sink: FactSink, stream: io.StringIO) -> None:
    sink.reopen()
    sink.emit(Fact.PROXY_STOPPED)
    assert sink.flush()
    assert [f["event"] for f in lines_of(stream)] == ["proxy_stopped"]


def test_the_writer_may_run_before_the_constructor_returns(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a busy machine the writer thread can run before ``__init__`` goes on: it must
    find everything it reads (it once died on ``writer_listeners``, and no fact was
    written by that proxy at all)."""
    started = threading.Thread.start

    def run_first(thread: threading.Thread) -> None:
        sink = thread._target.__self__  # type: ignore[attr-defined]  # the FactSink
        sink._write_pending()  # what the writer does first, before __init__ goes on
        started(thread)

    monkeypatch.setattr(threading.Thread, "start", run_first)
    sink = FactSink(stream, interval=IDLE)
    sink.emit(Fact.PROXY_STARTED, listen="x")
    sink.close()
    assert json.loads(stream.getvalue())["event"] == "proxy_started"


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque \u00e9>"


class _Custom:
    def __structlog__(self) -> dict[str, int]:
        return {"custom": 1}


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
        st.sampled_from([Fact.MESSAGE_ROUTED, _Opaque(), _Custom(), b"bytes", ("a", 1)]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(fields=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_lines_are_byte_identical_to_structlogs_json_renderer_with_orjson(
    fields: dict[str, Any],
) -> None:
    """The lines the sink wrote before it rendered in batches: structlog's JSONRenderer
    with orjson as its serializer, over {"event", "ts", **static, **fields}."""
    import orjson
    import structlog

    def serializer(obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=kwargs.get("default")).decode()

    renderer = structlog.processors.JSONRenderer(serializer)
    static = {"service": "strangler", "node": "n\u00e9"}
    stream = io.StringIO()
    sink = FactSink(stream, interval=IDLE, static=static)
    try:
        sink.emit(Fact.MESSAGE_ROUTED, **fields)
        sink.record(Fact.MESSAGE_CONFIRMED, fields)
        assert sink.flush()
    finally:
        sink.close()
    text = stream.getvalue()
    assert text.endswith("\n")
    lines = text[:-1].split("\n")  # not splitlines: JSON keeps U+0085 and U+2028 raw
    assert len(lines) == 2
    for line, fact in zip(lines, (Fact.MESSAGE_ROUTED, Fact.MESSAGE_CONFIRMED), strict=True):
        ts = json.loads(line)["ts"]
        try:
            expected = renderer(None, "info", {"event": str(fact), "ts": ts, **static, **fields})
        except TypeError:  # a value orjson refuses (a 65-bit int, a non-str key): a drop
            assert json.loads(line)["event"] == "facts_dropped"
        else:
            assert line == expected


def test_record_takes_a_mapping_as_emit_takes_keywords(sink: FactSink, stream: io.StringIO) -> None:
    sink.record(Fact.MESSAGE_ROUTED, {"session": "s1", "n": 1})
    sink.emit(Fact.MESSAGE_ROUTED, session="s1", n=1)
    assert sink.flush()
    first, second = stream.getvalue().splitlines()
    assert first.split('"ts"')[0] == second.split('"ts"')[0]
    assert json.loads(first) | {"ts": 0} == json.loads(second) | {"ts": 0}


plain_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
    max_size=20,
)


@given(
    fields=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    variable=st.text(max_size=12),
    values=st.lists(plain_values, min_size=1, max_size=3),
)
def test_a_template_writes_the_line_record_writes(
    fields: dict[str, Any], variable: str, values: list[str]
) -> None:
    """``record_from(template, value)`` and ``record`` of the same fields: the same bytes
    (the time aside), whatever the fields, the static ones and where the variable is."""
    import orjson

    fields = {**fields, variable: "stand-in"}
    try:
        orjson.dumps(fields)
    except TypeError:  # a value orjson refuses: record writes a drop, no template of it
        return
    static = {"service": "strangler", "node": "n\u00e9"}
    stream = io.StringIO()
    sink = FactSink(stream, interval=IDLE, static=static)
    try:
        template = sink.template(Fact.MESSAGE_ROUTED, fields, variable)
        for value in values:
            sink.record_from(template, value, time.time())
            sink.record(Fact.MESSAGE_ROUTED, {**fields, variable: value})
        assert sink.flush()
    finally:
        sink.close()
    lines = stream.getvalue()[:-1].split("\n")
    assert len(lines) == 2 * len(values)
    for templated, recorded in zip(lines[::2], lines[1::2], strict=True):
        ts = json.loads(recorded)["ts"]
        assert templated.replace(json.loads(templated)["ts"], ts, 1) == recorded


def test_plain_json_strings_are_those_json_writes_as_they_are() -> None:
    import orjson

    for text in ("s1-0000002a", "abc-._~ /x", ""):
        assert plain_json_string(text) and orjson.dumps(text) == f'"{text}"'.encode()
    for text in ('a"b', "a\\b", "a\nb", "caf\u00e9", "\x7f"):
        assert not plain_json_string(text)


def test_listeners_see_a_templates_facts_whole_and_counters_count_them_per_batch(
    stream: io.StringIO,
) -> None:
    sink = FactSink(stream, interval=IDLE)
    seen: list[tuple[str, dict[str, Any]]] = []
    written: list[str] = []
    counted: list[tuple[str, dict[str, Any], int]] = []
    sink.listeners.append(lambda fact, fields: seen.append((str(fact), dict(fields))))
    sink.writer_listeners.append(lambda fact, fields: written.append(str(fact)))
    sink.writer_counters.append(
        lambda fact, fields, count: counted.append((str(fact), dict(fields), count))
    )
    try:
        routed = sink.template(Fact.MESSAGE_ROUTED, {"session": "s1", "trace_id": "", "n": 1})
        for trace in ("t1", "t2", "t3"):
            sink.record_from(routed, trace, time.time())
        sink.emit(Fact.MESSAGE_CONFIRMED, trace_id="t1")
        assert sink.flush()
    finally:
        sink.close()
    assert seen[:3] == [
        ("message_routed", {"session": "s1", "trace_id": t, "n": 1}) for t in ("t1", "t2", "t3")
    ]
    assert written == ["message_confirmed"]  # a template's facts are counted instead
    assert counted == [("message_routed", {"session": "s1", "n": 1}, 3)]
    assert [f["trace_id"] for f in lines_of(stream)] == ["t1", "t2", "t3", "t1"]


def test_a_template_needs_its_variable_among_its_fields(sink: FactSink) -> None:
    with pytest.raises(ValueError, match="trace_id"):
        sink.template(Fact.MESSAGE_ROUTED, {"session": "s1"})


def test_facts_from_a_template_beyond_capacity_are_dropped_and_counted(
    stream: io.StringIO,
) -> None:
    sink = FactSink(stream, interval=IDLE, capacity=2)
    try:
        template = sink.template(Fact.MESSAGE_ROUTED, {"trace_id": ""})
        for trace in ("t1", "t2", "t3", "t4"):
            sink.record_from(template, trace, time.time())
        assert sink.flush()
    finally:
        sink.close()
    facts = lines_of(stream)
    assert [f.get("trace_id") for f in facts[:2]] == ["t1", "t2"]
    assert facts[2]["event"] == "facts_dropped" and facts[2]["count"] == 2


def test_a_templates_facts_carry_the_time_they_were_recorded_at(
    sink: FactSink, stream: io.StringIO
) -> None:
    """Facts of one read share a time, formatted once; the next time is formatted anew."""
    template = sink.template(Fact.MESSAGE_ROUTED, {"trace_id": ""})
    for trace, ts in (("a", 1_700_000_000.25), ("b", 1_700_000_000.25), ("c", 1_700_000_001.5)):
        sink.record_from(template, trace, ts)
    sink.emit(Fact.MESSAGE_CONFIRMED, trace_id="c")
    sink.record_from(template, "d", 1_700_000_001.5)
    assert sink.flush()
    stamps = [f["ts"] for f in lines_of(stream)]
    assert stamps[:3] == [
        "2023-11-14T22:13:20.250000+00:00",
        "2023-11-14T22:13:20.250000+00:00",
        "2023-11-14T22:13:21.500000+00:00",
    ]
    assert stamps[4] == "2023-11-14T22:13:21.500000+00:00"


def test_the_writer_gives_the_gil_up_within_a_batch(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of 512 facts rendered in one go held a producer's frame for up to its whole
    render (bench S2's p99): the writer lets the event loop in every few facts."""
    from strangler.facts import sink as module

    yields: list[None] = []
    monkeypatch.setattr(module, "_yield", lambda: yields.append(None))
    sink = FactSink(stream, interval=IDLE)
    try:
        for n in range(200):
            sink.emit(Fact.MESSAGE_CONFIRMED, trace_id=f"t{n}")
        assert sink.flush()
    finally:
        sink.close()
    assert len(yields) == 200 // module._YIELD_EVERY
    assert len(lines_of(stream)) == 200


@given(
    prefix=st.sampled_from(["", "p-1-", "0123456789abcdef"]),
    first=st.sampled_from([1, 0xFF, 0xFFFFFFFE, 2**40]),
    count=st.integers(min_value=1, max_value=40),
)
def test_a_run_writes_the_lines_record_from_writes(prefix: str, first: int, count: int) -> None:
    """``record_run`` (the frame pump's passed SENDs) and ``record_from`` of each trace id:
    the same lines, counters past 8 hex digits included."""
    stream = io.StringIO()
    sink = FactSink(stream, interval=IDLE, static={"service": "strangler"})
    try:
        template = sink.template(Fact.MESSAGE_ROUTED, {"session": "s", "trace_id": "", "n": 1})
        sink.record_run(template, prefix, first, count, 1_700_000_000.5)
        for n in range(first, first + count):
            sink.record_from(template, f"{prefix}{n:08x}", 1_700_000_000.5)
        assert sink.flush()
    finally:
        sink.close()
    lines = stream.getvalue()[:-1].split("\n")
    assert lines[:count] == lines[count:]
    assert [json.loads(line)["trace_id"] for line in lines[:count]] == [
        f"{prefix}{n:08x}" for n in range(first, first + count)
    ]


def test_a_runs_facts_are_told_counted_and_dropped_one_by_one(stream: io.StringIO) -> None:
    sink = FactSink(stream, interval=IDLE, capacity=2)
    seen: list[str] = []
    counted: list[int] = []
    sink.listeners.append(lambda fact, fields: seen.append(fields["trace_id"]))
    sink.writer_counters.append(lambda fact, fields, count: counted.append(count))
    try:
        template = sink.template(Fact.MESSAGE_ROUTED, {"trace_id": ""})
        sink.record_run(template, "p", 1, 3, time.time())
        sink.record_from(template, "q", time.time())
        sink.record_run(template, "r", 7, 4, time.time())  # beyond capacity: 4 dropped
        assert sink.flush()
    finally:
        sink.close()
    assert seen == [
        "p00000001",
        "p00000002",
        "p00000003",
        "q",
        *(f"r{n:08x}" for n in range(7, 11)),
    ]
    assert counted == [4]
    facts = lines_of(stream)
    assert [f.get("trace_id") for f in facts[:4]] == ["p00000001", "p00000002", "p00000003", "q"]
    assert facts[4]["event"] == "facts_dropped" and facts[4]["count"] == 4
    assert sink.dropped_total == 4 and sink.written_total == 5
