"""The soak, short: ``python -m bench.soak`` for 30 s, as the long one runs.

The long soak (``--minutes 10 --producers 8``) is a documented command, not part of
the default run (README, bench/README.md). This one runs the same code: its own
brokers, ``strangler run`` as a process, producers with receipts (one of them
transactional), a routes change by hot reload, Amazon MQ SIGKILLed and restarted,
legacy stopped and restarted; then it checks every receipted message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .brokers import REPO_DIR

pytestmark = pytest.mark.integration

SECONDS = 30
PRODUCERS = 4


@pytest.mark.timeout(SECONDS + 260)
def test_short_soak_loses_nothing_and_keeps_rss_flat(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, "-m", "bench.soak", "--seconds", str(SECONDS)]
    command += ["--producers", str(PRODUCERS), "--json", str(out)]
    proc = subprocess.run(
        command,
        cwd=REPO_DIR,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SECONDS + 240,
        check=False,
    )
    report = f"{proc.stdout}\n{proc.stderr[-4000:]}"
    print(report)
    assert proc.returncode == 0, report
    r = json.loads(out.read_text())
    assert r["ok"] and r["lost"] == 0 and not r["violations"], report
    assert r["receipted"] == r["messages"] > 1000, report
    steps = r["steps"]
    assert steps["reload_applied"], report
    assert steps["amazonmq_restarted"] == {"seen_down": True, "recovered": True}, report
    assert steps["legacy_restarted"] == {"recovered": True}, report
    assert r["routes_versions_used"] == 2, "no message was routed under the new routes"
    assert r["found"]["legacy"] > 0 and r["found"]["amazonmq"] > 0
    assert r["transactions"].get("committed", 0) > 0 and r["transactions"].get("aborted", 0) > 0
    assert r["facts"].get("message_fell_back", 0) > 0, "Amazon MQ's restart went unnoticed"
    assert r["facts"].get("client_refused", 0) > 0, "legacy's restart went unnoticed"
    assert r["rss_growth_mb"] <= r["options"]["max_rss_growth_mb"], report
