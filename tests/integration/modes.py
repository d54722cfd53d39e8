"""The proxies of the transparency tests, one per mode, and conversations run side by side.

Each proxy's routes put ``/queue/tx.`` and ``/topic/tx.`` (the conversations' names,
``conversations.Bed.dest``) in its mode; every other name stays on legacy. Its writes to
clients are recorded (``pieces.WriteLog``).

Conversations wait for events, not for time, so running many at once changes no
outcome; it overlaps the waits that end empty-handed (a difference), which would
otherwise add up. ``SideBySide`` runs them on a few threads and hands each test its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

from .brokers import BrokerInfo
from .faults import Relay
from .harness import RunningProxy, routes_yaml, start_proxy
from .pieces import WriteLog

ALL_MODES = ("legacy", "mirror", "split", "cutover")
_ROUTE = {
    "legacy": "mode: legacy",
    "mirror": "mode: mirror",
    # Keyed by the body (conversations.send): p:0, p:1 and the sentinel go to Amazon MQ,
    # p:2, p:3 to legacy, on every run.
    "split": "mode: split, weight: 50, sticky_header: split-key, on_failure: reject",
    "cutover": "mode: cutover, on_failure: reject",
}
# Split proxies reach Amazon MQ 50 ms away (as a region is from a data centre), so that
# which broker confirms first is decided by distance on every run, not by scheduling.
_MODE_SETTINGS: dict[str, dict[str, Any]] = {"split": {"amazonmq_latency": 0.05}}
# A cutover consumer's legacy side is checked for a backlog after this long without a
# message from legacy; long here so that no check falls inside a conversation (the
# drained_backlog case asks for a short one and waits for it).
_QUIET = 60.0

Settings = tuple[tuple[str, float], ...]
T = TypeVar("T")


class ProxyPool:
    """One proxy per (mode, settings), started on first use, stopped at the end."""

    def __init__(self, legacy: BrokerInfo, amazonmq: BrokerInfo, folder: Path) -> None:
        self._legacy = legacy
        self._amazonmq = amazonmq
        self._folder = folder
        self._running: dict[tuple[str, Settings], RunningProxy] = {}
        self.writes: dict[int, WriteLog] = {}  # proxy port -> its writes to clients
        self._relays: list[Relay] = []

    def get(self, mode: str, settings: Settings = ()) -> RunningProxy:
        """The proxy for ``mode``; ``settings`` are ProxySettings fields, and
        ``amazonmq_latency``: seconds a relay adds to each chunk between the proxy and
        Amazon MQ, each way (a far region, or a busy broker)."""
        key = (mode, settings)
        if key not in self._running:
            name = f"{mode}{len(self._running)}"
            routes = "".join(
                f"  - {{name: {kind}, match: {{prefix: /{kind}/tx.}}, {_ROUTE[mode]}}}\n"
                for kind in ("queue", "topic")
            )
            options: dict[str, Any] = {
                "backlog_check_interval": _QUIET,
                **_MODE_SETTINGS.get(mode, {}),
                **dict(settings),
            }
            amazonmq_port = None
            latency = options.pop("amazonmq_latency", None)
            if latency is not None:
                relay = Relay(self._amazonmq.port).start()
                relay.slow(latency)
                self._relays.append(relay)
                amazonmq_port = relay.port
            routes_file = self._folder / f"{name}.yaml"
            routes_file.write_text(
                routes_yaml(self._legacy, self._amazonmq, routes, amazonmq_port=amazonmq_port)
            )
            proxy = start_proxy(routes_file, self._folder / f"{name}.jsonl", **options)
            self.writes[proxy.port] = proxy.server.ctx.tap = WriteLog()
            self._running[key] = proxy
        return self._running[key]

    def stop(self) -> None:
        for proxy in self._running.values():
            proxy.stop()
        for relay in self._relays:
            relay.close()


class SideBySide(Generic[T]):
    """Jobs started at once, each result fetched by its key (a job's exception with it)."""

    def __init__(self, workers: int = 8) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="conversation")
        self._jobs: dict[Hashable, Future[T]] = {}

    def start(self, key: Hashable, job: Callable[..., T], *args: Any) -> None:
        if key not in self._jobs:
            self._jobs[key] = self._executor.submit(job, *args)

    def result(self, key: Hashable) -> T:
        return self._jobs[key].result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def selected_params(items: list[Any], *names: str) -> list[tuple[Any, ...]]:
    """The values of parameters ``names`` of every selected test that has them all."""
    found = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if all(name in params for name in names):
            found.append(tuple(params[name] for name in names))
    return found
