"""Every metric and label the alerting rules and the dashboard use exists on /metrics.

``deploy/observability/`` queries strangler's metrics by name (its /metrics contract,
deploy/observability/README.md). A rule or panel that names a metric the proxy does not expose
never fires or stays empty, silently. So this test runs ``strangler run`` (its admin
port on), drives it through what each metric counts (messages confirmed by both brokers,
then Amazon MQ cut off: a fallback, a reject, a failed mirror copy; a routes.yaml
refused and one applied), reads /metrics, and checks each name the rules and the
dashboard use has a series carrying every label they select or group by.

Labels Prometheus adds itself when it scrapes (``instance``, ``job``, and the
Kubernetes ones) are not on /metrics and are not checked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .brokers import REPO_DIR, BrokerInfo, free_port
from .faults import Relay
from .harness import WAIT, connect, routes_yaml, unique_queue

pytestmark = pytest.mark.integration

OBSERVABILITY = REPO_DIR / "deploy" / "observability"
RULES = OBSERVABILITY / "prometheus" / "strangler-rules.yaml"
DASHBOARD = OBSERVABILITY / "grafana" / "strangler.json"
SCRAPE_LABELS = frozenset({"instance", "job", "pod", "namespace", "container", "service"})
_METRIC = re.compile(r"\b(strangler_[a-z0-9_]+)\b(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(strangler_[a-z0-9_]+)\s*,\s*([a-z_]+)\s*\)")


def _expressions() -> list[str]:
    exprs = [
        str(rule["expr"])
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        exprs += [str(t["expr"]) for t in panel.get("targets", ())]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            exprs.append(str(variable["definition"]))
    return exprs


def used_metrics() -> dict[str, set[str]]:
    """metric name -> the labels the rules and panels select or group it by."""
    used: dict[str, set[str]] = {}
    for expr in _expressions():
        grouping = {
            label.strip()
            for labels in _GROUPING.findall(expr)
            for label in labels.split(",")
            if label.strip()
        }
        for name, label in _LABEL_VALUES.findall(expr):
            used.setdefault(name, set()).add(label)
        for name, braces in _METRIC.findall(expr):
            labels = used.setdefault(name, set())
            labels |= set(_MATCHER.findall(braces)) | grouping
            if not name.endswith("_bucket"):
                labels.discard("le")
    return {name: labels - SCRAPE_LABELS for name, labels in used.items()}


USED = used_metrics()


def test_the_rules_and_the_dashboard_use_the_metrics_they_should() -> None:
    """The parser above finds what matters (else the checks below check nothing)."""
    assert {"strangler_fallbacks_total", "strangler_upstream_up", "strangler_routes_info"} <= set(
        USED
    )
    assert USED["strangler_confirm_seconds_bucket"] >= {"le", "broker", "route"}
    assert USED["strangler_routes_reloads_total"] >= {"result"}
    assert "instance" not in USED["strangler_routes_info"]


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as response:
        return str(response.read().decode())


def _route(name: str, dest: str, mode: str) -> str:
    return f"  - {{name: {name}, match: {{exact: '{dest}'}}, {mode}}}\n"


@pytest.fixture(scope="module")
def exposition(standard_brokers: tuple[BrokerInfo, BrokerInfo], tmp_path_factory: Any) -> str:
    """/metrics of a proxy that confirmed on both brokers, fell back, rejected, failed a
    copy, refused a routes.yaml and applied one."""
    legacy, amazonmq = standard_brokers
    workdir: Path = tmp_path_factory.mktemp("observability")
    dest = {name: unique_queue(f"obs-{name}") for name in ("mirror", "moved", "strict", "half")}
    body = (
        _route("mirrored", dest["mirror"], "mode: mirror")
        + _route("moved", dest["moved"], "mode: cutover, on_failure: legacy")
        + _route("strict", dest["strict"], "mode: cutover, on_failure: reject")
        + _route("half", dest["half"], "mode: split, weight: 50, on_failure: legacy")
    )
    relay = Relay(amazonmq.port).start()
    routes_file = workdir / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, body, amazonmq_port=relay.port))
    port, admin = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strangler",
            "run",
            "--routes",
            str(routes_file),
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            f"127.0.0.1:{admin}",
            "--no-watch",
            "--facts",
            str(workdir / "facts.jsonl"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert process.stderr is not None
        assert "listening on" in process.stderr.readline()
        producer = connect("127.0.0.1", port, legacy.username, legacy.password)
        sent = [producer.send(d, "m") for d in dest.values() if d != dest["strict"]]
        assert producer.wait_receipts(sent)  # confirmed by both brokers
        relay.cut()  # Amazon MQ unreachable from here on
        failing = [producer.send(dest["moved"], "falls back"), producer.send(dest["mirror"], "c")]
        assert producer.wait_receipts(failing)
        producer.close()
        rejected = connect("127.0.0.1", port, legacy.username, legacy.password)
        rejected.send(dest["strict"], "rejected")
        assert rejected.recorder.wait(lambda: bool(rejected.recorder.errors))
        rejected.close()
        text = routes_file.read_text()
        routes_file.write_text("routes: [not valid\n")
        process.send_signal(signal.SIGHUP)
        assert _wait_for(admin, 'strangler_routes_reloads_total{result="rejected"}')
        routes_file.write_text(text + _route("later", unique_queue("obs-later"), "mode: legacy"))
        process.send_signal(signal.SIGHUP)
        assert _wait_for(admin, 'strangler_routes_reloads_total{result="applied"}')
        return _get(admin, "/metrics")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        relay.close()


def _wait_for(admin: int, needle: str) -> bool:
    import time

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if needle in _get(admin, "/metrics"):
            return True
        time.sleep(0.1)
    return False


def _series(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels)


def _params() -> list[Any]:
    return [pytest.param(name, sorted(labels), id=name) for name, labels in sorted(USED.items())]


@pytest.mark.parametrize(("name", "labels"), _params())
def test_each_metric_the_rules_and_dashboard_use_is_exposed(
    exposition: str, name: str, labels: list[str]
) -> None:
    series = [found for sample, found in _series(exposition) if sample == name]
    assert series, f"/metrics has no {name} (used by the rules or the dashboard)"
    assert any(set(labels) <= set(found) for found in series), (
        f"{name} has labels {sorted(set().union(*series))}, the rules and dashboard use {labels}"
    )
