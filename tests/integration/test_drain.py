"""``strangler drain`` and ``strangler verify`` against the real brokers.

A backlog is put on legacy with a plain stomp.py producer; the drain moves it to Amazon MQ
through the route's destination; the queues are then read back to check that every
message is on Amazon MQ exactly once (by trace id), except the duplicates the drain
reported after a crash, and that legacy is empty.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from stomp.utils import Frame as StompFrame

from strangler.cli import main

from .brokers import BrokerInfo, free_port
from .conftest import ProxyFactory
from .harness import WAIT, connect, connect_broker, drain, routes_yaml, unique_queue

pytestmark = pytest.mark.integration

TRACE = "strangler-trace-id"
IDLE = "0.3"  # seconds without a delivery before a drain checks legacy is empty


@pytest.fixture(autouse=True)
def _legacy_login(legacy: BrokerInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_LEGACY_LOGIN", legacy.username)
    monkeypatch.setenv("STRANGLER_LEGACY_PASSCODE", legacy.password)


def cutover_routes(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, dest: str, renamed: str
) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(
        routes_yaml(
            legacy,
            amazonmq,
            f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover,"
            f" on_failure: legacy, target_destination: '{renamed}'}}\n",
        )
    )
    return path


def backlog(legacy: BrokerInfo, dest: str, count: int, *, untraced: int = 0) -> list[str]:
    """``count`` persistent messages on legacy (the first ``untraced`` without a trace id).

    Returns the trace ids set; every message has an ``x-n`` header with its number.
    """
    client = connect_broker(legacy)
    traces = []
    try:
        for n in range(count):
            headers = {"x-n": str(n), "persistent": "true", "priority": str(n % 10)}
            if n >= untraced:
                headers[TRACE] = f"t-{dest.rsplit('.', 1)[-1]}-{n}"
                traces.append(headers[TRACE])
            client.send(dest, f"body {n}".encode(), headers=headers)
        assert client.wait_receipts(client.sent), "backlog not confirmed by legacy"
    finally:
        client.close()
    return traces


def facts(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [f for f in lines if event is None or f["event"] == event]


def run(*argv: str) -> int:
    return main(list(argv))


def drain_args(dest: str, routes: Path, tmp_path: Path, *extra: str) -> list[str]:
    """``strangler drain`` with this test's routes, facts.jsonl and journal.json."""
    return [
        "drain",
        dest,
        "--routes",
        str(routes),
        "--facts",
        str(tmp_path / "facts.jsonl"),
        "--journal",
        str(tmp_path / "journal.json"),
        "--idle",
        IDLE,
        *extra,
    ]


def start_drain(args: list[str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "strangler", *args, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_moved(out: Path, count: int) -> None:
    """Until another process's drain wrote ``count`` drain_message_moved facts."""
    deadline = time.monotonic() + WAIT
    while len(facts(out, "drain_message_moved")) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def by_trace(messages: list[StompFrame]) -> Counter[str]:
    return Counter(m.headers[TRACE] for m in messages)


def test_drain_moves_the_backlog_once_keeping_headers_and_counts_match(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = unique_queue("drain")
    renamed = dest + ".v2"
    routes = cutover_routes(tmp_path, legacy, amazonmq, dest, renamed)
    traces = backlog(legacy, dest, 60, untraced=10)
    out, journal = tmp_path / "facts.jsonl", tmp_path / "journal.json"
    args = drain_args(dest, routes, tmp_path)

    # --dry-run: the backlog is reported, nothing moves.
    assert run(*args, "--dry-run") == 0
    (planned,) = facts(out, "drain_planned")
    assert planned["backlog"] == 60 and planned["without_trace_id"] == 10
    assert planned["amazonmq_destination"] == renamed and planned["already_on_amazonmq"] == 0
    assert "would move: 60 messages; nothing was moved" in capsys.readouterr().err
    assert not journal.exists()

    assert run(*args) == 0
    (started,) = facts(out, "drain_started")
    assert started["backlog"] == 60 and started["duplicate_bound"] == 100
    (finished,) = facts(out, "drain_finished")
    assert finished["stopped"] == "empty" and finished["counts_match"] is True
    assert finished["consumed"] == finished["confirmed"] == finished["moved"] == 60
    assert finished["legacy_remaining"] == 0 and finished["possible_duplicates"] == 0
    err = capsys.readouterr().err
    assert "consumed 60 = confirmed by Amazon MQ 60 = acknowledged on legacy 60: ok" in err
    assert "result: complete" in err

    moved = {f["trace_id"]: f for f in facts(out, "drain_message_moved")}
    on_amazonmq = drain(amazonmq, renamed)
    assert drain(legacy, dest) == [] and drain(amazonmq, dest) == []
    assert by_trace(on_amazonmq) == Counter(list(moved))  # each moved message once, no other
    assert set(traces) <= set(moved) and len(moved) == 60
    for message in on_amazonmq:
        n = int(message.headers["x-n"])
        assert message.body == f"body {n}".encode()
        assert message.headers["priority"] == str(n % 10)
        assert message.headers["persistent"] == "true"
        if n < 10:  # no trace id on legacy: its legacy message-id became one
            assert message.headers[TRACE] == moved[message.headers[TRACE]]["message_id"]
            assert message.headers[TRACE].startswith("ID:")
    # Drained twice: nothing left to do, and that is a success.
    assert run(*args) == 0
    assert facts(out, "drain_finished")[-1]["moved"] == 0


def test_max_and_rate_limit_then_a_rerun_finishes(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("drain-max")
    routes = cutover_routes(tmp_path, legacy, amazonmq, dest, dest)
    traces = backlog(legacy, dest, 30)
    out = tmp_path / "facts.jsonl"
    args = drain_args(dest, routes, tmp_path)

    assert run(*args, "--max", "12", "--rate", "40") == 0
    first = facts(out, "drain_finished")[-1]
    assert first["stopped"] == "max" and first["moved"] == first["consumed"] == 12
    assert first["legacy_remaining"] == 18
    # 40 msg/s: the 12th message cannot leave before 11/40 s (a lower bound: not flaky).
    assert first["moving_s"] >= 11 / 40

    assert run(*args) == 0
    second = facts(out, "drain_finished")[-1]
    assert second["stopped"] == "empty" and second["moved"] == 18
    assert by_trace(drain(amazonmq, dest)) == Counter(traces)
    assert drain(legacy, dest) == []


CRASH_BETWEEN_RECEIPT_AND_ACK = """
import os, signal, sys
from strangler.cli import main
from strangler.drain import mover

confirmed = 0
ack = mover.Drain._ack

def crash_before_the_ack(self, message):
    global confirmed
    confirmed += 1
    if confirmed > int(os.environ["CRASH_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)  # Amazon MQ confirmed; legacy never hears of it
    ack(self, message)

mover.Drain._ack = crash_before_the_ack
sys.exit(main(sys.argv[1:]))
"""


def moved_and_reported(out: Path) -> tuple[set[str], set[str]]:
    reported = {f["trace_id"] for f in facts(out, "drain_duplicate_possible")}
    return {f["trace_id"] for f in facts(out, "drain_message_moved")}, reported


def check_every_message_once_but_reported(
    amazonmq: BrokerInfo, renamed: str, traces: list[str], reported: set[str]
) -> Counter[str]:
    copies = by_trace(drain(amazonmq, renamed))
    assert set(copies) == set(traces), "a message is missing on Amazon MQ (or one too many)"
    duplicated = {trace for trace, n in copies.items() if n > 1}
    assert duplicated <= reported, f"unreported duplicates: {duplicated - reported}"
    return copies


def test_a_crash_between_receipt_and_ack_duplicates_only_what_the_rerun_reports(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = unique_queue("drain-crash")
    renamed = dest + ".v2"
    routes = cutover_routes(tmp_path, legacy, amazonmq, dest, renamed)
    traces = backlog(legacy, dest, 40)
    out, journal = tmp_path / "facts.jsonl", tmp_path / "journal.json"
    args = drain_args(dest, routes, tmp_path, "--prefetch", "8")
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_BETWEEN_RECEIPT_AND_ACK, *args],
        env={**os.environ, "CRASH_AFTER": "15"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    suspects = json.loads(journal.read_text())["suspects"]
    assert 1 <= len(suspects) <= 8  # the prefetch bounds what was in flight
    assert not facts(out, "drain_finished")

    assert run(*args) == 0
    finished = facts(out, "drain_finished")[-1]
    assert finished["counts_match"] and finished["legacy_remaining"] == 0
    moved, reported = moved_and_reported(out)
    # A killed process loses the facts its writer thread had not written yet (< 0.1 s).
    assert set(traces) - set(finished["unseen_suspects"]) - moved <= set(traces[:16])
    # The 16th message reached Amazon MQ and was never acknowledged: moved again, reported.
    assert (
        reported and reported <= set(suspects) and finished["possible_duplicates"] == len(reported)
    )
    copies = check_every_message_once_but_reported(amazonmq, renamed, traces, reported)
    assert any(n == 2 for n in copies.values())
    assert drain(legacy, dest) == []
    assert json.loads(journal.read_text())["suspects"] == []
    assert "possible duplicates on Amazon MQ: " in capsys.readouterr().err


def test_a_killed_drain_resumes_and_its_rate_limit_held(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("drain-kill")
    routes = cutover_routes(tmp_path, legacy, amazonmq, dest, dest)
    traces = backlog(legacy, dest, 40)
    out = tmp_path / "facts.jsonl"
    args = drain_args(dest, routes, tmp_path, "--prefetch", "5")
    process = start_drain(args, "--rate", "20")
    try:
        wait_moved(out, 6)
        started = facts(out, "drain_started")[0]["ts"]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    killed_at = time.time()
    moved_before = len(facts(out, "drain_message_moved"))
    assert 6 <= moved_before < 40
    # At most 20 msg/s (+1: the first leaves at once) since the drain started.
    since = killed_at - datetime.fromisoformat(started).timestamp()
    assert moved_before <= 20 * since + 1

    assert run(*args) == 0
    finished = facts(out, "drain_finished")[-1]
    assert finished["stopped"] == "empty" and finished["counts_match"]
    moved, reported = moved_and_reported(out)
    assert moved <= set(traces) and len(reported) <= 5
    check_every_message_once_but_reported(amazonmq, dest, traces, reported)
    assert drain(legacy, dest) == []


def test_sigterm_finishes_what_is_in_flight_so_a_rerun_duplicates_nothing(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("drain-term")
    routes = cutover_routes(tmp_path, legacy, amazonmq, dest, dest)
    traces = backlog(legacy, dest, 30)
    out, journal = tmp_path / "facts.jsonl", tmp_path / "journal.json"
    args = drain_args(dest, routes, tmp_path)
    process = start_drain(args, "--rate", "30")
    try:
        wait_moved(out, 5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
    stopped = facts(out, "drain_finished")[-1]
    assert stopped["stopped"] == "interrupted" and stopped["counts_match"]
    assert 5 <= stopped["moved"] < 30 and stopped["legacy_remaining"] == 30 - stopped["moved"]
    assert json.loads(journal.read_text())["suspects"] == []

    assert run(*args) == 0
    finished = facts(out, "drain_finished")[-1]
    assert finished["moved"] == 30 - stopped["moved"] and finished["possible_duplicates"] == 0
    assert by_trace(drain(amazonmq, dest)) == Counter(traces)


def test_a_drain_does_not_take_messages_another_consumer_holds(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = unique_queue("drain-held")
    routes = cutover_routes(tmp_path, legacy, amazonmq, dest, dest)
    traces = backlog(legacy, dest, 10)
    holder = connect_broker(legacy)  # a legacy consumer that takes 3 and never acknowledges
    holder.conn.subscribe(
        dest, id="holder", ack="client-individual", headers={"activemq.prefetchSize": "3"}
    )
    assert holder.recorder.wait(lambda: len(holder.recorder.messages) == 3)
    out = tmp_path / "facts.jsonl"
    args = drain_args(dest, routes, tmp_path)
    try:
        assert run(*args) == 1
        finished = facts(out, "drain_finished")[-1]
        assert finished["stopped"] == "not_empty" and finished["moved"] == 7
        assert finished["legacy_remaining"] == 3 and finished["counts_match"]
        assert "another consumer" in capsys.readouterr().err
    finally:
        holder.close()  # its 3 go back to the queue
    assert run(*args) == 0
    assert by_trace(drain(amazonmq, dest)) == Counter(traces)


def test_an_unreachable_amazonmq_leaves_legacy_untouched(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = unique_queue("drain-down")
    routes = tmp_path / "routes.yaml"
    route = f"  - {{name: m, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject}}\n"
    routes.write_text(routes_yaml(legacy, amazonmq, route, amazonmq_port=free_port()))
    traces = backlog(legacy, dest, 5)
    out = tmp_path / "facts.jsonl"
    assert run(*drain_args(dest, routes, tmp_path)) == 1
    assert "connection refused" in capsys.readouterr().err.lower()
    assert not facts(out, "drain_message_moved")
    assert by_trace(drain(legacy, dest)) == Counter(traces)


def test_drain_refuses_a_mirror_route_and_a_missing_passcode(
    tmp_path: Path,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = unique_queue("drain-refused")
    routes = tmp_path / "routes.yaml"
    route = f"  - {{name: m, match: {{exact: '{dest}'}}, mode: mirror}}\n"
    routes.write_text(routes_yaml(legacy, amazonmq, route))
    assert run("drain", dest, "--routes", str(routes)) == 2
    assert "make the route a cutover" in capsys.readouterr().err
    routes.write_text(routes.read_text().replace("mirror", "cutover, on_failure: legacy"))
    monkeypatch.delenv("STRANGLER_LEGACY_PASSCODE")
    assert run("drain", dest, "--routes", str(routes)) == 2
    assert "has no passcode" in capsys.readouterr().err


def test_a_login_legacy_refuses_is_a_configuration_error_naming_the_variables(
    tmp_path: Path,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = unique_queue("drain-login")
    routes = cutover_routes(tmp_path, legacy, amazonmq, dest, dest)
    traces = backlog(legacy, dest, 2)
    monkeypatch.delenv("STRANGLER_LEGACY_LOGIN")
    monkeypatch.delenv("STRANGLER_LEGACY_PASSCODE")
    mirrored = tmp_path / "mirror.yaml"
    mirrored.write_text(
        routes_yaml(
            legacy, amazonmq, f"  - {{name: m, match: {{exact: '{dest}'}}, mode: mirror}}\n"
        )
    )
    verify = ["verify", dest, "--routes", str(mirrored)]
    for command in (drain_args(dest, routes, tmp_path), verify):
        assert run(*command) == 2  # not 1: nothing was tried, the configuration is wrong
        err = capsys.readouterr().err
        assert "legacy refused a connection without login" in err
        assert "STRANGLER_LEGACY_LOGIN" in err and "STRANGLER_LEGACY_PASSCODE" in err
    monkeypatch.setenv("STRANGLER_LEGACY_LOGIN", legacy.username)
    monkeypatch.setenv("STRANGLER_LEGACY_PASSCODE", "not-the-passcode")
    assert run(*drain_args(dest, routes, tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"legacy refused the login {legacy.username!r}" in err
    assert "not-the-passcode" not in err
    assert by_trace(drain(legacy, dest)) == Counter(traces)


def test_verify_reports_missing_extra_and_duplicated_trace_ids(
    tmp_path: Path,
    make_proxy: ProxyFactory,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = unique_queue("verify")
    shadow = dest + ".strangler-mirror"
    proxy = make_proxy(
        f"  - {{name: shadowed, match: {{exact: '{dest}'}}, mode: mirror,"
        f" target_destination: '{shadow}'}}\n"
    )
    routes = tmp_path / "routes0.yaml"  # what make_proxy wrote
    producer = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    sent = [producer.send(dest, f"m{i}") for i in range(12)]
    assert producer.wait_receipts(sent)
    producer.close()
    proxy.wait_fact("message_confirmed", 12, broker="amazonmq", role="mirror")
    out = tmp_path / "facts.jsonl"
    common = ("--routes", str(routes), "--facts", str(out))

    assert run("verify", dest, *common) == 0
    (matched,) = facts(out, "verify_finished")
    assert matched["legacy_messages"] == matched["amazonmq_messages"] == 12
    assert matched["match"] and matched["missing"] == matched["extra"] == 0
    assert "result: match" in capsys.readouterr().err

    # One side changes: a message only on legacy, one only on Amazon MQ, one twice there.
    existing = next(iter(proxy.facts("message_routed", destination=dest)))["trace_id"]
    direct_legacy, direct_amazonmq = connect_broker(legacy), connect_broker(amazonmq)
    direct_legacy.send(dest, "only on legacy", headers={TRACE: "only-legacy"})
    direct_amazonmq.send(shadow, "only on amazonmq", headers={TRACE: "only-amazonmq"})
    direct_amazonmq.send(shadow, "again", headers={TRACE: existing})
    assert direct_legacy.wait_receipts(direct_legacy.sent)
    assert direct_amazonmq.wait_receipts(direct_amazonmq.sent)
    direct_legacy.close()
    direct_amazonmq.close()

    assert run("verify", dest, *common) == 1
    differ = facts(out, "verify_finished")[-1]
    assert differ["missing_trace_ids"] == ["only-legacy"]
    assert differ["extra_trace_ids"] == ["only-amazonmq"]
    assert differ["duplicated_trace_ids"] == [existing]
    assert (differ["legacy_messages"], differ["amazonmq_messages"]) == (13, 14)
    err = capsys.readouterr().err
    assert "missing on amazonmq: 1  (only-legacy)" in err and "result: MISMATCH" in err
    # Verify consumed nothing.
    assert len(drain(legacy, dest)) == 13 and len(drain(amazonmq, shadow)) == 14

    # With only extra messages left, --allow-extra passes.
    extra_only = connect_broker(amazonmq)
    extra_only.send(shadow, "consumed on legacy already", headers={TRACE: "gone"})
    assert extra_only.wait_receipts(extra_only.sent)
    extra_only.close()
    assert run("verify", dest, *common) == 1
    assert run("verify", dest, *common, "--allow-extra") == 0
    assert facts(out, "verify_finished")[-1]["extra_trace_ids"] == ["gone"]
