"""``scripts/demo.sh`` runs beside anything else: every port it uses comes from the
environment (here: the test brokers' ports, and free ports for the proxy and its admin)."""

from __future__ import annotations

import os
import subprocess

import pytest

from .brokers import REPO_DIR, BrokerInfo, free_port

pytestmark = pytest.mark.integration


def test_the_demo_uses_the_ports_it_is_given(legacy: BrokerInfo, amazonmq: BrokerInfo) -> None:
    port, admin = free_port(), free_port()
    env = {
        **os.environ,
        "STRANGLER_LEGACY_PORT": str(legacy.port),
        "STRANGLER_AMAZONMQ_PORT": str(amazonmq.port),
        "STRANGLER_DEMO_PORT": str(port),
        "STRANGLER_DEMO_ADMIN_PORT": str(admin),
    }
    result = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"listening on 127.0.0.1:{port} (admin http://127.0.0.1:{admin})" in output
    assert f"broker legacy: stomp://127.0.0.1:{legacy.port}" in output
    assert f"broker amazonmq: stomp+ssl://127.0.0.1:{amazonmq.port}" in output
    assert "demo producer: 20 receipts for 20 messages" in output
