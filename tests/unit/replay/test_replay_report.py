"""replay --dry-run: every captured SEND decided as the live proxy would, counted and diffed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from replay_fixtures import (
    capture,
    connect,
    connected,
    facts_file,
    frame,
    mitmdump_file,
    producer,
    send,
    write_routes,
)

from strangler.cli import main
from strangler.replay.report import Report, decide_message
from strangler.replay.sources import CapturedMessage, MessageSource
from strangler.routes import decide, load_routes, split_bucket

ROUTES = (
    "  - {name: orders, match: {exact: /queue/orders}, mode: mirror}\n"
    "  - {name: pay, match: {prefix: /queue/pay.}, mode: split, weight: 40,"
    " sticky_header: customer, on_failure: legacy}\n"
    "  - {name: ship, match: {exact: /queue/ship}, mode: split, weight: 50, on_failure: legacy}\n"
    "  - {name: bill, match: {glob: '/queue/bill.*'}, mode: cutover, on_failure: reject,"
    " target_destination: /queue/bill.v2}\n"
    "  - {name: audit, match: {prefix: /topic/audit.}, mode: legacy}\n"
)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(list(argv)) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def by_route(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        row["rule"]: {k: row[k] for k in ("legacy", "amazonmq", "both")}
        for row in report["by_route"]
    }


def sample_capture(path: Path) -> list[bytes]:
    sends = []
    for i in range(40):
        sends.append(send("/queue/orders", f"o{i}".encode()))
        sends.append(send("/queue/pay.eu", b"p", headers=(("customer", f"c{i % 9}"),)))
        sends.append(send("/queue/ship", b"s", headers=(("strangler-trace-id", f"t-{i}"),)))
        sends.append(send("/queue/bill.1", b"b"))
        sends.append(send("/topic/audit.x", b"a"))
        sends.append(send("/queue/elsewhere", b"e"))
    capture(path, [producer(sends[:100]), producer(sends[100:], version="1.1")])
    return sends


def test_dry_run_counts_each_route_as_the_proxy_decides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "capture.flows"
    sample_capture(flows)
    routes = write_routes(tmp_path / "routes.yaml", ROUTES)
    report = run_json(capsys, "replay", str(flows), "--routes", routes, "--dry-run", "--json")

    # Sticky split: decided by the customer header's bucket, whatever the message.
    pay_hits = sum(split_bucket(f"c{i % 9}") < 40 for i in range(40))
    # Unsticky split: decided by the producer's own trace id.
    ship_hits = sum(split_bucket(f"t-{i}") < 50 for i in range(40))
    assert report["messages"] == 240
    assert by_route(report) == {
        "orders": {"legacy": 0, "amazonmq": 0, "both": 40},
        "pay": {"legacy": 40 - pay_hits, "amazonmq": pay_hits, "both": 0},
        "ship": {"legacy": 40 - ship_hits, "amazonmq": ship_hits, "both": 0},
        "bill": {"legacy": 0, "amazonmq": 40, "both": 0},
        "audit": {"legacy": 40, "amazonmq": 0, "both": 0},
        "default": {"legacy": 40, "amazonmq": 0, "both": 0},
    }
    rows = {row["destination"]: row for row in report["by_destination"]}
    assert rows["/queue/bill.1"]["amazonmq_destination"] == "/queue/bill.v2"
    assert rows["/queue/elsewhere"]["rule"] == "default"
    assert report["source"]["sessions"] == 2 and report["source"]["errors"] == []


def test_reports_are_reproducible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "capture.flows"
    # No trace header, no sticky header: the key is derived from flow id and frame index.
    capture(flows, [producer([send("/queue/ship") for _ in range(200)])])
    routes = write_routes(tmp_path / "routes.yaml", ROUTES)
    argv = ("replay", str(flows), "--routes", routes, "--dry-run", "--json")
    first, second = run_json(capsys, *argv), run_json(capsys, *argv)
    assert first == second
    ship = by_route(first)["ship"]
    assert 60 < ship["amazonmq"] < 140  # the stable keys still spread like random ones
    assert any("stable id" in note for note in first["notes"])


def test_keys_and_sticky_values_match_the_live_decision() -> None:
    table = load_routes_text(ROUTES)
    traced = CapturedMessage("f", 3, "/queue/ship", (("strangler-trace-id", "abc"),))
    assert decide_message(table, traced) == decide(table, "/queue/ship", None, "abc")
    sticky = CapturedMessage("f", 4, "/queue/pay.x", (("customer", "42"),))
    assert decide_message(table, sticky) == decide(table, "/queue/pay.x", "42", "ignored")
    bare = CapturedMessage("f", 5, "/queue/ship")
    assert (
        bare.key("strangler-trace-id")
        == bare.stable_id
        == CapturedMessage("f", 5, "/queue/ship").stable_id
    )
    assert bare.stable_id != CapturedMessage("f", 6, "/queue/ship").stable_id


def load_routes_text(routes: str) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return load_routes(write_routes(Path(folder) / "routes.yaml", routes))


def test_plain_mitmdump_flows_are_read_with_the_negotiated_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "mitmdump.flows"
    # In 1.1/1.2 a ':' in a header value travels as '\c'; under 1.0 it is literal.
    escaped = send("/queue/a:b", version="1.2")
    assert b"/queue/a\\cb" in escaped
    session = [
        (True, connect("1.2") + escaped),  # pipelined before CONNECTED: parsed as 1.0
        (False, connected("1.2")),
        (True, escaped),
        (True, escaped[:10]),
        (True, escaped[10:]),
    ]
    mitmdump_file(flows, [session, producer([send("/queue/orders")], version="1.0")])
    routes = write_routes(
        tmp_path / "routes.yaml",
        ROUTES
        + "  - {name: colon, match: {exact: '/queue/a:b'}, mode: cutover, on_failure: reject}\n",
    )
    report = run_json(capsys, "replay", str(flows), "--routes", routes, "--dry-run", "--json")
    destinations = {row["destination"]: row["total"] for row in report["by_destination"]}
    # The proxy would also read the pipelined one with 1.0 rules (no unescaping).
    assert destinations == {"/queue/a\\cb": 1, "/queue/a:b": 2, "/queue/orders": 1}
    assert by_route(report)["colon"]["amazonmq"] == 2


def test_only_committed_transactions_are_replayed(tmp_path: Path) -> None:
    flows = tmp_path / "capture.flows"
    sends = [
        frame("BEGIN", transaction="t1"),
        send("/queue/a", b"1", headers=(("transaction", "t1"),)),
        send("/queue/plain", b"2"),
        send("/queue/a", b"3", headers=(("transaction", "t1"),)),
        frame("COMMIT", transaction="t1"),
        frame("BEGIN", transaction="t2"),
        send("/queue/b", b"4", headers=(("transaction", "t2"),)),
        frame("ABORT", transaction="t2"),
        frame("BEGIN", transaction="t3"),
        send("/queue/c", b"5", headers=(("transaction", "t3"),)),
    ]
    capture(flows, [producer(sends)])
    source = MessageSource([str(flows)])
    assert [m.body for m in source] == [b"2", b"1", b"3"]
    assert source.stats.uncommitted == 2


def test_facts_files_give_the_same_report_keyed_by_trace_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routed = [("/queue/ship", f"trace-{i}") for i in range(50)] + [
        ("/queue/pay.x", f"p-{i}") for i in range(30)
    ]
    facts = facts_file(tmp_path / "facts.jsonl", routed)
    routes = write_routes(tmp_path / "routes.yaml", ROUTES)
    report = run_json(capsys, "replay", facts, "--routes", routes, "--dry-run", "--json")
    table = load_routes(routes)
    expected = Counter(
        (decide(table, dest, None, trace).rule, decide(table, dest, None, trace).targets)
        for dest, trace in routed
    )
    counted: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for row in report["by_route"]:
        for label, targets in (("legacy", ("legacy",)), ("amazonmq", ("amazonmq",))):
            if row[label]:
                counted[(row["rule"], targets)] += row[label]
    assert counted == expected
    assert report["source"]["kinds"] == ["facts"]
    assert any("trace id as key" in note for note in report["notes"])


def test_against_lists_messages_decided_differently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "capture.flows"
    sample_capture(flows)
    new = write_routes(tmp_path / "new.yaml", ROUTES)
    old = write_routes(
        tmp_path / "old.yaml",
        "  - {name: orders, match: {exact: /queue/orders}, mode: legacy}\n"
        "  - {name: pay, match: {prefix: /queue/pay.}, mode: split, weight: 40,"
        " sticky_header: customer, on_failure: legacy}\n",
    )
    argv = ["replay", str(flows), "--routes", new, "--against", old, "--dry-run"]
    report = run_json(capsys, *argv, "--json", "--examples", "2")
    changes = {
        (c["destination"], c["from"]["rule"], c["to"]["rule"]): c
        for c in report["changed"]["changes"]
    }
    orders = changes[("/queue/orders", "orders", "orders")]
    assert orders["count"] == 40
    assert orders["from"]["targets"] == ["legacy"] and orders["to"]["targets"] == [
        "legacy",
        "amazonmq",
    ]
    assert len(orders["examples"]) == 2
    assert ("/queue/pay.eu", "pay", "pay") not in changes  # same route, same decisions
    assert changes[("/queue/bill.1", "default", "bill")]["to"]["amazonmq_destination"] == (
        "/queue/bill.v2"
    )
    assert changes[("/topic/audit.x", "default", "audit")]["count"] == 40
    assert ("/queue/elsewhere", "default", "default") not in changes
    # A split gives one group per outcome: the part moving to Amazon MQ, the part staying.
    ship = [c for c in report["changed"]["changes"] if c["destination"] == "/queue/ship"]
    assert {c["to"]["targets"][0] for c in ship} == {"legacy", "amazonmq"}
    assert sum(c["count"] for c in ship) == 40
    assert report["changed"]["messages"] == sum(c["count"] for c in report["changed"]["changes"])

    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "decided differently than with" in text
    assert "orders: legacy" in text and "orders: both" in text


def test_text_report_has_routes_and_destinations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "capture.flows"
    sample_capture(flows)
    routes = write_routes(tmp_path / "routes.yaml", ROUTES)
    assert main(["replay", str(flows), "--routes", routes, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "240 SENDs decided" in out
    assert any(line.split()[:2] == ["orders", "mirror"] for line in out.splitlines())
    assert "/queue/bill.1 (as /queue/bill.v2)" in out


def test_a_malformed_session_is_reported_and_the_others_counted(tmp_path: Path) -> None:
    flows = tmp_path / "capture.flows"
    broken = [
        (True, connect()),
        (False, connected()),
        (True, send("/queue/ok")),
        (True, b"NONSENSE\n\n\0"),
        (True, send("/queue/after")),
    ]
    capture(flows, [broken, producer([send("/queue/fine")])])
    source = MessageSource([str(flows)])
    assert [m.destination for m in source] == ["/queue/ok", "/queue/fine"]
    assert len(source.stats.errors) == 1 and "unknown command" in source.stats.errors[0]
    report = Report(load_routes_text(ROUTES)).add_all(MessageSource([str(flows)]))
    assert report.messages == 2


def test_unreadable_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = write_routes(tmp_path / "routes.yaml", ROUTES)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x89PNG\r\n")
    assert main(["replay", str(garbage), "--routes", routes, "--dry-run"]) == 2
    assert "neither a mitmproxy flow file" in capsys.readouterr().err
    bad_flows = tmp_path / "bad.flows"
    bad_flows.write_bytes(b"12:not a netstring at all")
    assert main(["replay", str(bad_flows), "--routes", routes, "--dry-run"]) == 2
    assert "not a readable mitmproxy flow file" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing"), "--routes", routes, "--dry-run"]) == 2
    bad_routes = tmp_path / "bad.yaml"
    bad_routes.write_text("brokers:\n  legacy: {url: stomp://h:1}\nroutes:\n  - {name: x}\n")
    empty = tmp_path / "empty.flows"
    empty.write_bytes(b"")
    assert main(["replay", str(empty), "--routes", str(bad_routes), "--dry-run"]) == 2
    assert f"{bad_routes}:4" in capsys.readouterr().err
    assert main(["replay", str(empty), "--routes", routes, "--dry-run"]) == 0
    assert "0 SENDs decided" in capsys.readouterr().out
