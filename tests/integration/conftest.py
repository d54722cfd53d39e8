"""Fixtures for integration tests: the two real brokers and a proxy per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import brokers
from .brokers import BrokerInfo
from .faults import Relay
from .harness import RunningProxy, routes_yaml, start_proxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def standard_brokers() -> tuple[BrokerInfo, BrokerInfo]:
    """legacy (plain STOMP) and amazonmq (STOMP+SSL, its own login), started if needed."""
    legacy, amazonmq = brokers.ensure_standard()
    os.environ["STRANGLER_TEST_AMQ_USER"] = amazonmq.username
    os.environ["STRANGLER_TEST_AMQ_PASSWORD"] = amazonmq.password
    return legacy, amazonmq


@pytest.fixture
def legacy(standard_brokers: tuple[BrokerInfo, BrokerInfo]) -> BrokerInfo:
    return standard_brokers[0]


@pytest.fixture
def amazonmq(standard_brokers: tuple[BrokerInfo, BrokerInfo]) -> BrokerInfo:
    return standard_brokers[1]


@pytest.fixture
def relay(amazonmq: BrokerInfo) -> Iterator[Relay]:
    """Amazon MQ behind a relay the test can sever, cut or stall (``make_proxy(...,
    amazonmq_port=relay.port)``)."""
    with Relay(amazonmq.port) as started:
        yield started


ProxyFactory = Callable[..., RunningProxy]


@pytest.fixture
def make_proxy(tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo) -> Iterator[ProxyFactory]:
    """``make_proxy(routes_body, **settings)`` starts a proxy with those routes."""
    running: list[RunningProxy] = []

    def factory(
        routes: str,
        *,
        amazonmq_port: int | None = None,
        extra: str = "",
        amazonmq_block: str | None = None,
        watch: bool = False,
        routes_file: Path | None = None,
        **settings: Any,
    ) -> RunningProxy:
        index = len(running)
        if routes_file is None:
            routes_file = tmp_path / f"routes{index}.yaml"
            routes_file.write_text(
                routes_yaml(
                    legacy,
                    amazonmq,
                    routes,
                    amazonmq_port=amazonmq_port,
                    extra=extra,
                    amazonmq_block=amazonmq_block,
                )
            )
        proxy = start_proxy(routes_file, tmp_path / f"facts{index}.jsonl", watch=watch, **settings)
        running.append(proxy)
        return proxy

    yield factory
    for proxy in running:
        proxy.stop()
