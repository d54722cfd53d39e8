"""The event loop's last resort (#14.3): an exception nothing awaited (a task dropped
with its error, a callback or a protocol method that raised) is logged with its
traceback, as asyncio does by default, and written as an ``internal_error`` fact, so
nothing fails in silence. A session's own errors never get here: its driver resolves
its frames by their routes and writes the fact itself (``SessionDriver``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..facts import Fact, FactSink

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]


def loop_exception_handler(facts: FactSink) -> Handler:
    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message") or "unhandled error in the event loop")
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else message
        facts.emit(
            Fact.INTERNAL_ERROR, session=None, reason=reason[:500], where=_where(context, message)
        )
        loop.default_exception_handler(context)  # the log line, with the traceback

    return handle


def install(facts: FactSink) -> None:
    """Give the running loop the handler, unless its owner installed one already."""
    loop = asyncio.get_running_loop()
    if loop.get_exception_handler() is None:
        loop.set_exception_handler(loop_exception_handler(facts))


def _where(context: dict[str, Any], message: str) -> str:
    """Which task, callback or protocol, short: the fact names it, the log has the rest."""
    task = context.get("task") or context.get("future")
    if isinstance(task, asyncio.Task):
        return f"event loop: task {task.get_name()}: {message}"[:200]
    for key in ("handle", "protocol", "transport"):
        if context.get(key) is not None:
            return f"event loop: {key} {type(context[key]).__name__}: {message}"[:200]
    return f"event loop: {message}"[:200]
