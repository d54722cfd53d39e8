"""The admin port against real brokers: /readyz's semantics, HEAD, and /status and
/metrics during a real Amazon MQ outage (a broker of our own, stopped for real)."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from strangler.admin import AdminServer, ProxyMetrics, StatusWindow

from . import brokers
from .brokers import BrokerInfo, free_port
from .conftest import ProxyFactory
from .faults import Relay
from .harness import WAIT, RunningProxy, connect, routes_yaml, unique_queue

pytestmark = pytest.mark.integration


class Admin:
    """An AdminServer on a test proxy's event loop, reached over HTTP."""

    def __init__(self, proxy: RunningProxy) -> None:
        self.proxy = proxy
        self.stopping = False
        ctx = proxy.server.ctx

        async def begin() -> AdminServer:
            metrics = ProxyMetrics(ctx, open_sessions=lambda: len(proxy.server.sessions))
            ctx.facts.writer_listeners.append(metrics.on_fact)
            server = AdminServer(
                ctx,
                metrics,
                StatusWindow(ctx, metrics),
                "127.0.0.1",
                0,
                alive=lambda: not self.stopping,
            )
            await server.start()
            return server

        self.server = asyncio.run_coroutine_threadsafe(begin(), proxy.loop).result(WAIT)
        self.port = self.server.address[1]

    def request(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def ready(self, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
        status, _, body = self.request(path)
        return status, json.loads(body)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.proxy.loop).result(WAIT)


@pytest.fixture
def admin_for() -> Iterator[Any]:
    opened: list[Admin] = []

    def open_admin(proxy: RunningProxy) -> Admin:
        opened.append(Admin(proxy))
        return opened[-1]

    yield open_admin
    for admin in opened:
        admin.close()


def test_readyz_waits_for_legacy_once_then_ignores_broker_outages(
    make_proxy: ProxyFactory,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    admin_for: Any,
    tmp_path: Path,
) -> None:
    dest = unique_queue("ready")
    with Relay(legacy.port) as relay:
        relay.cut()  # legacy unreachable from the start (a network policy, say)
        routes_file = tmp_path / "routes.yaml"
        via_relay = dataclasses.replace(legacy, port=relay.port)
        routes = f"  - {{name: b, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject}}\n"
        # Amazon MQ behind a port nothing listens on, with a route that rejects without it.
        routes_file.write_text(routes_yaml(via_relay, amazonmq, routes, amazonmq_port=free_port()))
        admin = admin_for(make_proxy("", routes_file=routes_file))

        status, body = admin.ready()
        assert status == 503
        assert body["ready"] is False and body["reason"].startswith("legacy not reached")

        relay.pass_through()
        status, body = admin.ready()
        assert (status, body["ready"]) == (200, True), body
        assert "brokers" not in body  # the plain probe checks nothing live once ready

        relay.cut()  # legacy goes away later: the pod stays in service
        status, body = admin.ready("/readyz?verbose")
        assert status == 200, body
        assert body["brokers"]["legacy"] != "reachable"
        assert body["brokers"]["amazonmq"] != "reachable"  # never gates, even for reject

        admin.stopping = True  # SIGTERM
        status, body = admin.ready()
        assert (status, body["reason"]) == (503, "stopping")


def test_readyz_verbose_reports_every_broker_it_reached(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, admin_for: Any
) -> None:
    admin = admin_for(
        make_proxy(f"  - {{name: m, match: {{exact: '{unique_queue('v')}'}}, mode: mirror}}\n")
    )
    status, body = admin.ready("/readyz?verbose")
    assert status == 200
    assert body["brokers"] == {"legacy": "reachable", "amazonmq": "reachable"}


def test_head_answers_like_get_without_a_body(make_proxy: ProxyFactory, admin_for: Any) -> None:
    admin = admin_for(make_proxy(""))
    status, headers, body = admin.request("/healthz", "HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == "3"  # GET's body: b"ok\n"
    status, _, body = admin.request("/metrics", "HEAD")
    assert (status, body) == (200, b"")
    status, headers, _ = admin.request("/healthz", "POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


# -- status and metrics during an Amazon MQ outage, through the real command ---------------


def _metric(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()


@pytest.fixture
def own_pair() -> Iterator[tuple[BrokerInfo, BrokerInfo]]:
    """Brokers of this test alone: it stops its Amazon MQ."""
    pair = brokers.start_pair("status-outage")
    yield pair
    brokers.remove_pair("status-outage")


def test_status_and_metrics_count_where_messages_were_confirmed_during_an_outage(
    own_pair: tuple[BrokerInfo, BrokerInfo], tmp_path: Path
) -> None:
    legacy, amazonmq = own_pair
    dest = unique_queue("outage")
    routes_file = tmp_path / "routes.yaml"
    route = (
        f"  - {{name: billing, match: {{exact: '{dest}'}}, mode: cutover, on_failure: legacy}}\n"
    )
    routes_file.write_text(routes_yaml(legacy, amazonmq, route))
    port, admin = free_port(), free_port()
    env = {
        **os.environ,
        "STRANGLER_TEST_AMQ_USER": amazonmq.username,
        "STRANGLER_TEST_AMQ_PASSWORD": amazonmq.password,
    }
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
            "--facts",
            str(tmp_path / "facts.jsonl"),
            "--no-watch",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        assert "listening on" in process.stderr.readline()
        client = connect("127.0.0.1", port, legacy.username, legacy.password)
        assert client.wait_receipts([client.send(dest, f"before {i}") for i in range(2)])
        brokers.stop(amazonmq.name)  # the outage
        assert client.wait_receipts([client.send(dest, f"during {i}") for i in range(4)])
        client.close()

        text = _get(admin, "/metrics").decode()
        assert _metric(text, "strangler_messages_total", route="billing", broker="amazonmq") == 2
        assert _metric(text, "strangler_messages_total", route="billing", broker="legacy") == 4
        assert _metric(text, "strangler_fallbacks_total", route="billing") == 4
        assert _metric(text, "strangler_messages_routed_total", route="billing") == 6
        assert _metric(text, "strangler_unresolved_messages", route="billing") == 0
        assert _metric(text, "strangler_upstream_up", broker="amazonmq") == 0

        billing = next(
            r for r in json.loads(_get(admin, "/status"))["routes"] if r["route"] == "billing"
        )
        assert billing["total"]["legacy"] == 4 and billing["total"]["amazonmq"] == 2
        assert billing["total"]["fallbacks"] == 4
        shown = subprocess.run(
            [sys.executable, "-m", "strangler", "status", "--admin", f"127.0.0.1:{admin}"],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=True,
        ).stdout
        row = next(line for line in shown.splitlines() if line.startswith("billing"))
        # legacy 1m / 5m, amazonmq 1m / 5m, fell back 1m / 5m
        assert row.split()[2:11] == ["4", "/", "4", "2", "/", "2", "4", "/", "4"], shown
        assert "amazonmq DOWN" in shown
        # The sidecar stays in service: Amazon MQ never gates readiness.
        assert json.loads(_get(admin, "/readyz"))["ready"] is True
    finally:
        process.terminate()
        process.wait(WAIT)
