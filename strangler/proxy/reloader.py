"""Hot reload of routes.yaml: load, validate, plan, swap (or refuse).

Triggers: a change to the routes file seen by watchfiles, SIGHUP, or a direct call.
The watcher watches the routes file's folder (not the file: editors replace it by a
rename, and a Kubernetes ConfigMap swaps the ``..data`` symlink beside it) but reacts
only to the routes file's own name and to ``..data``: facts, captures or anything else
written in the same folder never trigger a reload. Subfolders are not watched.

Invariants:
- the running table is replaced only by a table that loaded and validated in
  full; a bad file leaves it in force and writes ``routes_rejected`` with the
  file, line and reason;
- the file is read by ``load_routes``: a regular file only, size-capped, opened
  without blocking, so a FIFO, ``/dev/zero`` or a huge file in its place is a
  ``routes_rejected``, never a hang or an exhausted memory;
- ``reload`` never raises: any unexpected exception is a ``routes_rejected`` with
  its reason (the running table stays), so neither SIGHUP nor the watcher can
  be stopped by a file;
- the watcher survives anything: an exception from watching itself is an
  ``internal_error`` fact, and watching starts again after a back-off;
- the swap is one attribute assignment on the event loop, so a message is
  decided entirely under one table; transactions keep the table they began
  with (``Transaction.table``) until COMMIT/ABORT;
- a file whose content did not change (same version) is not "applied" again:
  ``routes_unchanged`` says it was checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Final

from ..facts import Fact
from ..routes import RoutesError, load_routes
from ..routes.plan import plan_change
from .context import ProxyContext

# The symlink a ConfigMap volume swaps (to a new timestamped folder) on every update.
CONFIGMAP_DATA: Final = "..data"
# Watching again after watchfiles itself failed (e.g. the folder was removed): doubling.
_RETRY_FIRST: Final = 1.0
_RETRY_MAX: Final = 30.0


class RoutesReloader:
    def __init__(self, ctx: ProxyContext, path: str | Path) -> None:
        self._ctx = ctx
        self.path = Path(path)
        self._lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def reload(self, trigger: str) -> bool:
        """Apply the file if it is valid and different; True when a new table is in force."""
        async with self._lock:
            try:
                return await self._reload(trigger)
            except Exception as exc:  # a reload must never stop SIGHUP or the watcher
                self._reject(trigger, str(self.path), None, f"unexpected error: {_describe(exc)}")
                return False

    async def _reload(self, trigger: str) -> bool:
        try:
            new = await asyncio.to_thread(load_routes, self.path)
        except RoutesError as exc:
            self._reject(trigger, exc.file, exc.line, exc.reason)
            return False
        old = self._ctx.routes.table
        if new.version == old.version:
            self._ctx.facts.emit(Fact.ROUTES_UNCHANGED, trigger=trigger, routes_version=old.version)
            return False
        plan = plan_change(old, new)
        self._ctx.routes.table = new
        self._ctx.facts.emit(
            Fact.ROUTES_APPLIED,
            trigger=trigger,
            routes_version=new.version,
            previous_version=old.version,
            plan=plan.as_dict(),
        )
        for listener in self._ctx.routes_listeners:
            try:
                listener()
            except Exception as exc:  # the table is in force; one listener must not undo that
                self._internal_error("routes listener", exc)
        return True

    def _reject(self, trigger: str, file: str, line: int | None, reason: str) -> None:
        self._ctx.facts.emit(
            Fact.ROUTES_REJECTED,
            trigger=trigger,
            file=file,
            line=line,
            reason=reason,
            kept_version=self._ctx.routes.table.version,
        )

    def _internal_error(self, where: str, exc: BaseException) -> None:
        self._ctx.facts.emit(Fact.INTERNAL_ERROR, reason=_describe(exc), session=None, where=where)

    def is_routes_change(self, _change: object, path: str) -> bool:
        """watchfiles' filter: the routes file itself, or a ConfigMap's ``..data`` swap."""
        name = os.path.basename(path)
        return name == self.path.name or name == CONFIGMAP_DATA

    def start_watching(self) -> None:
        self._watch = asyncio.create_task(self._watch_forever())

    async def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def _watch_forever(self) -> None:
        from watchfiles import awatch

        folder = self.path.absolute().parent
        retry = _RETRY_FIRST
        while not self._stop.is_set():
            try:
                async for _changes in awatch(
                    folder,
                    watch_filter=self.is_routes_change,
                    stop_event=self._stop,
                    debounce=200,
                    step=50,
                    recursive=False,
                ):
                    retry = _RETRY_FIRST
                    await self.reload("file changed")
            except Exception as exc:  # e.g. the folder was removed: log it, watch again
                self._internal_error("routes watcher", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), retry)
                retry = min(retry * 2, _RETRY_MAX)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
