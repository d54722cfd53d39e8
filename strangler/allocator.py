"""glibc's malloc, set for a process that allocates buffers of up to 256 KiB per read.

By default glibc serves a block of 128 KiB or more with an mmap of its own (a threshold
that rises up to 32 MiB once such a block is freed) and gives the top of its heap back to
the kernel whenever more than 128 KiB of it is free. The proxy reads up to 256 KiB at a
time and makes a few such blocks per read (the read, the frame pump's output, a partial
frame's buffer), so its heap grew and shrank on nearly every read of large frames, and
each growth was fresh pages for the kernel to fault in and zero: ``brk`` about once a
read and page faults about a third of the proxy's CPU in bench S4 (64 KiB frames; strace
and perf), 57-70 us a message against 43-50 with the settings below (bench/README.md,
"2026-12-08, later").

``tune()`` (called once by ``strangler run``) sets mmap only from 1 MiB and keeps up to
4 MiB of free heap: the buffers of one read come from memory the process already holds.
The cost is at most those 4 MiB of RSS kept after a burst of large frames. An operator's
own ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc`` tunables
win: then nothing is changed. Another libc (no ``mallopt``) is left as it is.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from typing import Final

M_TRIM_THRESHOLD: Final = -1  # <malloc.h>
M_MMAP_THRESHOLD: Final = -3
MMAP_FROM: Final = 1 << 20
TRIM_ABOVE: Final = 4 << 20
_OWN_SETTINGS: Final = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

state = "not tuned"  # what tune() did, for the proxy_started fact


def tune(environ: Mapping[str, str] = os.environ) -> str:
    """Set glibc's thresholds (see the module's docstring); say what was done."""
    global state
    if any(name in environ for name in _OWN_SETTINGS) or "glibc.malloc." in environ.get(
        "GLIBC_TUNABLES", ""
    ):
        state = "as the environment sets it"
    else:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is None:
            state = "the platform's (no mallopt)"
        else:
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            mallopt.restype = ctypes.c_int
            done = mallopt(M_MMAP_THRESHOLD, MMAP_FROM) and mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE)
            state = "mmap from 1 MiB, trim above 4 MiB" if done else "mallopt refused"
    return state
