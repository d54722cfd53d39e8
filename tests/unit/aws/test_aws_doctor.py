"""``strangler doctor`` with Amazon MQ found through the AWS API (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_fakes import REGION, create_broker, moto_broker

from strangler.cli import main


@pytest.mark.usefixtures("aws")
def test_doctor_reports_a_broker_that_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker_id = create_broker("orders")
    moto_broker(broker_id).state = "REBOOT_IN_PROGRESS"
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "brokers:\n  legacy: {url: 'stomp://127.0.0.1:1'}\n"
        f"  amazonmq: {{broker_name: orders, region: {REGION}}}\n"
        "routes:\n  - {name: m, match: {exact: /queue/a}, mode: mirror}\n"
    )
    code = main(["doctor", "--routes", str(routes), "--json"])
    out = capsys.readouterr().out
    checks = {c["name"]: c for c in json.loads(out)}
    assert code == 1
    assert checks["amazonmq discovery"]["status"] == "fail", out
    assert "REBOOT_IN_PROGRESS, not RUNNING" in checks["amazonmq discovery"]["detail"]
