"""The progress line of long commands: ``replay`` and ``drain``."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

PROGRESS_EVERY: Final = 2.0  # seconds between progress lines off a terminal
RATE_WINDOW: Final = 10.0  # seconds the "current" rate mostly reflects


def _duration(seconds: float) -> str:
    """``H:MM:SS`` (hours as many as it takes)."""
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Progress:
    """A progress line for long work (``replay``, ``drain``): the count, the current rate
    and the time left at that rate, on the same cadence for both: rewritten in place twice
    a second on a terminal, a new line every ``PROGRESS_EVERY`` seconds otherwise (logs).

    The rate is the recent one (weighted over about ``RATE_WINDOW`` seconds), so a rate
    limit, a slow broker or a burst shows within seconds. ``total`` may be an estimate
    (drain counts its backlog before moving it): past it, the line shows the count without
    a percentage or a time left. ``note`` adds a caller's detail.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        *,
        every: float | None = None,
        label: str = "replay",
        noun: str = "confirmed",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.clock = clock
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = every if every is not None else (0.5 if self.tty else PROGRESS_EVERY)
        self.label = label
        self.noun = noun
        self.started = self.clock()
        self.last = self.started
        self.first: int | None = None
        self.rate: float | None = None  # messages/s, recent
        self._sampled = (self.started, 0)
        self.shown = False

    def update(self, confirmed: int, *, force: bool = False, note: str = "") -> None:
        now = self.clock()
        if self.first is None:
            self.first = confirmed
            self._sampled = (self.started, confirmed)
        if not force and now - self.last < self.every:
            return
        self.last = now
        self._sample(now, confirmed)
        rate = self.rate or 0.0
        if confirmed <= self.total:
            percent = 100.0 * confirmed / self.total if self.total else 100.0
            done = f"{confirmed}/{self.total} {self.noun} ({percent:.1f}%)"
            left = self.total - confirmed
            eta = "0:00:00" if not left else _duration(left / rate) if rate > 0 else "unknown"
            done += f", {rate:.0f} msg/s, ETA {eta}"
        else:
            done = f"{confirmed} {self.noun} (counted {self.total} before), {rate:.0f} msg/s"
        text = f"{self.label}: {done}{note}"
        if self.tty:
            self.stream.write(f"\r{text}\033[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def _sample(self, now: float, count: int) -> None:
        """Fold the rate since the last sample into the recent rate."""
        then, before = self._sampled
        elapsed = now - then
        if elapsed <= 0:
            return
        rate = (count - before) / elapsed
        if self.rate is None:
            self.rate = rate
        else:
            weight = 1.0 - math.exp(-elapsed / RATE_WINDOW)
            self.rate += weight * (rate - self.rate)
        self._sampled = (now, count)

    def finish(self, confirmed: int, *, note: str = "") -> None:
        """A last line with the totals (when any line was due), then ``close``."""
        if self.shown or self.clock() - self.started >= self.every:
            self.update(confirmed, force=True, note=note)
        self.close()

    def close(self) -> None:
        """End the terminal's progress line, so what follows starts on its own line."""
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
