"""Amazon MQ dying mid-stream, against real brokers killed with SIGKILL.

Every message a producer got a RECEIPT for must be on a broker afterwards;
messages in flight at the crash may exist twice (resent or fallen back after
the broker stored them but before its receipt arrived), never zero times.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import brokers
from .brokers import BrokerInfo, free_port
from .conftest import ProxyFactory
from .harness import WAIT, Client, connect, drain, traces_of, unique_queue

pytestmark = pytest.mark.integration

TOTAL = 200
WINDOW = 20  # receipts outstanding at most: bounds the possible duplicates


@pytest.fixture
def extra_brokers() -> Iterator[list[str]]:
    started: list[str] = []
    yield started
    for name in started:
        brokers.stop(name)
        shutil.rmtree(brokers.state_dir() / name, ignore_errors=True)


def _start(extra: list[str], label: str) -> BrokerInfo:
    name = f"{label}-{uuid.uuid4().hex[:6]}"
    extra.append(name)
    return brokers.start_one(name, "tls", free_port())


def _amazonmq(
    urls: list[BrokerInfo], on_failure: str, dest: str, tmp_path: Path
) -> tuple[str, str]:
    # Each stand-in has its own self-signed certificate: trust a bundle of them.
    ca = tmp_path / "ca-bundle.pem"
    ca.write_text("".join(Path(b.ca_file or "").read_text() for b in urls))
    listed = ", ".join(f"stomp+ssl://127.0.0.1:{b.port}" for b in urls)
    extra = (
        "  amazonmq:\n"
        f"    urls: [{listed}]\n"
        f"    ca_file: {ca}\n"
        "    credentials: {username_env: STRANGLER_TEST_AMQ_USER,"
        " password_env: STRANGLER_TEST_AMQ_PASSWORD}\n"
    )
    route = (
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover,"
        f" on_failure: {on_failure}}}\n"
    )
    return extra, route


def _send_with_crash(client: Client, dest: str, crash: threading.Event) -> list[str]:
    """Send TOTAL persistent messages in receipt windows; set ``crash`` halfway."""
    receipts: list[str] = []
    for i in range(TOTAL):
        receipts.append(client.send(dest, f"m{i}", headers={"persistent": "true"}))
        if len(receipts) % WINDOW == 0:
            assert client.wait_receipts(receipts[-WINDOW:]), f"window ending at {i} stuck"
        if i == TOTAL // 2:
            crash.set()
    assert client.wait_receipts(receipts)
    return receipts


def _crash_when(event: threading.Event, name: str) -> threading.Thread:
    def crash() -> None:
        event.wait(WAIT)
        brokers.kill(name)

    thread = threading.Thread(target=crash)
    thread.start()
    return thread


def test_active_broker_killed_mid_stream_fails_over_to_the_standby(
    make_proxy: ProxyFactory, legacy: BrokerInfo, extra_brokers: list[str], tmp_path: Path
) -> None:
    dest = unique_queue("failover")
    active, standby = _start(extra_brokers, "active"), _start(extra_brokers, "standby")
    extra, route = _amazonmq([active, standby], "reject", dest, tmp_path)
    proxy = make_proxy(route, amazonmq_block=extra)

    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    crash = threading.Event()
    crasher = _crash_when(crash, extra_brokers[0])
    try:
        _send_with_crash(client, dest, crash)
    except AssertionError:
        for f in proxy.facts():
            if f["event"] not in ("message_routed", "message_confirmed"):
                print(f)
        raise
    crasher.join(WAIT)
    client.close()
    assert not client.recorder.errors

    brokers.start_one(extra_brokers[0], "tls", active.port)  # recover its persisted messages
    found = Counter(traces_of(drain(active, dest)) + traces_of(drain(standby, dest)))
    routed = {f["trace_id"] for f in proxy.facts("message_routed", destination=dest)}
    assert set(found) == routed, "a receipted message is missing"
    duplicated = {trace for trace, n in found.items() if n > 1}
    resent = {f["trace_id"] for f in proxy.facts("message_resent")}
    assert duplicated <= resent, "a duplicate the facts do not explain"
    assert len(resent) <= WINDOW
    assert proxy.facts("broker_unavailable", broker="amazonmq")
    recovered = proxy.wait_fact("broker_recovered", broker="amazonmq")
    assert recovered[0]["endpoint"].endswith(f":{standby.port}")
    assert drain(legacy, dest) == []


def test_single_broker_killed_mid_stream_falls_back_to_legacy(
    make_proxy: ProxyFactory, legacy: BrokerInfo, extra_brokers: list[str], tmp_path: Path
) -> None:
    dest = unique_queue("crash-fallback")
    only = _start(extra_brokers, "only")
    extra, route = _amazonmq([only], "legacy", dest, tmp_path)
    proxy = make_proxy(route, amazonmq_block=extra)

    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    crash = threading.Event()
    crasher = _crash_when(crash, extra_brokers[0])
    receipts = _send_with_crash(client, dest, crash)
    crasher.join(WAIT)
    client.close()
    assert len(receipts) == TOTAL and not client.recorder.errors

    brokers.start_one(extra_brokers[0], "tls", only.port)
    on_amazonmq = traces_of(drain(only, dest))
    on_legacy = traces_of(drain(legacy, dest))
    found = Counter(on_amazonmq + on_legacy)
    routed = {f["trace_id"] for f in proxy.facts("message_routed", destination=dest)}
    assert set(found) == routed
    assert sum(found.values()) - len(found) <= WINDOW
    fell_back = {f["trace_id"] for f in proxy.facts("message_fell_back")}
    assert fell_back and set(on_legacy) == fell_back


def test_legacy_urls_are_tried_in_order_until_one_accepts(
    make_proxy: ProxyFactory, legacy: BrokerInfo, tmp_path: Path
) -> None:
    """``brokers.legacy.urls``: an endpoint that refuses the connection is passed over for
    the next one (a standby, a second listener), as for Amazon MQ; the client never knows."""
    dead = free_port()  # nothing listens there
    routes_file = tmp_path / "legacy-urls.yaml"
    routes_file.write_text(
        f"brokers:\n  legacy:\n    urls: [stomp://127.0.0.1:{dead}, {legacy.url}]\nroutes: []\n"
    )
    proxy = make_proxy("", routes_file=routes_file)
    dest = unique_queue("legacy-urls")
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    try:
        assert client.wait_receipts([client.send(dest, "via the second url")])
    finally:
        client.close()
    assert [m.body.decode() for m in drain(legacy, dest)] == ["via the second url"]
    assert proxy.facts("broker_unavailable") == []  # one endpoint down is not legacy down
