"""docs/runbook.md stays true to the code: its routes validate, its names exist.

- every ```yaml block is a routes.yaml (or its `routes:` part, checked with the brokers of
  deploy/kubernetes/routes.yaml) that strangler's loader accepts;
- every fact name it mentions is in the closed vocabulary (strangler/facts/vocabulary.py);
- every strangler_* metric it mentions is one the admin port exports.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from strangler.facts import Fact
from strangler.routes import Mode, OnFailure, parse_routes

ROOT = Path(__file__).resolve().parents[3]
RUNBOOK = ROOT / "docs" / "runbook.md"
FACT_PREFIXES = (
    "proxy_",
    "routes_",
    "client_",
    "message_",
    "broker_",
    "transaction_",
    "facts_",
    "drain_",
    "verify_",
    "consumer_",
    "rollout_",
)
# Fields of facts that share those prefixes (not fact names themselves).
FACT_FIELDS = {"routes_version", "client_credentials"}


def runbook_text() -> str:
    return RUNBOOK.read_text()


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", runbook_text(), re.S)


def as_routes_file(block: str) -> str:
    data = yaml.safe_load(block)
    if "brokers" in data:
        return block
    base: dict[str, Any] = yaml.safe_load((ROOT / "deploy/kubernetes/routes.yaml").read_text())
    base.update(data)
    return yaml.safe_dump(base, sort_keys=False)


def test_runbook_has_every_step() -> None:
    text = runbook_text()
    steps = re.findall(r"^## Step \d+: (.+)$", text, re.M)
    assert [s.split(",")[0].split(" ")[0].lower() for s in steps] == [
        "install",
        "dry",
        "mirror",
        "split",
        "split",
        "cutover",
        "drain",
        "decommission",
    ]


@pytest.mark.parametrize("index", range(8))
def test_runbook_routes_validate(index: int) -> None:
    blocks = yaml_blocks()
    assert len(blocks) == 8, "one routes block per step that edits routes.yaml, and the plan"
    table = parse_routes(as_routes_file(blocks[index]), f"docs/runbook.md yaml block {index}")
    assert len(table.routes) <= 1


def test_runbook_walks_the_modes_in_order() -> None:
    routes = [parse_routes(as_routes_file(block), "runbook").routes for block in yaml_blocks()]
    steps = [(r[0].mode, r[0].weight, r[0].on_failure, r[0].dry_run) if r else None for r in routes]
    assert steps == [
        None,
        (Mode.MIRROR, None, None, True),
        (Mode.MIRROR, None, None, False),
        (Mode.SPLIT, 0, OnFailure.LEGACY, False),  # let it roll: from 0 by the plan
        (Mode.SPLIT, 10, OnFailure.LEGACY, False),
        (Mode.SPLIT, 50, OnFailure.LEGACY, False),
        (Mode.CUTOVER, None, OnFailure.LEGACY, False),
        (Mode.CUTOVER, None, OnFailure.REJECT, False),
    ]
    # All about one destination, under one route name.
    named = [r[0] for r in routes if r]
    assert {(r.name, r.pattern) for r in named} == {("orders", "/queue/orders")}


@pytest.mark.parametrize(
    ("block", "old", "new", "goes_to_amazonmq"),
    [
        # mirror: add `dry_run: true`
        (
            2,
            "/queue/orders.strangler-mirror",
            "/queue/orders.strangler-mirror\n    dry_run: true",
            0,
        ),
        # split: `weight: 0`
        (4, "weight: 10", "weight: 0", 0),
        (5, "weight: 50", "weight: 0", 0),
        # cutover with legacy as the fallback: add `dry_run: true`
        (6, "on_failure: legacy", "on_failure: legacy\n    dry_run: true", 0),
        # cutover with reject: back to `on_failure: legacy`
        (7, "on_failure: reject", "on_failure: legacy", 1),
    ],
)
def test_one_line_rollbacks_validate(block: int, old: str, new: str, goes_to_amazonmq: int) -> None:
    text = yaml_blocks()[block]
    assert text.count(old) == 1
    edited = text.replace(old, new)
    assert len(edited.splitlines()) - len(text.splitlines()) in (0, 1)
    route = parse_routes(as_routes_file(edited), "rollback").routes[0]
    sends = 0 if route.dry_run or route.weight == 0 else 1
    assert sends == goes_to_amazonmq


def test_runbook_fact_names_exist() -> None:
    vocabulary = {str(f) for f in Fact}
    mentioned = {
        word
        for word in re.findall(r"`([a-z_]+)`", runbook_text())
        if word.startswith(FACT_PREFIXES)
    }
    assert mentioned - vocabulary - FACT_FIELDS == set()
    # The facts an operator must recognise when Amazon MQ is down.
    assert {
        "broker_unavailable",
        "broker_recovered",
        "message_mirror_failed",
        "message_fell_back",
        "message_rejected",
        "routes_applied",
        "routes_rejected",
    } <= mentioned


def test_the_rollout_plan_steps_from_mirror_to_cutover() -> None:
    (route,) = parse_routes(as_routes_file(yaml_blocks()[3]), "runbook").routes
    assert route.rollout is not None and route.rollout.promote
    assert route.rollout.steps == (1, 10, 50, 100)
    assert {gate.name for gate in route.rollout.gates} == {"fallback_ratio", "confirm_p99_seconds"}
    text = runbook_text()
    assert {"rollout_advanced", "rollout_held", "rollout_rolled_back", "rollout_completed"} <= {
        word for word in re.findall(r"`([a-z_]+)`", text)
    }


def test_runbook_metric_names_exist() -> None:
    from strangler.admin.metrics import ProxyMetrics

    table = SimpleNamespace(version="0", source="routes.yaml", routes=())
    ctx: Any = SimpleNamespace(
        health=SimpleNamespace(up={}),
        routes=SimpleNamespace(table=table),
        facts=SimpleNamespace(dropped_total=0),
        settings=SimpleNamespace(dry_run=False),
    )
    metrics = ProxyMetrics(ctx, open_sessions=lambda: 0)
    exported: set[str] = set()
    for family in metrics.registry.collect():
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
        if family.type == "counter":
            exported.add(family.name + "_total")
        if family.type == "info":
            exported.add(family.name + "_info")
    mentioned = set(re.findall(r"\b(strangler_[a-z_]+)", runbook_text()))
    # `strangler_confirm_seconds` is named as the histogram itself.
    assert mentioned - exported == set()
