"""Which frame pump build runs, and how to tell: native.BUILD and `strangler --version`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strangler.stomp import pump

ROOT = Path(__file__).resolve().parents[3]
SHOW = (
    "from strangler.stomp import native, pump; "
    "print(native.BUILD, native.FramePump is pump.FramePump, native.FramePump.__module__)"
)


def python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "STRANGLER_NO_EXTENSIONS"}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_compiled_build_runs_when_it_is_built() -> None:
    assert python(SHOW) == "compiled False strangler.stomp._pump"


@pytest.mark.parametrize("value", ["1", "yes"])
def test_strangler_no_extensions_forces_the_pure_build(value: str) -> None:
    assert python(SHOW, STRANGLER_NO_EXTENSIONS=value) == "pure True strangler.stomp.pump"


def test_strangler_no_extensions_0_or_empty_does_not() -> None:
    assert python(SHOW, STRANGLER_NO_EXTENSIONS="0").startswith("compiled")
    assert python(SHOW, STRANGLER_NO_EXTENSIONS="").startswith("compiled")


def test_version_says_which_build_runs() -> None:
    exe = Path(sys.executable).parent / "strangler"
    code = "from strangler.cli import main; main(['--version'])"
    assert python(code).endswith("(frame pump: compiled)")
    assert python(code, STRANGLER_NO_EXTENSIONS="1").endswith(
        "(frame pump: pure (STRANGLER_NO_EXTENSIONS is set))"
    )
    if exe.exists():  # the installed entry point says the same
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
        assert "(frame pump: " in out.stdout


def test_a_missing_compiled_build_falls_back_to_pure_with_one_warning(tmp_path: Path) -> None:
    # A copy of the package without the extension: what a failed compile installs.
    code = (
        "import shutil, sys, warnings; "
        f"shutil.copytree({str(ROOT / 'strangler')!r}, {str(tmp_path / 'strangler')!r}, "
        "ignore=shutil.ignore_patterns('*.so', '*.c', '__pycache__')); "
        f"sys.path.insert(0, {str(tmp_path)!r}); "
        "warnings.simplefilter('always'); "
        "caught = []; warnings.showwarning = lambda *a, **k: caught.append(str(a[0])); "
        "from strangler.stomp import native; "
        "print(native.BUILD, len(caught), native.FramePump.__module__); print(caught[0])"
    )
    environ = {k: v for k, v in os.environ.items() if k != "STRANGLER_NO_EXTENSIONS"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary, warning = done.stdout.splitlines()
    assert summary == "pure 1 strangler.stomp.pump"
    assert "compiled frame pump" in warning and "python3-dev" in warning
    assert pump.FramePump.__module__ == "strangler.stomp.pump"
