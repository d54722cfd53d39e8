"""stomp.py notices nothing: the same conversation (``library_clients.conversation``) with
its 1.0, 1.1 and 1.2 connection classes, in the listener and the polling style, directly
against legacy and through the proxy in every mode; what stomp.py told the application
must be the same (``transparency.differences``, with its normalisations).

A known difference is a strict xfail naming its issue #20 item (as in
test_transparency.py): once the proxy is fixed, the marker must go.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .brokers import BrokerInfo
from .differences_found import known
from .library_clients import STYLES, LibraryRun, conversation
from .modes import ALL_MODES, ProxyPool, SideBySide, selected_params
from .transparency import differences

pytestmark = pytest.mark.integration

VERSIONS = ("1.0", "1.1", "1.2")
# (mode, version, style) -> the issue #20 items that explain the difference
# (mode, version, style) -> the issue #20 items that explain a difference; none is open
KNOWN: dict[tuple[str, str, str], tuple[int, ...]] = {}


@pytest.fixture(scope="module")
def pool(
    standard_brokers: tuple[BrokerInfo, BrokerInfo], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyPool]:
    legacy, amazonmq = standard_brokers
    running = ProxyPool(legacy, amazonmq, tmp_path_factory.mktemp("library"))
    yield running
    running.stop()


def run(port: int, version: str, style: str) -> LibraryRun:
    result = LibraryRun(port)
    try:
        conversation(result, version, style)
    finally:
        result.close()
    return result


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, pool: ProxyPool, standard_brokers: tuple[BrokerInfo, BrokerInfo]
) -> Iterator[SideBySide[LibraryRun]]:
    """Every selected run, started at once: direct per (version, style), proxied per mode."""
    legacy = standard_brokers[0]
    started: SideBySide[LibraryRun] = SideBySide()
    for mode, version, style in selected_params(request.session.items, "mode", "version", "style"):
        started.start((version, style), run, legacy.port, version, style)
        started.start((mode, version, style), run, pool.get(mode).port, version, style)
    yield started
    started.close()


def _params() -> list[object]:
    params: list[object] = []
    for mode in ALL_MODES:
        for version in VERSIONS:
            for style in STYLES:
                marks = known(KNOWN.get((mode, version, style), ()))
                params.append(
                    pytest.param(mode, version, style, id=f"{mode}-{version}-{style}", marks=marks)
                )
    return params


@pytest.mark.parametrize(("mode", "version", "style"), _params())
def test_stomp_py_notices_no_proxy(
    mode: str, version: str, style: str, runs: SideBySide[LibraryRun]
) -> None:
    direct = runs.result((version, style))
    proxied = runs.result((mode, version, style))
    found = differences(direct, proxied, split=mode == "split")
    assert not found, "\n".join(found)
