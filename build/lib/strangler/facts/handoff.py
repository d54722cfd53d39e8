"""Work handed from the event loop to one background writer thread, and flushing it.

Used by the fact sink and by the capture writer. Each counter has exactly one writing
thread (``handed``: the producer side, ``finished``: the writer), so no lock guards
them; the condition only wakes a ``flush`` waiting for the writer to catch up.
"""

from __future__ import annotations

import threading
import time


class Handoff:
    __slots__ = ("_done", "finished", "handed", "wake")

    def __init__(self) -> None:
        self.handed = 0
        self.finished = 0
        self.wake = threading.Event()
        self._done = threading.Condition()

    def wait_for_work(self, interval: float) -> None:
        """Writer thread: sleep until woken or ``interval`` passed."""
        self.wake.wait(interval)
        self.wake.clear()

    def finish(self, count: int) -> None:
        """Writer thread: ``count`` more handed items are done (written or given up)."""
        with self._done:
            self.finished += count
            self._done.notify_all()

    def flush(self, timeout: float) -> bool:
        """Block until everything handed before this call is finished; False on timeout."""
        deadline = time.monotonic() + timeout
        target = self.handed
        with self._done:
            while self.finished < target:
                self.wake.set()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._done.wait(min(remaining, 0.1))
        return True
