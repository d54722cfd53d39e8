"""A real Prometheus (Debian's ``prometheus`` package) on loopback for the rollout tests.

It scrapes a fixed list of targets (the proxies' admin ports, chosen before they start)
every ``scrape_interval``. Prometheus applies a new target list only every 5 seconds, so
the targets are all in the config from the start and ``start`` waits until it lists
them. No pytest import: usable from a REPL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .brokers import HOST, free_port


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.load(response)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(folder: Path, targets: list[int], scrape_interval: str = "250ms") -> Prometheus:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError(
            "prometheus not found: apt-get install prometheus (scripts/test.sh does)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    listed = ", ".join(f"'{HOST}:{port}'" for port in targets)
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  scrape_timeout: {scrape_interval}\n"
        "scrape_configs:\n"
        "  - job_name: strangler\n"
        f"    static_configs: [{{targets: [{listed}]}}]\n"
    )
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={HOST}:{port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://{HOST}:{port}", process, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            active = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
            if len(active) == len(targets):
                return prometheus
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            prometheus.stop()
            raise TimeoutError(f"prometheus did not list its targets: {log.read_text()[-2000:]}")
        time.sleep(0.1)
