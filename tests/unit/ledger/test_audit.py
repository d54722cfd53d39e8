"""``strangler audit`` over fact streams built as the proxy writes them (no broker)."""

from __future__ import annotations

import gzip
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger_facts import AMAZONMQ, LEGACY, Proxy

from strangler.cli import main
from strangler.ledger.commands import run_audit
from strangler.ledger.settled import MAX_ABOVE, SettledIds


def audit(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict[str, Any]]:
    code = main(["audit", "--json", "--no-progress", *map(str, argv)])
    out = capsys.readouterr().out
    report: dict[str, Any] = json.loads(out) if out.strip() else {}
    return code, report


def text(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["audit", "--no-progress", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def route(report: dict[str, Any], name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [r for r in report["routes"] if r["route"] == name]
    assert len(rows) == 1, report["routes"]
    return rows[0]


def every_mode(p: Proxy) -> dict[str, str]:
    """One message of each kind, each with its outcomes; returns name -> trace."""
    s = p.connect("producer-a")
    t = {
        "legacy": p.send(s, "legacy"),
        "legacy_no_receipt": p.send(s, "legacy", receipt=False),
        "mirror": p.send(s, "mirror"),
        "split_legacy": p.send(s, "split", split_to=LEGACY),
        "split_amq": p.send(s, "split"),
        "cutover": p.send(s, "cutover"),
        "fallback": p.send(s, "cutover", rule="fallback"),
        "rejected": p.send(s, "cutover", rule="strict"),
        "mirror_failed": p.send(s, "mirror", rule="shaky"),
    }
    p.confirmed(s, t["legacy"], LEGACY)
    p.confirmed(s, t["mirror"], LEGACY)
    p.confirmed(s, t["split_legacy"], LEGACY)
    p.confirmed(s, t["mirror_failed"], LEGACY)
    p.confirmed(s, t["mirror"], AMAZONMQ, "mirror")
    p.confirmed(s, t["split_amq"], AMAZONMQ)
    p.confirmed(s, t["cutover"], AMAZONMQ)
    p.fell_back(s, t["fallback"], possibly_stored=True)
    p.confirmed(s, t["fallback"], LEGACY)
    p.rejected(s, t["rejected"])
    p.mirror_failed(s, t["mirror_failed"])
    p.disconnect(s)
    return t


def test_every_outcome_is_counted_and_the_promise_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    t = every_mode(p)
    p.stop()
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 0 and report["promise"] == "holds", report["violations"]
    assert report["messages"] == 9
    assert route(report, "default")["confirmed"] == 1
    assert route(report, "default")["forwarded"] == 1
    assert route(report, "mirror")["on_both"] == 1
    assert route(report, "split")["on_legacy"] == 1 and route(report, "split")["on_amazonmq"] == 1
    assert route(report, "cutover")["on_amazonmq"] == 1
    assert route(report, "fallback")["fell_back"] == 1 and route(report, "fallback")["on_legacy"]
    assert route(report, "strict")["rejected"] == 1 and route(report, "strict")["on_none"] == 1
    assert route(report, "shaky")["mirror_failed"] == 1
    # The fallback whose frame may also be on Amazon MQ is in doubt, and says so.
    assert report["in_doubt"]["count"] == 1
    assert report["in_doubt"]["messages"][0]["trace_id"] == t["fallback"]
    assert report["in_doubt"]["messages"][0]["brokers"] == [AMAZONMQ]
    login = report["logins"][0]
    assert login["login"] == "producer-a" and login["messages"] == 9
    brokers = {b["broker"]: b for b in report["brokers"]}
    assert brokers[AMAZONMQ]["failed"] == 3 and brokers[AMAZONMQ]["in_doubt"] == 1


def test_a_removed_confirmation_breaks_the_promise_and_names_the_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect()
    cut, mirror = p.send(s, "cutover"), p.send(s, "mirror")
    p.confirmed(s, cut, AMAZONMQ)
    p.confirmed(s, mirror, LEGACY)
    p.confirmed(s, mirror, AMAZONMQ, "mirror")
    p.disconnect(s)
    p.stop()
    whole = p.write(tmp_path / "whole.jsonl")
    assert audit(capsys, whole)[0] == 0
    for removed, trace in ((cut, cut), (mirror, mirror)):
        lines = [
            line
            for line in whole.read_bytes().splitlines(keepends=True)
            if not (
                b'"message_confirmed"' in line and removed.encode() in line and b"amazonmq" in line
            )
        ]
        broken = tmp_path / "broken.jsonl"
        broken.write_bytes(b"".join(lines))
        code, out, _ = text(capsys, broken)
        assert code == 1
        assert trace in out and "the promise is BROKEN" in out


def test_a_second_confirmation_breaks_the_promise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect()
    trace = p.send(s, "cutover")
    p.confirmed(s, trace, AMAZONMQ)
    p.confirmed(s, trace, AMAZONMQ)
    p.disconnect(s)
    p.stop()
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 1
    [violation] = report["violations"]["listed"]
    assert violation["trace_id"] == trace
    assert "after the message had settled" in violation["problem"]
    assert violation["at"].endswith("facts.jsonl:6")


def test_confirmed_by_a_broker_it_was_not_routed_to_is_a_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect()
    trace = p.send(s, "split", split_to=LEGACY)
    p.confirmed(s, trace, AMAZONMQ)
    p.disconnect(s)
    p.stop()
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 1
    problems = [v["problem"] for v in report["violations"]["listed"]]
    assert any("not waiting for" in problem for problem in problems), problems


def test_a_killed_proxy_leaves_its_in_flight_messages_unresolved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect("producer-b")
    done = p.send(s, "cutover")
    p.confirmed(s, done, AMAZONMQ)
    in_flight = p.send(s, "cutover")
    mirror = p.send(s, "mirror")
    p.confirmed(s, mirror, LEGACY)  # the copy to Amazon MQ was still in memory
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 0  # a crash is not a broken promise: what it lost is listed
    unresolved = {m["trace_id"]: m for m in report["unresolved"]["messages"]}
    assert set(unresolved) == {in_flight, mirror}
    assert unresolved[in_flight]["session"] == "s1"
    assert unresolved[in_flight]["login"] == "producer-b"
    assert unresolved[in_flight]["waiting_for"] == [AMAZONMQ]
    assert unresolved[mirror]["waiting_for"] == ["amazonmq (mirror)"]
    assert route(report, "mirror")["mirror_lost"] == 1
    assert route(report, "mirror")["unresolved"] == 1  # a leg left open: unresolved
    assert route(report, "cutover")["unresolved"] == 1
    assert route(report, "cutover")["confirmed"] == 1
    code, out, _ = text(capsys, tmp_path / "facts.jsonl")
    assert "Lost with the proxy" in out and in_flight in out


def test_a_restarted_proxy_reuses_session_ids_without_mixing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect("first")
    lost = p.send(s, "cutover")
    p.start()  # killed and restarted: the same file goes on, session ids from s1 again
    p.sessions = itertools.count(1)
    s2 = p.connect("second")
    ok = p.send(s2, "legacy")
    p.confirmed(s2, ok, LEGACY)
    p.disconnect(s2)
    p.stop()
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 0
    assert [m["trace_id"] for m in report["unresolved"]["messages"]] == [lost]
    assert report["unresolved"]["messages"][0]["login"] == "first"
    assert report["input"]["instances"] == 2


def test_session_end_rules_for_legacy_receipts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    closed_session, disconnecting = p.connect(), p.connect()
    closed = p.send(closed_session, "legacy")
    missing = p.send(disconnecting, "legacy")
    p.disconnect(closed_session, "legacy closed the connection")
    p.disconnect(disconnecting, "client DISCONNECT")
    p.stop()
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 1
    assert route(report, "default")["closed"] == 2
    [violation] = report["violations"]["listed"]
    assert violation["trace_id"] == missing and "DISCONNECT" in violation["problem"]
    assert closed not in json.dumps(report["violations"])


def test_transactions_settle_when_they_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect()
    aborted = p.send(s, "cutover", transaction="tx1")
    p.confirmed(s, aborted, AMAZONMQ)
    p.emit("transaction_aborted", session=s, transaction="tx1", traces=[aborted])
    lost_part = p.send(s, "cutover", transaction="tx2")
    p.confirmed(s, lost_part, AMAZONMQ)  # confirmed inside the transaction ...
    p.fell_back(s, lost_part, receipt=False)  # ... then Amazon MQ lost its part
    p.disconnect(s)
    p.stop()
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 0, report["violations"]
    assert route(report, "cutover")["aborted"] == 1
    assert route(report, "cutover")["fell_back"] == 1


def test_a_partial_commit_leaves_legacy_s_part_nowhere_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Amazon MQ committed its part of a transaction, legacy never committed its own
    (``transaction_partial_commit``): the facts explain it, so the promise holds, and the
    report counts legacy's message as on no broker, marked partial."""
    p = Proxy().start()
    s = p.connect()
    moved = p.send(s, "cutover", transaction="tx3")
    stayed = p.send(s, "legacy", transaction="tx3", receipt=False)
    p.confirmed(s, moved, AMAZONMQ)
    p.emit(
        "transaction_partial_commit",
        session=s,
        transaction="tx3",
        committed=[AMAZONMQ],
        failed=[LEGACY],
        reason="session closed before the COMMIT reached legacy",
    )
    p.disconnect(s)
    p.stop()
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 0, report["violations"]
    assert route(report, "cutover")["on_amazonmq"] == 1
    assert route(report, "cutover")["partial_commit"] == 1
    legacy_part = route(report, "default")
    assert legacy_part["partial_commit"] == 1 and legacy_part["on_none"] == 1
    assert legacy_part["on_legacy"] == 0
    code, journey, _err = text(capsys, "--trace", stayed, tmp_path / "facts.jsonl")
    assert code == 0 and "committed on amazonmq only" in journey, journey
    assert "held on none" in journey, journey


def test_resent_frames_are_in_doubt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = Proxy().start()
    s = p.connect()
    trace = p.send(s, "cutover")
    p.resent(s, trace)
    p.confirmed(s, trace, AMAZONMQ)
    p.disconnect(s)
    p.stop()
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 0
    assert report["in_doubt"]["messages"][0]["resent"] == 1


def test_an_outcome_without_its_routed_fact_is_a_violation_unless_facts_were_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect()
    p.confirmed(s, f"{p.prefix}000000ff", AMAZONMQ)
    p.disconnect(s)
    p.stop()
    path = p.write(tmp_path / "facts.jsonl")
    code, report = audit(capsys, path)
    assert code == 1 and "no message_routed" in report["violations"]["listed"][0]["problem"]
    p.emit("facts_dropped", count=3)
    code, report = audit(capsys, p.write(path))
    assert code == 0 and len(report["unjudged"]) == 1


def test_rotated_and_gzip_files_in_any_order_are_one_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect()
    traces = [p.send(s, "cutover") for _ in range(6)]
    older = Proxy()
    older.facts = p.facts
    for trace in traces:
        p.confirmed(s, trace, AMAZONMQ)
    p.disconnect(s)
    p.stop()
    facts = p.facts
    # facts.jsonl.2.gz (oldest), facts.jsonl.1, facts.jsonl (newest), given newest first
    parts = [facts[:5], facts[5:10], facts[10:]]
    paths = []
    for part, name, gz in zip(
        parts,
        ("facts.jsonl.2.gz", "facts.jsonl.1", "facts.jsonl"),
        (True, False, False),
        strict=True,
    ):
        older.facts = part
        paths.append(older.write(tmp_path / name, gz=gz))
    code, report = audit(capsys, *reversed(paths), paths[0])  # one named twice: read once
    assert code == 0, report["violations"]
    assert report["messages"] == 6 and route(report, "cutover")["confirmed"] == 6
    assert report["input"]["replicas"] == 1 and len(report["input"]["files"]) == 3


def test_stdin_with_kubectl_prefixes_carries_a_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = []
    for pod in ("a", "b"):
        p = Proxy().start()
        s = p.connect(f"login-{pod}")  # both pods have a session s1
        trace = p.send(s, "cutover")
        if pod == "a":
            p.confirmed(s, trace, AMAZONMQ)
            p.disconnect(s)
            p.stop()
        pods.append((pod, p.lines(), trace))
    merged = []
    for index in range(max(len(lines) for _, lines, _ in pods)):  # interleaved, as logs are
        for pod, lines, _ in pods:
            if index < len(lines):
                merged.append(f"[pod/strangler-{pod}/proxy] ".encode() + lines[index])
    merged.insert(1, b"strangler: listening on 127.0.0.1:61613\n")
    args = _args(["-"], json_out=True)
    code = run_audit(args, stdin=io.BytesIO(b"".join(merged)))
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [m["trace_id"] for m in report["unresolved"]["messages"]] == [pods[1][2]]
    assert report["unresolved"]["messages"][0]["login"] == "login-b"
    assert report["input"]["replicas"] == 2 and report["input"]["text_lines_skipped"] == 1


def test_gzip_on_stdin_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    p = Proxy().start()
    s = p.connect()
    trace = p.send(s, "cutover")
    p.confirmed(s, trace, AMAZONMQ)
    p.disconnect(s)
    p.stop()
    piped = io.BytesIO(gzip.compress(b"".join(p.lines())))
    assert run_audit(_args(["-"], json_out=True), stdin=piped) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 1


def _args(files: list[str], *, json_out: bool = False, trace: str | None = None) -> Any:
    from strangler.cli import build_parser

    argv = ["audit", "--no-progress", *files]
    if json_out:
        argv.append("--json")
    if trace:
        argv += ["--trace", trace]
    return build_parser().parse_args(argv)


def test_unreadable_input_exits_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    lines = p.lines()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(lines[0] + b'{"event": "message_routed", "ts": \n' + lines[1])
    code, _, err = text(capsys, bad)
    assert code == 2 and f"{bad}:2" in err
    no_event = tmp_path / "no-event.jsonl"
    no_event.write_bytes(lines[0] + b'{"ts": "x"}\n')
    code, _, err = text(capsys, no_event)
    assert code == 2 and f"{no_event}:2" in err
    code, _, err = text(capsys, tmp_path / "missing.jsonl")
    assert code == 2 and "missing.jsonl" in err
    s = p.connect()
    p.send(s, "cutover")
    del p.facts[-1]["targets"]
    code, _, err = text(capsys, p.write(tmp_path / "no-targets.jsonl"))
    assert code == 2 and "no-targets.jsonl:4: message_routed without a usable 'targets'" in err


def test_a_last_line_cut_short_by_a_crash_is_a_note_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect()
    p.send(s, "cutover")
    path = tmp_path / "facts.jsonl"
    path.write_bytes(b"".join(p.lines()) + b'{"event":"message_confirmed","ts":"2025-')
    code, out, _ = text(capsys, path)
    assert code == 0 and f"{path}:5: the last line was cut short" in out


def test_filters_select_messages_by_route_and_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Proxy().start()
    s = p.connect()
    early = p.send(s, "cutover", ts="2025-03-01T21:00:00.000000+00:00")
    late = p.send(s, "mirror", ts="2025-03-01T23:00:00.000000+00:00")
    p.confirmed(s, early, AMAZONMQ)
    p.disconnect(s)  # the mirror message broke the promise (no outcomes)
    p.stop()
    path = p.write(tmp_path / "facts.jsonl")
    assert audit(capsys, path)[0] == 1
    code, report = audit(capsys, path, "--route", "cutover")
    assert code == 0 and report["messages"] == 1
    code, report = audit(capsys, path, "--until", "2025-03-01T22:00:00Z")
    assert code == 0 and report["messages"] == 1
    code, report = audit(capsys, path, "--since", "2025-03-01T22:00")
    assert code == 1 and report["violations"]["listed"][0]["trace_id"] == late


def test_routes_versions_in_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = Proxy(version="first0000000")
    p.emit("routes_loaded", routes_version="first0000000", ts="2025-03-01T22:00:00.000000+00:00")
    p.emit("proxy_started", routes_version="first0000000", ts="2025-03-01T22:00:00.100000+00:00")
    p.emit(
        "routes_applied",
        routes_version="second000000",
        previous_version="first0000000",
        ts="2025-03-01T22:10:00.000000+00:00",
    )
    p.emit("proxy_stopped", ts="2025-03-01T22:30:00.000000+00:00")
    code, report = audit(capsys, p.write(tmp_path / "facts.jsonl"))
    assert code == 0
    windows = {w["routes_version"]: w for w in report["routes_versions"]}
    assert windows["first0000000"]["replica_seconds"] == 600.0
    assert windows["second000000"]["since"] == "2025-03-01T22:10:00.000000+00:00"
    assert windows["second000000"]["until"] == "2025-03-01T22:30:00.000000+00:00"


def test_trace_follows_a_producer_id_across_replicas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = Proxy().start(), Proxy().start()
    s = first.connect()
    lost = first.send(s, "cutover", producer_trace_id="order-42")  # proxy killed
    s2 = second.connect()
    resent = second.send(
        s2,
        "cutover",
        producer_trace_id="order-42",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    second.confirmed(s2, resent, AMAZONMQ)
    second.disconnect(s2)
    second.stop()
    paths = [first.write(tmp_path / "a.jsonl"), second.write(tmp_path / "b.jsonl")]
    code, out, _ = text(capsys, *paths, "--trace", "order-42")
    assert code == 0
    assert lost in out and resent in out
    assert "unresolved: lost with the proxy" in out and "confirmed by amazonmq" in out
    code, report = audit(capsys, *paths, "--trace", "4bf92f3577b34da6a3ce929d0e0e4736")
    assert [m["trace_id"] for m in report["messages"]] == [resent]
    assert any(f.get("traceparent") for f in report["facts"])
    code, out, _ = text(capsys, *paths, "--trace", "nothing-like-it")
    assert code == 1 and "no fact names" in out


def test_settled_ids_remember_what_they_were_given_in_little_memory() -> None:
    ids = SettledIds()
    prefix = "0123456789abcdef"
    assert not ids.routed(f"{prefix}00000001")
    for n in range(1, 50_001):
        ids.add(f"{prefix}{n:08x}")
    assert ids.held == 0  # in order: only the watermark
    assert f"{prefix}{50_000:08x}" in ids and f"{prefix}{50_001:08x}" not in ids
    ids.add(f"{prefix}{50_003:08x}")
    assert f"{prefix}{50_003:08x}" in ids and f"{prefix}{50_002:08x}" not in ids
    assert ids.held == 1
    for n in range(50_010, 50_010 + MAX_ABOVE + 2):  # a gap that never fills
        ids.add(f"{prefix}{n:08x}")
    assert ids.held <= MAX_ABOVE
    ids.add("producer-own-id")
    assert "producer-own-id" in ids and "another" not in ids


def test_a_long_input_shows_a_progress_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strangler.ledger import FactReader, Ledger, streams

    p = Proxy().start()
    s = p.connect()
    for _ in range(9_000):  # 2 facts each: past the 16,384 lines between looks at the clock
        trace = p.send(s, "cutover")
        p.confirmed(s, trace, AMAZONMQ)
    path = p.write(tmp_path / "facts.jsonl")
    clock = itertools.count(0, 5)  # every look at the clock: five more seconds
    monkeypatch.setattr(streams, "time", _FakeTime(clock))
    progress = io.StringIO()
    reader = FactReader([str(path)], progress=progress)
    ledger = Ledger()
    reader.read(ledger)
    lines = progress.getvalue().splitlines()
    assert lines and lines[0].startswith("audit: ") and "facts/s" in lines[0]
    assert "18,003 facts" in lines[-1]  # the last line gives the total
    assert ledger.close().messages == 9_000


class _FakeTime:
    """``time`` for the reader's progress line: its clock moves only when looked at."""

    def __init__(self, clock: Iterator[int]) -> None:
        self._clock = clock

    def monotonic(self) -> float:
        return float(next(self._clock))
