"""strangler plan: what a routes change does; exit 0 nothing, 3 something, 1 invalid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from replay_fixtures import capture, facts_file, producer, send, write_routes

from strangler.cli import main

OLD = (
    "  - {name: orders, match: {exact: /queue/orders}, mode: mirror}\n"
    "  - {name: pay, match: {prefix: /queue/pay.}, mode: split, weight: 25,"
    " sticky_header: customer, on_failure: legacy}\n"
    "  - {name: audit, match: {exact: /topic/audit}, mode: legacy}\n"
)


def plan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plan", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_no_change_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write_routes(tmp_path / "old.yaml", OLD)
    # Different bytes (a comment), same meaning: still no change.
    new = write_routes(tmp_path / "new.yaml", "# reviewed\n" + OLD)
    code, out, _ = plan(capsys, old, new)
    assert code == 0
    assert "No changes" in out
    code, out, _ = plan(capsys, old, new, "--json")
    data = json.loads(out)
    assert code == 0 and data["changed"] is False and data["routes"] == []


def test_changed_routes_and_destinations_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_routes(tmp_path / "old.yaml", OLD)
    new = write_routes(
        tmp_path / "new.yaml",
        "  - {name: orders, match: {exact: /queue/orders}, mode: cutover, on_failure: legacy}\n"
        "  - {name: pay, match: {prefix: /queue/pay.}, mode: split, weight: 50,"
        " sticky_header: customer, on_failure: legacy}\n"
        "  - {name: billing, match: {exact: /queue/billing}, mode: mirror}\n",
    )
    code, out, _ = plan(capsys, old, new)
    assert code == 3
    assert "~ orders: mirror" in out and "(changed: mode, on_failure)" in out
    assert "~ pay: split 25% by customer" in out and "split 50% by customer" in out
    assert "+ billing: mirror" in out
    assert "- audit: legacy" in out
    assert "/queue/orders   orders: both  ->  orders: amazonmq" in out
    assert "/queue/billing  default: legacy  ->  billing: both" in out
    assert "/topic/audit" not in out.split("Destinations changing broker")[1]  # legacy both ways
    assert "1 route(s) to add, 2 to change, 1 to remove; 2 named destination(s)" in out

    code, out, _ = plan(capsys, old, new, "--json")
    data: dict[str, Any] = json.loads(out)
    assert code == 3 and data["changed"] is True
    assert {(r["route"], r["change"]) for r in data["routes"]} == {
        ("orders", "changed"),
        ("pay", "changed"),
        ("billing", "added"),
        ("audit", "removed"),
    }
    assert {d["destination"] for d in data["destinations"]} == {"/queue/orders", "/queue/billing"}


def test_settings_and_brokers_count_as_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_routes(tmp_path / "old.yaml", OLD)
    new = write_routes(tmp_path / "new.yaml", OLD, extra="dry_run: true\n")
    code, out, _ = plan(capsys, old, new)
    assert code == 3
    assert "Settings changed: dry_run False -> True" in out
    # dry-run on every route: the exact destinations now stay on legacy.
    assert "orders: both  ->  orders: both (dry-run)" in out


def test_invalid_file_exits_1_with_file_and_line_and_a_missing_one_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_routes(tmp_path / "old.yaml", OLD)
    bad = tmp_path / "new.yaml"
    write_routes(bad, OLD + "  - {name: typo, match: {exact: /queue/x}, mode: mirorr}\n")
    code, out, err = plan(capsys, old, str(bad))
    assert code == 1 and out == ""
    assert f"{bad}:8: routes[3].mode" in err
    code, _, err = plan(capsys, str(tmp_path / "missing.yaml"), old)
    assert code == 2 and "missing.yaml" in err


def test_with_a_capture_counts_the_messages_that_move(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_routes(tmp_path / "old.yaml", OLD)
    new = write_routes(
        tmp_path / "new.yaml",
        OLD.replace("weight: 25", "weight: 100").replace("mode: mirror", "mode: legacy"),
    )
    flows = tmp_path / "capture.flows"
    sends = [send("/queue/pay.eu", headers=(("customer", f"c{i}"),)) for i in range(40)]
    sends += [send("/queue/orders") for _ in range(7)] + [send("/queue/other")] * 3
    capture(flows, [producer(sends)])
    code, out, _ = plan(capsys, old, new, "--capture", str(flows), "--json")
    data = json.loads(out)
    assert code == 3
    moves = {
        (c["destination"], c["to"]["targets"][0]): c["count"] for c in data["messages"]["changes"]
    }
    assert moves[("/queue/orders", "legacy")] == 7
    pay_moved = moves[("/queue/pay.eu", "amazonmq")]
    assert 20 < pay_moved < 40  # the 75% that were on legacy before
    assert data["messages"]["read"] == 50
    assert data["messages"]["changed"] == 7 + pay_moved

    code, out, _ = plan(capsys, old, new, "--capture", str(flows))
    assert code == 3
    assert f"Messages in {flows}:" in out
    assert f"{7 + pay_moved} of 50 messages decided differently" in out


def test_a_capture_alone_can_show_movement_of_prefix_routes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_routes(tmp_path / "old.yaml", OLD)
    facts = facts_file(tmp_path / "facts.jsonl", [("/queue/pay.x", f"t{i}") for i in range(10)])
    code, out, _ = plan(capsys, old, old, "--capture", facts)
    assert code == 0 and "No changes" in out
    code, _, err = plan(capsys, old, old, "--capture", str(tmp_path / "nothing"))
    assert code == 2 and "cannot read" in err
