"""Errors raised while loading routes.yaml.

Invariants:
- ``str(RoutesError)`` is exactly ``"{file}:{line}: {reason}"``, or ``"{file}: {reason}"`` when
  the problem has no position (unreadable file, empty document, bad encoding).
- ``reason`` starts with the dotted path of the offending field (``routes[2].mode: ...``) so an
  operator can find it without counting lines.
- No message built by this package contains a secret value: credentials are named (env var
  names, file paths, key names), never read.
"""

from __future__ import annotations


class RoutesError(Exception):
    """routes.yaml is unreadable or invalid; the proxy must keep its previous table."""

    file: str
    line: int | None
    column: int | None
    reason: str
    unreadable: bool  # the file could not be read at all (nothing was checked)

    def __init__(
        self,
        file: str,
        line: int | None,
        reason: str,
        column: int | None = None,
        *,
        unreadable: bool = False,
    ) -> None:
        super().__init__(file, line, reason)
        self.file = file
        self.line = line
        self.column = column
        self.reason = reason
        self.unreadable = unreadable

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.reason}"
        return f"{self.file}:{self.line}: {self.reason}"
