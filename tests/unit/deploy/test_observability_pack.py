"""deploy/observability: the alerting rules pass promtool, the dashboard is well formed.

promtool comes with Debian's ``prometheus`` package (scripts/test.sh installs it). That
the metrics these files use exist on a running proxy's /metrics is checked against a
real proxy: tests/integration/test_observability_metrics.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "deploy" / "observability" / "prometheus"
DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "strangler.json"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool not found: it comes with Debian's prometheus package "
            "(apt-get install --no-install-recommends prometheus; scripts/test.sh does it)"
        )
    return subprocess.run(
        [binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_alerting_rules_are_valid() -> None:
    checked = promtool("check", "rules", "strangler-rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alerting_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", "strangler-rules.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    import yaml

    rules = yaml.safe_load((PROMETHEUS / "strangler-rules.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "strangler-rules.test.yaml").read_text())
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts == tested


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_dashboard_queries_prometheus_through_its_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert {"route", "instance"} <= set(variables)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert "strangler_" in target["expr"], panel["title"]
    per_route = [p for p in _panels(dashboard) if any("$route" in t["expr"] for t in p["targets"])]
    assert {p["title"] for p in per_route} >= {
        "Messages by broker",
        "Confirmation latency",
        "Failures",
    }
