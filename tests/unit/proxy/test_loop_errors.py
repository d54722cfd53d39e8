"""The event loop's last resort: an exception nothing awaited is a fact and a log line
(#14.3), on asyncio's loop and on uvloop's, as ``strangler run`` uses either."""

from __future__ import annotations

import asyncio
import gc
import io
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from strangler.facts import Fact, FactSink
from strangler.proxy.context import ProxyContext, ProxySettings, RoutesHolder
from strangler.proxy.loop_errors import loop_exception_handler
from strangler.proxy.server import ProxyServer
from strangler.routes import parse_routes

ROUTES = """\
brokers:
  legacy: {url: "stomp://127.0.0.1:9"}
routes: []
"""
LOOPS: list[Callable[[], asyncio.AbstractEventLoop]] = [
    asyncio.new_event_loop,
    uvloop.new_event_loop,
]


def recorded(sink: FactSink) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    sink.listeners.append(lambda fact, fields: seen.append((fact, dict(fields))))
    return seen


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_callback_that_raises_is_an_internal_error_fact_and_a_log_line(
    new_loop: Callable[[], asyncio.AbstractEventLoop], caplog: pytest.LogCaptureFixture
) -> None:
    sink = FactSink(io.StringIO())
    seen = recorded(sink)
    loop = new_loop()
    try:
        loop.set_exception_handler(loop_exception_handler(sink))

        def broken() -> None:
            raise RuntimeError("a bug in a callback")

        loop.call_soon(broken)
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        loop.close()
        sink.close()
    assert [fact for fact, _ in seen] == [Fact.INTERNAL_ERROR]
    fields = seen[0][1]
    assert fields["reason"] == "RuntimeError: a bug in a callback"
    assert fields["session"] is None and fields["where"].startswith("event loop:")
    assert "a bug in a callback" in caplog.text  # logged, traceback included


def test_a_task_dropped_with_its_exception_is_an_internal_error_fact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = FactSink(io.StringIO())
    seen = recorded(sink)
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(loop_exception_handler(sink))

        async def failing() -> None:
            raise ValueError("nobody awaited me")

        task = loop.create_task(failing(), name="the-forgotten-one")
        loop.run_until_complete(asyncio.sleep(0.01))
        assert task.done()
        del task  # its exception never retrieved: asyncio reports it when it is collected
        gc.collect()
    finally:
        loop.close()
        sink.close()
    assert [fact for fact, _ in seen] == [Fact.INTERNAL_ERROR]
    assert seen[0][1]["reason"] == "ValueError: nobody awaited me"
    assert "the-forgotten-one" in seen[0][1]["where"]
    assert "nobody awaited me" in caplog.text


def test_the_proxy_installs_the_handler_and_keeps_one_its_owner_set() -> None:
    async def handler_after_start(preset: bool) -> object:
        loop = asyncio.get_running_loop()
        if preset:
            loop.set_exception_handler(lambda loop, context: None)
        sink = FactSink(io.StringIO())
        settings = ProxySettings(listen_host="127.0.0.1", listen_port=0)
        server = ProxyServer(
            ProxyContext(settings, RoutesHolder(parse_routes(ROUTES, "routes.yaml")), sink)
        )
        await server.start()
        try:
            return loop.get_exception_handler()
        finally:
            await server.stop(grace=0.1)
            sink.close()

    installed = asyncio.run(handler_after_start(False))
    assert getattr(installed, "__qualname__", "").startswith("loop_exception_handler")
    kept = asyncio.run(handler_after_start(True))
    assert getattr(kept, "__name__", "") == "<lambda>"
