"""The drain journal: messages that may be on Amazon MQ while legacy still holds them.

A message is at risk of being moved twice from the moment drain sends it to Amazon MQ
until legacy confirmed its ACK. The journal names those messages ("suspects") on disk
*before* they are sent, so a drain that stops anywhere (killed, crashed, a broker lost)
leaves their ids behind. The next drain of the queue reads them, and each one it meets
again on legacy is moved again and reported (``drain_duplicate_possible``): it may now be
on Amazon MQ twice, recognisable by its trace id.

Invariants:
- ``add`` writes the file (temp file, fsync, rename) before returning, and the mover sends
  only after it; ``moved`` only forgets (the next write drops the id): an id the file still
  lists only over-reports.
- Suspects of earlier runs are forgotten when this run moves them again, or when it finds
  the queue empty (then legacy had taken their ACKs before the earlier run stopped).
- One drain per journal: an exclusive ``flock`` on ``FILE.lock``, which the kernel
  releases when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

VERSION: Final = 1


class JournalError(Exception):
    """The journal cannot be used: unreadable, another queue's, or locked by another drain."""


def default_path(legacy_url: str, destination: str) -> Path:
    """``$XDG_STATE_HOME/strangler/drain/<queue>-<hash of broker and queue>.json``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", destination.removeprefix("/queue/"))[:80]
    digest = hashlib.sha256(f"{legacy_url}\0{destination}".encode()).hexdigest()[:12]
    return Path(state) / "strangler" / "drain" / f"{slug}-{digest}.json"


class Journal:
    def __init__(self, path: str | os.PathLike[str], destination: str) -> None:
        self.path = Path(path)
        self.destination = destination
        self.earlier: set[str] = set()  # suspects left by earlier runs, not met again yet
        self._current: Counter[str] = Counter()  # sent in this run, ACK not confirmed
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Take the lock and read what earlier runs left."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(f"{self.path}.lock", "ab")  # noqa: SIM115 kept open: it holds the lock
        except OSError as exc:
            raise JournalError(f"journal {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise JournalError(
                f"journal {self.path} is locked: another drain of {self.destination} is running"
            ) from None
        self._lock = lock
        try:
            self.earlier = self._read()
        except JournalError:
            self.close()
            raise

    def _read(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            raise JournalError(f"journal {self.path}: unreadable: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise JournalError(f"journal {self.path}: not a strangler drain journal")
        if data.get("destination") != self.destination:
            raise JournalError(
                f"journal {self.path} belongs to {data.get('destination')!r}, "
                f"not {self.destination!r}"
            )
        suspects = data.get("suspects")
        if not isinstance(suspects, list) or not all(isinstance(s, str) for s in suspects):
            raise JournalError(f"journal {self.path}: suspects must be a list of ids")
        return set(suspects)

    @property
    def suspects(self) -> set[str]:
        return self.earlier | set(self._current)

    def is_earlier_suspect(self, key: str) -> bool:
        return key in self.earlier

    def add(self, keys: Iterable[str]) -> None:
        """Record ``keys`` as about to be sent; on disk when this returns."""
        self._current.update(keys)
        self.save()

    def moved(self, key: str) -> None:
        """Legacy confirmed the ACK of ``key``: it is no longer at risk."""
        self._current[key] -= 1
        if self._current[key] <= 0:
            del self._current[key]
        self.earlier.discard(key)

    def queue_empty(self) -> None:
        """Legacy's queue is empty: earlier suspects not met again were acknowledged."""
        self.earlier.clear()

    def save(self) -> None:
        data = {
            "version": VERSION,
            "destination": self.destination,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "suspects": sorted(self.suspects),
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            raise JournalError(
                f"journal {self.path}: cannot write: {exc.strerror or exc}"
            ) from None

    def close(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
