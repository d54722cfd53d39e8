"""Hot reload of routes.yaml: load, validate, plan, swap (or refuse).

Triggers: a change seen by watchfiles (which follows editors' rename-and-replace
and Kubernetes ConfigMap ``..data`` symlink swaps, because it watches the
*folder* and we compare content), SIGHUP, or a direct call.

Invariants:
- the running table is replaced only by a table that loaded and validated in
  full; a bad file leaves it in force and writes ``routes_rejected`` with the
  file, line and reason;
- the swap is one attribute assignment on the event loop, so a message is
  decided entirely under one table; transactions keep the table they began
  with (``Transaction.table``) until COMMIT/ABORT;
- a file whose content did not change (same version) is not "applied" again.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from ..facts import Fact
from ..routes import RoutesError, load_routes
from ..routes.plan import plan_change
from .context import ProxyContext


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
                new = await asyncio.to_thread(load_routes, self.path)
            except RoutesError as exc:
                self._ctx.facts.emit(
                    Fact.ROUTES_REJECTED,
                    trigger=trigger,
                    file=exc.file,
                    line=exc.line,
                    reason=exc.reason,
                    kept_version=self._ctx.routes.table.version,
                )
                return False
            except OSError as exc:
                self._ctx.facts.emit(
                    Fact.ROUTES_REJECTED,
                    trigger=trigger,
                    file=str(self.path),
                    line=None,
                    reason=f"cannot read: {exc.strerror or exc}",
                    kept_version=self._ctx.routes.table.version,
                )
                return False
            old = self._ctx.routes.table
            if new.version == old.version:
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
                listener()
            return True

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

        # The folder, not the file: a ConfigMap swaps a symlink next to it, editors rename.
        folder = self.path.absolute().parent
        async for _changes in awatch(folder, stop_event=self._stop, debounce=200, step=50):
            # Any change in the folder may be ours (symlink swaps rename other entries);
            # reload compares content, so unrelated changes cost one read.
            await self.reload("file changed")
