"""Code-level fault injection: an unexpected exception at each place the session's data
path can fail is settled, never a hang. Every message gets its outcome fact, the client
gets each receipt or an ERROR, and an ``internal_error`` fact names the place."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stomp

from strangler.proxy.connection import Connection
from strangler.proxy.core.session import SessionCore
from strangler.upstream import BrokerLink

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .harness import connect, unique_queue

pytestmark = pytest.mark.integration

# Where the data path can raise: the Amazon MQ link (a frame submitted; a receipt read by
# its own reader task), the legacy socket, and each of the
# core's handlers the driver calls (what an unforeseen bug in them would look like).
POINTS: dict[str, tuple[type, str]] = {
    "link submit": (BrokerLink, "submit"),
    "link reader": (BrokerLink, "_answered"),
    "socket write": (Connection, "write"),
    "core client data": (SessionCore, "client_data"),
    "core legacy data": (SessionCore, "legacy_data"),
    "core amazonmq outcome": (SessionCore, "amazonmq_outcome"),
}


class Injector:
    """Raises once, on the first call after ``arm``, at the patched place."""

    def __init__(self) -> None:
        self.armed = False
        self.fired = False

    def wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def raising(*args: Any, **kwargs: Any) -> Any:
            if self.armed and not self.fired:
                self.fired = True
                raise RuntimeError("injected fault")
            return original(*args, **kwargs)

        return raising


@pytest.fixture(params=sorted(POINTS))
def injector(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Injector]:
    owner, name = POINTS[request.param]
    injector = Injector()
    monkeypatch.setattr(owner, name, injector.wrap(getattr(owner, name)))
    yield injector


def test_an_unexpected_exception_settles_every_message_and_is_a_fact(
    injector: Injector, make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    moved, copied = unique_queue("inject-moved"), unique_queue("inject-copied")
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{moved}'}}, mode: cutover, on_failure: legacy}}\n"
        f"  - {{name: copied, match: {{exact: '{copied}'}}, mode: mirror}}\n"
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    injector.armed = True
    receipts: list[str] = []
    for i in range(10):
        try:
            receipts.append(client.send(moved if i % 2 else copied, f"m{i}"))
        except (stomp.exception.NotConnectedException, OSError):
            # the proxy already answered the fault with an ERROR and closed (stomp.py's
            # reader may close the socket while this thread writes to it: EBADF)
            break
    recorder = client.recorder

    def settled() -> bool:
        answered = set(recorder.receipts)
        return bool(recorder.errors) or recorder.disconnected.is_set() or set(receipts) <= answered

    assert recorder.wait(settled), "the client was left hanging"
    assert injector.fired
    (fact,) = proxy.wait_fact("internal_error")
    assert "injected fault" in fact["reason"] and fact["where"]
    assert fact["session"]  # the session's own report, not the event loop's last resort
    proxy.wait_fact("client_disconnected")
    routed = proxy.facts("message_routed")
    outcomes = {
        f["trace_id"]
        for name in (
            "message_confirmed",
            "message_fell_back",
            "message_rejected",
            "message_unconfirmed",
        )
        for f in proxy.facts(name)
    }
    copies = {f["trace_id"] for f in proxy.facts("message_confirmed", role="mirror")} | {
        f["trace_id"] for f in proxy.facts("message_mirror_failed")
    }
    for message in routed:
        assert message["trace_id"] in outcomes, message  # the producer's message
        if message["mode"] == "mirror" and "amazonmq" in message["targets"]:
            assert message["trace_id"] in copies, message  # and its copy
    # What the client was told agrees: a receipt only for what a broker confirmed.
    confirmed = len(proxy.facts("message_confirmed", role="primary"))
    assert len(set(recorder.receipts) & set(receipts)) <= confirmed
    client.conn.disconnect()
