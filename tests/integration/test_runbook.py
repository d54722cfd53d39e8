"""docs/runbook.md, walked step by step against the real brokers.

Each ```yaml block of the runbook is applied to one running proxy by a reload, as an
operator would, and the messages a producer sends at that step must land exactly
where the step says. The runbook's queue is replaced by a fresh one per run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .harness import connect, drain, routes_yaml, traces_of, unique_queue

pytestmark = pytest.mark.integration

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
PER_STEP = 40


def _steps() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", RUNBOOK.read_text(), re.S)


def test_every_runbook_step_routes_messages_where_it_says(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: Path
) -> None:
    dest = unique_queue("runbook")
    mirror_copy = dest + ".strangler-mirror"
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, "  []\n"))
    proxy = make_proxy("", routes_file=routes_file)
    steps = _steps()
    assert len(steps) >= 7
    for index, block in enumerate(steps):
        block = block.replace("/queue/orders", dest)
        routes = yaml.safe_load(block)["routes"]
        body = (
            "".join(f"  - {yaml.safe_dump(r, default_flow_style=True).strip()}\n" for r in routes)
            or "  []\n"
        )
        routes_file.write_text(routes_yaml(legacy, amazonmq, body))
        before = proxy.server.ctx.routes.table.version
        proxy.reload(f"runbook block {index}")
        assert index == 0 or proxy.server.ctx.routes.table.version != before
        client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
        sent = [
            client.send(dest, f"step{index}-{i}", headers={"JMSXGroupID": f"g{i % 7}"})
            for i in range(PER_STEP)
        ]
        assert client.wait_receipts(sent), f"runbook block {index}: receipts missing"
        client.close()

        route = routes[0] if routes else {"mode": "legacy"}
        mode = route["mode"] if not route.get("dry_run") else "legacy"
        if mode == "mirror":
            proxy.wait_fact("message_confirmed", PER_STEP, broker="amazonmq", role="mirror")
        on_legacy = drain(legacy, dest)
        on_amazonmq = drain(amazonmq, dest) + drain(amazonmq, mirror_copy)
        legacy_traces, amazonmq_traces = traces_of(on_legacy), traces_of(on_amazonmq)
        where = f"runbook block {index} ({mode})"
        if mode == "legacy":
            assert len(on_legacy) == PER_STEP and not on_amazonmq, where
            if route.get("dry_run"):  # the facts say what would have happened
                facts = [
                    f
                    for f in proxy.facts("message_routed", destination=dest)
                    if f["trace_id"] in set(legacy_traces)
                ]
                assert len(facts) == PER_STEP
                assert all(f["dry_run"] and "amazonmq" in f["would_target"] for f in facts)
        elif mode == "mirror":
            assert legacy_traces == amazonmq_traces and len(on_legacy) == PER_STEP, where
        elif mode == "split":
            assert len(on_legacy) + len(on_amazonmq) == PER_STEP, where
            assert not set(legacy_traces) & set(amazonmq_traces), where
        else:  # cutover
            assert len(on_amazonmq) == PER_STEP and not on_legacy, where
