"""Capture through the live proxy, replay --dry-run against its facts, then a real replay.

The real replay is interrupted half-way (``--limit``) and resumed from its state file;
every message must then be on exactly the broker (and queue) the routes chose, once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from strangler.cli import main
from strangler.replay.capture import FlowCapture
from strangler.replay.report import decide_message, targets_label
from strangler.replay.sources import MessageSource
from strangler.routes import load_routes

from .brokers import BrokerInfo, free_port
from .conftest import ProxyFactory
from .harness import connect, drain, routes_yaml, unique_queue

pytestmark = pytest.mark.integration

TRACE = "strangler-trace-id"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out: dict[str, Any] = json.loads(captured.out)
    return out


def route_counts(report: dict[str, Any]) -> dict[str, Counter[str]]:
    return {
        row["rule"]: Counter({k: row[k] for k in ("legacy", "amazonmq", "both") if row[k]})
        for row in report["by_route"]
        if row["total"]
    }


def test_capture_dry_run_and_resumable_replay(
    make_proxy: ProxyFactory,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    q = {
        name: unique_queue(f"replay-{name}")
        for name in ("mirror", "sticky", "traced", "cutover", "renamed", "pinned", "other")
    }
    proxy = make_proxy(
        f"  - {{name: mirrored, match: {{exact: '{q['mirror']}'}}, mode: mirror}}\n"
        f"  - {{name: grouped, match: {{exact: '{q['sticky']}'}}, mode: split, weight: 50,"
        " sticky_header: customer-id, on_failure: legacy}\n"
        f"  - {{name: traced, match: {{exact: '{q['traced']}'}}, mode: split, weight: 50,"
        " on_failure: legacy}\n"
        f"  - {{name: moved, match: {{exact: '{q['cutover']}'}}, mode: cutover,"
        f" on_failure: reject, target_destination: '{q['renamed']}'}}\n"
        f"  - {{name: pinned, match: {{exact: '{q['pinned']}'}}, mode: legacy}}\n"
    )
    routes_file = str(tmp_path / "routes0.yaml")  # what make_proxy wrote
    flows = tmp_path / "live.flows"
    # Passcodes kept (`--capture-passcodes`): the replay below logs in to legacy as the
    # captured producer did.
    tap = FlowCapture(flows, server=(legacy.host, legacy.port), keep_passcodes=True)
    proxy.server.ctx.tap = tap  # before any client connects

    # Two producer connections (STOMP 1.2 and 1.1), receipts on every SEND.
    sent = 0
    for version in ("1.2", "1.1"):
        client = connect(proxy.host, proxy.port, legacy.username, legacy.password, version=version)
        receipts = []
        for i in range(12):
            receipts.append(client.send(q["mirror"], f"mirror {version} {i}"))
            receipts.append(client.send(q["sticky"], f"s{i}", headers={"customer-id": f"c{i % 5}"}))
            receipts.append(
                client.send(q["traced"], f"t{i}", headers={TRACE: f"trace-{version}-{i}"})
            )
            receipts.append(client.send(q["cutover"], f"c{i}"))
            receipts.append(client.send(q["pinned"], f"p{i}"))
            receipts.append(client.send(q["other"], f"o{i}"))
            sent += 6
        assert client.wait_receipts(receipts)
        assert not client.recorder.errors
        client.close()
    # Each session's flow is handed to the writer when the proxy closes the session.
    assert len(proxy.wait_fact("client_disconnected", 2)) == 2
    stats = tap.close()
    assert stats.flows_written == 2 and stats.dropped_bytes == 0

    # -- replay --dry-run of the capture: the live facts' counts, route by route ---------
    live: dict[str, Counter[str]] = {}
    for fact in proxy.facts("message_routed"):
        live.setdefault(fact["rule"], Counter())[targets_label(fact["targets"])] += 1
    report = run_json(capsys, "replay", str(flows), "--routes", routes_file, "--dry-run", "--json")
    assert report["messages"] == sent
    assert route_counts(report) == live
    assert live["traced"]["legacy"] and live["traced"]["amazonmq"]  # both halves exercised

    # The facts file gives the same report except where a sticky value decided (facts
    # hold none: their trace id is the key there).
    from_facts = run_json(
        capsys, "replay", str(proxy.facts_path), "--routes", routes_file, "--dry-run", "--json"
    )
    expected = {rule: counts for rule, counts in live.items() if rule != "grouped"}
    assert {r: c for r, c in route_counts(from_facts).items() if r != "grouped"} == expected
    assert sum(route_counts(from_facts)["grouped"].values()) == 24

    # -- real replay into empty queues: half, then the rest -------------------------------
    live_counts = {
        name: (len(drain(legacy, dest)), len(drain(amazonmq, dest))) for name, dest in q.items()
    }
    assert live_counts["mirror"] == (24, 24) and live_counts["renamed"] == (0, 24)

    table = load_routes(routes_file)
    expected_on: dict[tuple[str, str], list[str]] = {}
    for message in MessageSource([str(flows)]):
        decision = decide_message(table, message)
        for broker in decision.targets:
            destination = message.destination
            if broker == "amazonmq" and decision.amazonmq_destination:
                destination = decision.amazonmq_destination
            expected_on.setdefault((broker, destination), []).append(message.key(TRACE))

    half = sent // 2
    first = run_json(
        capsys, "replay", str(flows), "--routes", routes_file, "--limit", str(half), "--json"
    )
    assert first["replay"]["confirmed"] == half and not first["replay"]["complete"]
    state = json.loads(Path(f"{flows}.replay-state.json").read_text())
    assert state["confirmed"] == half and state["total"] == sent
    second = run_json(capsys, "replay", str(flows), "--routes", routes_file, "--json")
    assert (
        second["replay"]["confirmed"] == sent and second["replay"]["sent_this_run"] == sent - half
    )
    assert main(["replay", str(flows), "--routes", routes_file]) == 0
    assert "nothing to do" in capsys.readouterr().out

    for name, dest in q.items():
        for broker_name, info in (("legacy", legacy), ("amazonmq", amazonmq)):
            traces = [m.headers[TRACE] for m in drain(info, dest)]
            assert len(traces) == len(set(traces)), f"duplicate on {broker_name} {name}"
            assert traces == expected_on.get((broker_name, dest), []), (broker_name, name)
    # Producer-set trace ids travel unchanged; the others are the stable replay ids.
    assert sorted(
        expected_on.get(("legacy", q["traced"]), [])
        + expected_on.get(("amazonmq", q["traced"]), [])
    ) == sorted(f"trace-{v}-{i}" for v in ("1.2", "1.1") for i in range(12))


def _mitmdump() -> str | None:
    local = Path(sys.executable).parent / "mitmdump"
    return str(local) if local.exists() else shutil.which("mitmdump")


def _wait_listening(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise AssertionError(f"mitmdump did not listen on {port}")


@pytest.mark.skipif(_mitmdump() is None, reason="mitmdump not installed")
def test_a_plain_mitmdump_capture_replays(
    legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = unique_queue("mitmdump")
    port = free_port()
    flows = tmp_path / "mitmdump.flows"
    mitmdump = subprocess.Popen(
        [
            str(_mitmdump()),
            "--mode",
            f"reverse:tcp://{legacy.host}:{legacy.port}@127.0.0.1:{port}",
            "--set",
            f"confdir={tmp_path / 'mitmproxy'}",
            "-w",
            str(flows),
            "-q",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    try:
        _wait_listening(port)
        client = connect("127.0.0.1", port, legacy.username, legacy.password)
        receipts = [client.send(dest, f"m{i}", headers={"customer-id": f"k{i}"}) for i in range(15)]
        assert client.wait_receipts(receipts)
        client.close()
    finally:
        mitmdump.send_signal(signal.SIGINT)  # a clean stop writes the flows
        try:
            mitmdump.wait(timeout=30)
        except subprocess.TimeoutExpired:
            mitmdump.kill()
            mitmdump.wait()
    assert len(drain(legacy, dest)) == 15
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        routes_yaml(
            legacy,
            amazonmq,
            f"  - {{name: half, match: {{exact: '{dest}'}}, mode: split, weight: 50,"
            " sticky_header: customer-id, on_failure: legacy}\n",
        )
    )
    report = run_json(capsys, "replay", str(flows), "--routes", str(routes), "--dry-run", "--json")
    assert report["messages"] == 15 and report["source"]["sessions"] >= 1
    (row,) = [r for r in report["by_route"] if r["rule"] == "half"]
    assert row["total"] == 15 and row["legacy"] and row["amazonmq"]
    assert not report["source"]["errors"]


def test_replay_keyed_by_the_live_trace_ids_agrees_with_every_live_decision(
    make_proxy: ProxyFactory,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every mode, split without a sticky header included, producers sending no trace id
    (so the live proxy made one at random): replayed under the facts' trace ids, 100%."""
    q = {
        name: unique_queue(f"keyed-{name}")
        for name in ("legacy", "mirror", "sticky", "keyless", "cutover", "dry", "other")
    }
    proxy = make_proxy(
        f"  - {{name: pinned, match: {{exact: '{q['legacy']}'}}, mode: legacy}}\n"
        f"  - {{name: mirrored, match: {{exact: '{q['mirror']}'}}, mode: mirror}}\n"
        f"  - {{name: grouped, match: {{exact: '{q['sticky']}'}}, mode: split, weight: 50,"
        " sticky_header: customer-id, on_failure: legacy}\n"
        f"  - {{name: keyless, match: {{exact: '{q['keyless']}'}}, mode: split, weight: 50,"
        " on_failure: legacy}\n"
        f"  - {{name: moved, match: {{exact: '{q['cutover']}'}}, mode: cutover,"
        " on_failure: legacy}\n"
        f"  - {{name: rehearsed, match: {{exact: '{q['dry']}'}}, mode: cutover,"
        " on_failure: legacy, dry_run: true}\n"
    )
    routes_file = str(tmp_path / "routes0.yaml")
    flows = tmp_path / "live.flows"
    tap = FlowCapture(flows, server=(legacy.host, legacy.port))
    proxy.server.ctx.tap = tap
    sent = 0
    for version in ("1.2", "1.1"):
        client = connect(proxy.host, proxy.port, legacy.username, legacy.password, version=version)
        receipts = []
        for i in range(20):
            for name, dest in q.items():
                headers = {"customer-id": f"c{i % 7}"} if name == "sticky" else None
                receipts.append(client.send(dest, f"{name} {i}", headers=headers))
                sent += 1
        client.conn.begin(transaction="tx-1")  # SENDs of a transaction come out at COMMIT
        for i in range(3):
            client.send(q["keyless"], f"tx {i}", receipt=False, transaction="tx-1")
            sent += 1
        client.conn.commit(transaction="tx-1")
        assert client.wait_receipts(receipts)
        client.close()
    assert len(proxy.wait_fact("client_disconnected", 2)) == 2
    tap.close()
    live_traces = {f["trace_id"] for f in proxy.facts("message_routed")}
    assert len(live_traces) == sent
    keyless = proxy.facts("message_routed", rule="keyless")
    assert {f["targets"][0] for f in keyless} == {"legacy", "amazonmq"}  # both halves

    report = run_json(
        capsys,
        "replay",
        str(flows),
        "--routes",
        routes_file,
        "--dry-run",
        "--facts",
        str(proxy.facts_path),
        "--json",
    )
    live = report["live"]
    assert live["captured"] == sent and live["joined"] == sent
    assert live["agreed"] == sent and live["agreement_percent"] == 100.0, live["differ_examples"]
    assert report["notes"] == [] or all("stable id" not in n for n in report["notes"])

    # Without the facts, the keyless split is decided by made-up keys: it disagrees.
    loose = run_json(capsys, "replay", str(flows), "--routes", routes_file, "--dry-run", "--json")
    (row,) = [r for r in loose["by_route"] if r["rule"] == "keyless"]
    (live_row,) = [r for r in report["by_route"] if r["rule"] == "keyless"]
    live_split = Counter(f["targets"][0] for f in keyless)
    assert (live_row["legacy"], live_row["amazonmq"]) == (
        live_split["legacy"],
        live_split["amazonmq"],
    )
    assert any("stable id" in note for note in loose["notes"])
    assert row["total"] == live_row["total"]

    # A routes file changed since (the keyless split at 100%): the figure shows it.
    changed = tmp_path / "changed.yaml"
    old_split = f"name: keyless, match: {{exact: '{q['keyless']}'}}, mode: split, weight: 50"
    assert old_split in Path(routes_file).read_text()
    changed.write_text(
        Path(routes_file).read_text().replace(old_split, old_split.replace("50", "100"))
    )
    moved = run_json(
        capsys,
        "replay",
        str(flows),
        "--routes",
        str(changed),
        "--dry-run",
        "--facts",
        str(proxy.facts_path),
        "--json",
    )["live"]
    assert moved["joined"] == sent
    assert moved["agreed"] == sent - live_split["legacy"]
    assert all(d["destination"] == q["keyless"] for d in moved["differ_examples"])
