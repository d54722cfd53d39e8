"""Builds the optional compiled frame pump (strangler/stomp/_pump.pyx) with Cython.

Everything else about the package is in pyproject.toml. The extension is optional, as
aiohttp's and msgpack's are: without Cython or a C compiler (gcc and the Python headers,
Debian's ``python3-dev``), or with ``STRANGLER_NO_EXTENSIONS=1`` at build time, the
install still succeeds, prints one warning, and strangler runs its pure-Python pump
(``strangler --version`` says which build runs).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PYX = "strangler/stomp/_pump.pyx"


def _warn(reason: str) -> None:
    bar = "*" * 78
    sys.stderr.write(
        f"\n{bar}\nWARNING: strangler's compiled frame pump was not built ({reason}).\n"
        "strangler will run its pure-Python pump: correct, but several times slower per\n"
        "frame. To build it: install gcc and the Python headers (Debian: apt-get install\n"
        "gcc python3-dev), then reinstall.\n"
        f"{bar}\n\n"
    )


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all, and similar
            _warn(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # a compile or link error
            _warn(f"{type(exc).__name__}: {exc}")


def extensions() -> list[Extension]:
    if os.environ.get("STRANGLER_NO_EXTENSIONS", "") not in ("", "0"):
        _warn("STRANGLER_NO_EXTENSIONS is set")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn("Cython is not installed in the build environment")
        return []
    try:
        return cythonize(
            [Extension("strangler.stomp._pump", [PYX])],
            compiler_directives={"language_level": "3"},
            quiet=True,
        )
    except Exception as exc:  # a Cython error: the pure build still installs
        _warn(f"cythonize failed: {exc}")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
