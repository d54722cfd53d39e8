"""The example routes.yaml at the repo root stays valid and means what its comments say."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from strangler.routes import (
    BrokerEndpoint,
    Credentials,
    Mode,
    OnFailure,
    RouteTable,
    decide,
    load_routes,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "routes.yaml"


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return load_routes(EXAMPLE)


def test_example_routes_file_loads_without_warnings(table: RouteTable) -> None:
    assert [route.name for route in table.routes] == [
        "orders-mirror",
        "payments-split",
        "billing-cutover",
        "audit-legacy",
    ]
    assert table.warnings == ()
    assert table.needs_amazonmq
    assert table.dry_run is False
    assert table.trace_header == "strangler-trace-id"
    assert table.source == str(EXAMPLE)


def test_example_uses_the_local_test_brokers(table: RouteTable) -> None:
    legacy, amazonmq = table.brokers["legacy"], table.brokers["amazonmq"]
    assert legacy.endpoints == (BrokerEndpoint("stomp", "127.0.0.1", 61611),)
    assert amazonmq.endpoints == (BrokerEndpoint("stomp+ssl", "127.0.0.1", 61614),)
    assert amazonmq.credentials == Credentials(
        username_env="STRANGLER_AMAZONMQ_USER", password_env="STRANGLER_AMAZONMQ_PASSWORD"
    )
    assert amazonmq.heartbeat_ms == 10_000


def test_example_ca_file_resolves_against_the_routes_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    table = load_routes(os.path.relpath(EXAMPLE, tmp_path))
    expected = EXAMPLE.parent / ".brokers" / "amazonmq" / "ca.pem"
    assert table.brokers["amazonmq"].ca_file == str(expected)


def test_example_routes_decide_as_commented(table: RouteTable) -> None:
    orders = decide(table, "/queue/orders", None, "trace-1")
    assert (orders.mode, orders.targets, orders.primary) == (
        Mode.MIRROR,
        ("legacy", "amazonmq"),
        "legacy",
    )

    billing = decide(table, "/queue/billing.invoices", None, "trace-1")
    assert billing.targets == ("amazonmq",)
    assert billing.on_failure is OnFailure.LEGACY

    audit = decide(table, "/topic/audit.login", None, "trace-1")
    assert (audit.rule, audit.targets) == ("audit-legacy", ("legacy",))

    payments = decide(table, "/queue/payments.eu", "group-7", "trace-1")
    assert payments.rule == "payments-split"
    assert payments.targets in (("legacy",), ("amazonmq",))


def test_example_split_carries_a_rollout_plan_the_proxy_ignores(table: RouteTable) -> None:
    payments = next(r for r in table.routes if r.name == "payments-split")
    assert payments.rollout is not None and payments.weight == 25
    assert payments.rollout.steps == (25, 50, 100) and payments.rollout.state is None
    assert payments.rollout.step_number(25) == 1 and payments.rollout.next_weight(25) == 50
    assert [gate.name for gate in payments.rollout.gates] == [
        "fallback_ratio",
        "confirm_p99_seconds",
    ]

    other = decide(table, "/queue/shipping", None, "trace-1")
    assert (other.rule, other.targets) == ("default", ("legacy",))


def test_example_version_is_sha256_prefix_of_file_bytes(table: RouteTable) -> None:
    assert table.version == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()[:12]
