"""`strangler rollout` on the command line: one pass, its exit codes, facts to a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rollout_fixtures import ROUTES

from strangler.cli import main
from strangler.conventions import ExitCode


def facts(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_once_with_prometheus_unreachable_holds_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes, written = tmp_path / "routes.yaml", tmp_path / "facts.jsonl"
    routes.write_text(ROUTES)
    argv = ["rollout", "--routes", str(routes), "--prometheus", "http://127.0.0.1:1"]
    assert main([*argv, "--once", "--facts", str(written), "--query-timeout", "2s"]) == 0
    (held,) = facts(written)
    assert held["event"] == "rollout_held" and "cannot ask Prometheus" in str(held["reason"])
    assert routes.read_text() == ROUTES
    assert "rollout pay: held at 0%" in capsys.readouterr().err


@pytest.mark.parametrize("once", [["--once"], []], ids=["once", "loop"])
def test_an_invalid_routes_file_exits_2_with_file_and_line_and_starts_nothing(
    once: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes, written = tmp_path / "routes.yaml", tmp_path / "facts.jsonl"
    routes.write_text(ROUTES.replace("every: 10m", "every: soon"))
    argv = ["rollout", "--routes", str(routes), "--prometheus", "http://127.0.0.1:1", *once]
    assert main([*argv, "--facts", str(written)]) == ExitCode.CONFIG
    line = ROUTES.splitlines().index("      every: 10m") + 1
    error = f"{routes}:{line}: routes[1].rollout.every: must be a duration"
    assert error in capsys.readouterr().err
    assert not written.exists(), "no pass ran, no fact was written"


def test_git_outside_a_working_copy_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    argv = ["rollout", "--routes", str(routes), "--prometheus", "http://127.0.0.1:1", "--git"]
    assert main([*argv, "--once", "--facts", str(tmp_path / "facts.jsonl")]) == ExitCode.CONFIG
    assert "git rev-parse failed" in capsys.readouterr().err


def test_a_bad_interval_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rollout", "--routes", "r.yaml", "--prometheus", "http://p", "--interval", "5"])
    assert exited.value.code == 2
    assert "expected a duration like 500ms, 30s or 1m" in capsys.readouterr().err
