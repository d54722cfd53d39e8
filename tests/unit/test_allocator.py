"""strangler/allocator.py: glibc's thresholds, set unless the operator set them."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from strangler import allocator

# A 300 KiB block: glibc's default mmaps it (over 128 KiB); tuned, it comes from the heap.
# mallinfo2().hblkhd is the bytes held in mmapped blocks.
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from strangler import allocator

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "tune":
        print(allocator.tune({}))
    before = libc.mallinfo2().hblkhd
    block = bytearray(300 * 1024)
    print(libc.mallinfo2().hblkhd - before)
    """
)


def probe(arg: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, arg], capture_output=True, text=True, check=True, env={}
    )
    return done.stdout.split("\n")[:-1]


@pytest.fixture(autouse=True)
def _keep_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the process's proxy_started would say stays as it was after each test."""
    monkeypatch.setattr(allocator, "state", allocator.state)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and mallinfo2")
def test_tuned_a_read_sized_block_comes_from_the_heap() -> None:
    assert int(probe("as-is")[0]) >= 300 * 1024  # the default: an mmap of its own
    said, mapped = probe("tune")
    assert said == "mmap from 1 MiB, trim above 4 MiB"
    assert int(mapped) == 0


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ],
)
def test_the_operators_own_settings_win(environ: dict[str, str]) -> None:
    assert allocator.tune(environ) == "as the environment sets it"
    assert allocator.state == "as the environment sets it"


def test_other_tunables_do_not_stop_the_tuning() -> None:
    said = allocator.tune({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512"})
    assert said in ("mmap from 1 MiB, trim above 4 MiB", "the platform's (no mallopt)")
