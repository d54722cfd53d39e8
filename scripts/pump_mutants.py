"""Does the differential test catch a broken compiled pump? Build mutants and see.

    .venv/bin/python scripts/pump_mutants.py            # every mutant, ~1 min each
    .venv/bin/python scripts/pump_mutants.py eol crlf   # the ones whose name starts so

Each mutant is one small edit of strangler/stomp/_pump.pyx (a bug the fast path could
have). For each, the package and the tests are copied to a temporary folder, the edit is
applied, the extension is built in place there (Cython from the dev extra, gcc), and
tests/unit/stomp/test_pump_differential.py runs against it. A mutant must make the test
fail; the script exits 1 if one survives (or does not build, or the edit no longer
applies). The unmutated copy must pass first, so a failure means the mutant was caught.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYX = Path("strangler/stomp/_pump.pyx")
TEST = "tests/unit/stomp/test_pump_differential.py"

# name: (what the bug is, text in _pump.pyx, its replacement)
MUTANTS: dict[str, tuple[str, str, str]] = {
    "first-value": (
        "the last of repeated headers wins instead of the first",
        "                if vstart[k] < 0:\n                    name =",
        "                if True:\n                    name =",
    ),
    "crlf": (
        "a header line ending in CRLF is read on the fast path (its CR kept in the value)",
        "                elif c == CR:\n                    return DECLINE\n",
        "",
    ),
    "eol-end": (
        "eol_end after a CRLF is one byte short",
        "record.eol_end = record.end + 2",
        "record.eol_end = record.end + 1",
    ),
    "length-limit": (
        "the content-length size check forgets the NUL",
        "if body_start - s + length + 1 > self._max_frame:",
        "if body_start - s + length > self._max_frame:",
    ),
    "escapes": (
        "a backslash in a 1.1/1.2 header is not sent to the slow path",
        "        if backslash and not verbatim:\n            return DECLINE\n",
        "",
    ),
    "splice-at": (
        "the trace line goes before the command line's LF",
        "        if command == _SEND and self._splice is not None:\n"
        "            record.trace = self._next_trace()\n"
        "            record._line_len = PyBytes_GET_SIZE(self._head) + len(record.trace) + 1\n"
        "            record.splice_at = nl + 1 + self._shift\n",
        "        if command == _SEND and self._splice is not None:\n"
        "            record.trace = self._next_trace()\n"
        "            record._line_len = PyBytes_GET_SIZE(self._head) + len(record.trace) + 1\n"
        "            record.splice_at = nl + self._shift\n",
    ),
}


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)


def build_and_test(root: Path) -> tuple[bool, str]:
    """(test passed, output tail) for the copy at ``root``; raises if it does not build."""
    built = run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], root)
    if built.returncode != 0 or not list((root / PYX.parent).glob("_pump*.so")):
        raise RuntimeError(f"build failed:\n{built.stderr[-2000:]}")
    tested = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q", TEST], root)
    return tested.returncode == 0, (tested.stdout + tested.stderr)[-600:]


def copy_tree(to: Path) -> None:
    for name in ("strangler", "tests"):
        shutil.copytree(
            REPO / name, to / name, ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__")
        )
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, to / name)


def main(argv: list[str]) -> int:
    chosen = [n for n in MUTANTS if not argv or any(n.startswith(a) for a in argv)]
    survivors = 0
    with tempfile.TemporaryDirectory(prefix="strangler-mutants-") as tmp:
        base = Path(tmp) / "original"
        copy_tree(base)
        passed, tail = build_and_test(base)
        if not passed:
            print(f"the unmutated build fails the test:\n{tail}")
            return 1
        print("unmutated: passes", flush=True)
        for name in chosen:
            what, old, new = MUTANTS[name]
            root = Path(tmp) / name
            copy_tree(root)
            source = (root / PYX).read_text()
            if source.count(old) != 1:
                print(f"{name}: the edit no longer applies to {PYX} (update this script)")
                survivors += 1
                continue
            (root / PYX).write_text(source.replace(old, new))
            passed, tail = build_and_test(root)
            verdict = "SURVIVED (the test missed it)" if passed else "caught"
            survivors += passed
            print(f"{name}: {what}: {verdict}", flush=True)
            if not passed:
                failing = [ln for ln in tail.splitlines() if ln.startswith(("E ", "FAILED"))]
                print("    " + "\n    ".join(failing[:3]))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
