"""Operating the proxy against real brokers: hot reload, admin HTTP, metrics, SIGHUP, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .brokers import BrokerInfo, free_port
from .conftest import ProxyFactory
from .harness import WAIT, connect, drain, routes_yaml, traces_of, unique_queue

pytestmark = pytest.mark.integration


def _route(dest: str, mode: str) -> str:
    extra = ", on_failure: legacy" if mode == "cutover" else ""
    return f"  - {{name: moving, match: {{exact: '{dest}'}}, mode: {mode}{extra}}}\n"


def test_reload_mid_stream_moves_every_later_message_and_loses_none(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: Path
) -> None:
    dest = unique_queue("reload")
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "mirror")))
    proxy = make_proxy("", routes_file=routes_file, watch=True)
    old_version = proxy.server.ctx.routes.table.version

    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    stop = threading.Event()
    receipts: list[str] = []

    def produce() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            receipts.append(client.send(dest, f"m{i}"))
            i += 1
            if i % 20 == 0:  # keep a receipt window so the producer keeps pace with brokers
                client.wait_receipts(receipts[-20:])

    producer = threading.Thread(target=produce)
    producer.start()
    assert client.recorder.wait(lambda: len(client.recorder.receipts) >= 100)
    # Write the new file the way editors do: a new file renamed over the old one.
    staged = tmp_path / "routes.yaml.new"
    staged.write_text(routes_yaml(legacy, amazonmq, _route(dest, "cutover")))
    staged.replace(routes_file)
    applied = proxy.wait_fact("routes_applied")
    assert applied, "the file change was not applied"
    new_version = applied[0]["routes_version"]
    assert applied[0]["plan"]["routes"][0]["mode_after"] == "cutover"
    sent_before = len(receipts)
    assert client.recorder.wait(lambda: len(client.recorder.receipts) >= sent_before + 100)
    stop.set()
    producer.join(WAIT)
    assert client.wait_receipts(receipts)
    client.close()

    routed = proxy.facts("message_routed", destination=dest)
    assert len(routed) == len(receipts)
    before = [f for f in routed if f["routes_version"] == old_version]
    after = [f for f in routed if f["routes_version"] == new_version]
    assert before and after and len(before) + len(after) == len(routed)
    # Decided in order: no message under the old table after the first under the new one.
    versions = [f["routes_version"] for f in routed]
    assert versions == sorted(versions, key=lambda v: v == new_version)
    assert all(f["targets"] == ["legacy", "amazonmq"] for f in before)
    assert all(f["targets"] == ["amazonmq"] for f in after)

    proxy.wait_fact("message_confirmed", len(routed), broker="amazonmq")
    on_legacy, on_amazonmq = traces_of(drain(legacy, dest)), traces_of(drain(amazonmq, dest))
    assert on_legacy == [f["trace_id"] for f in before]
    assert on_amazonmq == [f["trace_id"] for f in routed]


def test_a_reload_moves_a_destination_whose_sends_took_the_hot_path(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: Path
) -> None:
    """Receipt-less SENDs to a legacy route pass through without a decision each (the
    core's hot path); the decision they reuse must not outlive the routes it came from."""
    dest = unique_queue("hot")
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "legacy")))
    proxy = make_proxy("", routes_file=routes_file, watch=True)
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    for i in range(50):
        client.send(dest, f"before {i}", receipt=False)
    assert client.wait_receipts([client.send(dest, "before barrier")])
    staged = tmp_path / "routes.yaml.new"
    staged.write_text(routes_yaml(legacy, amazonmq, _route(dest, "cutover")))
    staged.replace(routes_file)
    assert proxy.wait_fact("routes_applied")
    for i in range(50):
        client.send(dest, f"after {i}", receipt=False)
    assert client.wait_receipts([client.send(dest, "after barrier")])
    client.close()

    routed = proxy.facts("message_routed", destination=dest)
    assert [f["targets"] for f in routed] == [["legacy"]] * 51 + [["amazonmq"]] * 51
    assert len({f["trace_id"] for f in routed}) == 102
    proxy.wait_fact("message_confirmed", 51, broker="amazonmq")
    on_legacy, on_amazonmq = drain(legacy, dest), drain(amazonmq, dest)
    assert traces_of(on_legacy) == [f["trace_id"] for f in routed[:51]]
    assert traces_of(on_amazonmq) == [f["trace_id"] for f in routed[51:]]
    assert [m.body for m in on_amazonmq][-1] == b"after barrier"


def test_invalid_routes_file_is_refused_and_routing_is_unchanged(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: Path
) -> None:
    dest = unique_queue("invalid")
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "mirror")))
    proxy = make_proxy("", routes_file=routes_file)
    version = proxy.server.ctx.routes.table.version
    broken = routes_yaml(legacy, amazonmq, _route(dest, "mirror").replace("mirror", "mirorr"))
    routes_file.write_text(broken)

    assert proxy.reload() is False
    rejected = proxy.wait_fact("routes_rejected")
    assert rejected[0]["file"] == str(routes_file)
    assert rejected[0]["line"] == len(broken.splitlines())  # the route is the last line
    assert "mirorr" in rejected[0]["reason"]
    assert rejected[0]["kept_version"] == version
    assert proxy.server.ctx.routes.table.version == version

    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "still mirrored")])
    client.close()
    assert proxy.wait_fact("message_confirmed", broker="amazonmq")
    assert len(drain(amazonmq, dest)) == 1 and len(drain(legacy, dest)) == 1


def test_configmap_style_symlink_swap_is_reloaded(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: Path
) -> None:
    dest = unique_queue("configmap")
    # The layout kubelet makes: routes.yaml -> ..data/routes.yaml, ..data -> ..<timestamp>
    mount = tmp_path / "config"
    first = mount / "..2026_01"
    first.mkdir(parents=True)
    (first / "routes.yaml").write_text(routes_yaml(legacy, amazonmq, _route(dest, "mirror")))
    (mount / "..data").symlink_to("..2026_01")
    (mount / "routes.yaml").symlink_to("..data/routes.yaml")
    proxy = make_proxy("", routes_file=mount / "routes.yaml", watch=True)

    second = mount / "..2026_02"
    second.mkdir()
    (second / "routes.yaml").write_text(routes_yaml(legacy, amazonmq, _route(dest, "cutover")))
    (mount / "..data_tmp").symlink_to("..2026_02")
    (mount / "..data_tmp").replace(mount / "..data")  # atomic swap, as kubelet does

    applied = proxy.wait_fact("routes_applied")
    assert applied and applied[0]["plan"]["routes"][0]["mode_after"] == "cutover"
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, "moved")])
    client.close()
    assert len(drain(amazonmq, dest)) == 1 and drain(legacy, dest) == []


# -- the real command: admin port, metrics, SIGHUP, SIGTERM ------------------------


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _poll(read: Callable[[], str | None], timeout: float = WAIT) -> str:
    """What ``read`` returns once it returns something (a scrape until a condition holds;
    the proxy runs in another process, so there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while (found := read()) is None:
        assert time.monotonic() < deadline, "the condition never held"
        threading.Event().wait(0.05)  # the interval between two scrapes
    return found


def _facts(path: Path, event: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [f for f in map(json.loads, path.read_text().splitlines()) if f["event"] == event]


def _run_cli(
    routes_file: Path, port: int, admin: int, facts: Path, *extra: str
) -> subprocess.Popen[str]:
    """``strangler run`` as its own process, returned once it says it listens."""
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
            str(facts),
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert process.stderr is not None
    line = process.stderr.readline()  # the proxy says when it listens
    if "listening on" not in line:
        process.kill()
        raise AssertionError(f"strangler run did not start: {line}")
    return process


@pytest.fixture
def cli_proxy(tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo) -> Any:
    dest = unique_queue("cli")
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "mirror")))
    port, admin = free_port(), free_port()
    facts = tmp_path / "facts.jsonl"
    process = _run_cli(routes_file, port, admin, facts, "--no-watch")
    yield process, dest, routes_file, port, admin, facts
    if process.poll() is None:
        process.kill()
        process.wait()


def test_metrics_count_what_was_sent_and_admin_endpoints_answer(
    cli_proxy: Any, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    _, dest, _, port, admin, _ = cli_proxy
    assert _get(admin, "/healthz") == (200, b"ok\n")
    status, body = _get(admin, "/readyz?verbose")
    assert status == 200 and json.loads(body)["brokers"] == {
        "legacy": "reachable",
        "amazonmq": "reachable",
    }
    client = connect("127.0.0.1", port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, f"m{i}") for i in range(25)])
    client.close()  # legacy's receipts: the mirror copies may still be on their way

    def settled() -> str | None:
        text = _get(admin, "/metrics")[1].decode()
        return text if _metric(text, "strangler_unresolved_messages", route="moving") == 0 else None

    text = _poll(settled)
    assert _metric(text, "strangler_messages_total", route="moving", broker="legacy") == 25
    assert _metric(text, "strangler_messages_total", route="moving", broker="amazonmq") == 25
    assert _metric(text, "strangler_confirmed_total", route="moving", broker="legacy") == 25
    assert _metric(text, "strangler_confirm_seconds_count", broker="legacy") == 25
    assert dest not in text, "a raw destination leaked into metric labels"

    status, routes = _get(admin, "/routes")
    document = json.loads(routes)
    assert document["routes"][0]["name"] == "moving"
    assert amazonmq.password not in routes.decode()

    status, report = _get(admin, "/status")
    moving = next(r for r in json.loads(report)["routes"] if r["route"] == "moving")
    assert moving["total"]["legacy"] == 25 and moving["mode"] == "mirror"
    out = subprocess.run(
        [sys.executable, "-m", "strangler", "status", "--admin", f"127.0.0.1:{admin}"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    ).stdout
    assert "moving" in out and "mirror" in out
    drain(legacy, dest)
    drain(amazonmq, dest)


def test_sighup_reloads_and_sigterm_stops_cleanly(
    cli_proxy: Any, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    process, dest, routes_file, port, admin, facts = cli_proxy
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "cutover")))
    process.send_signal(signal.SIGHUP)
    client = connect("127.0.0.1", port, legacy.username, legacy.password)
    # The reload is asynchronous to the signal: poll the metric the reload increments.
    for _ in range(int(WAIT / 0.05)):
        if (
            _metric(
                _get(admin, "/metrics")[1].decode(),
                "strangler_routes_reloads_total",
                result="applied",
            )
            == 1
        ):
            break
        threading.Event().wait(0.05)
    assert client.wait_receipts([client.send(dest, "after sighup")])
    assert len(drain(amazonmq, dest)) == 1 and drain(legacy, dest) == []

    process.send_signal(signal.SIGTERM)
    assert process.wait(WAIT) == 0
    assert _facts(facts, "routes_applied")[0]["trigger"] == "SIGHUP"
    assert _facts(facts, "proxy_stopped")
    # `strangler run` set glibc's thresholds (strangler/allocator.py) and says so.
    assert _facts(facts, "proxy_started")[0]["malloc"] == "mmap from 1 MiB, trim above 4 MiB"
    client.close()


def _until(predicate: Any) -> Any:
    """``predicate()`` once it is true (a file the proxy writes), else its last value."""
    for _ in range(int(WAIT / 0.02)):
        if value := predicate():
            return value
        threading.Event().wait(0.02)
    return predicate()


def test_the_facts_file_is_reopened_on_sigusr1_and_sighup_after_logrotate_moved_it(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    # Before: the proxy kept writing to the moved file (and SIGUSR1 killed it).
    dest = unique_queue("rotate")
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "mirror")))
    facts = tmp_path / "facts.jsonl"
    port = free_port()
    process = _run_cli(routes_file, port, free_port(), facts)
    try:
        assert _until(lambda: _facts(facts, "routes_loaded"))
        facts.rename(tmp_path / "facts.jsonl.1")  # logrotate's move
        process.send_signal(signal.SIGUSR1)  # its postrotate
        assert _until(facts.exists), "SIGUSR1 did not open a new facts file"
        client = connect("127.0.0.1", port, legacy.username, legacy.password)
        assert _until(lambda: _facts(facts, "client_connected"))
        assert _facts(tmp_path / "facts.jsonl.1", "client_connected") == []

        facts.rename(tmp_path / "facts.jsonl.2")
        process.send_signal(signal.SIGHUP)  # reopens too, and checks the routes
        assert _until(lambda: _facts(facts, "routes_unchanged"))
        assert _facts(tmp_path / "facts.jsonl.2", "routes_unchanged") == []
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
        assert _facts(facts, "proxy_stopped")
        # The watcher saw the facts files come and go beside routes.yaml: no reload.
        rotated = [tmp_path / "facts.jsonl.1", tmp_path / "facts.jsonl.2", facts]
        assert [f for path in rotated for f in _facts(path, "routes_unchanged")] == [
            {**_facts(facts, "routes_unchanged")[0], "trigger": "SIGHUP"}
        ]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_with_messages_in_flight_loses_none_that_were_receipted(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("sigterm")
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "cutover")))
    port, admin = free_port(), free_port()
    process = _run_cli(routes_file, port, admin, tmp_path / "facts.jsonl", "--shutdown-grace", "5")
    try:
        client = connect("127.0.0.1", port, legacy.username, legacy.password)
        sent: list[str] = []
        stopped = threading.Event()

        def produce() -> None:
            # Pipelined sends, up to 50 awaiting a receipt, so some are always in flight
            # when the signal lands (and the queue stays small enough to drain quickly).
            for i in range(20_000):
                if stopped.is_set() or not client.conn.is_connected():
                    return
                try:
                    sent.append(client.send(dest, f"m{i}"))
                except Exception:  # the proxy closed the connection: stop sending
                    return
                behind = len(sent) - 50
                client.recorder.wait(lambda b=behind: len(client.recorder.receipts) >= b, 1.0)

        producer = threading.Thread(target=produce)
        producer.start()
        assert client.recorder.wait(lambda: len(client.recorder.receipts) >= 200)
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
        stopped.set()
        producer.join(WAIT)
        receipted = set(client.recorder.receipts)
        assert len(receipted) >= 200
    finally:
        if process.poll() is None:
            process.kill()
    on_amazonmq = drain(amazonmq, dest)
    bodies = {m.body.decode() for m in on_amazonmq}
    by_receipt = dict(zip(sent, (f"m{i}" for i in range(len(sent))), strict=False))
    missing = [r for r in receipted if by_receipt[r] not in bodies]
    assert not missing, f"{len(missing)} receipted messages are not on Amazon MQ"
    stopped_facts = _facts(tmp_path / "facts.jsonl", "proxy_stopped")
    assert stopped_facts and stopped_facts[0]["sessions_closed"] == 1


def test_transaction_finishes_under_the_routes_it_began_with(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo, tmp_path: Path
) -> None:
    dest = unique_queue("tx-routes")
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "legacy")))
    proxy = make_proxy("", routes_file=routes_file)
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    tx = client.conn.begin()
    first = client.send(dest, "before reload", transaction=tx)
    assert client.wait_receipts([first])
    routes_file.write_text(routes_yaml(legacy, amazonmq, _route(dest, "cutover")))
    assert proxy.reload() is True
    second = client.send(dest, "after reload, same transaction", transaction=tx)
    outside = client.send(dest, "after reload, no transaction")
    client.conn.commit(transaction=tx, headers={"receipt": "commit"})
    assert client.wait_receipts([second, outside, "commit"])
    client.close()
    assert [m.body for m in drain(legacy, dest)] == [
        b"before reload",
        b"after reload, same transaction",
    ]
    assert [m.body for m in drain(amazonmq, dest)] == [b"after reload, no transaction"]
