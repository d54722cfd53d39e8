"""Reading a file an operator named (routes.yaml, a CA, a credentials file), safely.

Invariants:
- Only a regular file is read (symlinks are followed: a ConfigMap's routes.yaml is one).
  A FIFO, a device (``/dev/zero``), a socket or a directory is refused with its kind, before
  any byte is read, so a reader never blocks on a FIFO nor reads without end.
- The open is non-blocking (``O_NONBLOCK``): opening a FIFO with no writer returns at once.
- At most ``max_bytes`` are read; a larger file (or one that grows past it while read) is
  refused, so memory is bounded whatever the file.
- Every refusal is ``UnreadableFile`` with the path and a short reason an operator can act
  on; nothing else escapes (``OSError`` is mapped here, in one place).
"""

from __future__ import annotations

import os
import stat


class UnreadableFile(Exception):
    """``path`` could not be read: missing, not permitted, not a regular file, too large."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _check(path: str, st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFile(path, f"not a regular file ({_kind(st.st_mode)})")
    if st.st_size > max_bytes:
        raise UnreadableFile(path, f"larger than {max_bytes} bytes ({st.st_size} bytes)")


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path`` (at most ``max_bytes``), or ``UnreadableFile``."""
    name = os.fspath(path)
    try:
        # Checked before opening too: opening some devices has effects of its own.
        _check(name, os.stat(name), max_bytes)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise UnreadableFile(name, exc.strerror or type(exc).__name__) from None
    try:
        _check(name, os.fstat(fd), max_bytes)  # the file opened may not be the one stat saw
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 16, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise UnreadableFile(name, f"larger than {max_bytes} bytes (it grew while read)")
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(name, exc.strerror or type(exc).__name__) from None
    finally:
        os.close(fd)
