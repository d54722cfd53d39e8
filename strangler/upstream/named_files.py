"""The files routes.yaml names (CA certificates, credentials files), read as a connect would.

``strangler validate`` and ``strangler doctor`` share this, so a ``ca_file`` or a
credentials ``file`` that is missing, unreadable, not a regular file or does not parse is
found before the proxy runs, instead of failing the first connection that needs it.

Invariants:
- Each file is read by the very function a connect uses (``load_ca_file``,
  ``read_credentials_file``): a file passes here exactly when it would work there.
- One ``FileCheck`` per (field, file), in routes.yaml's order; ``problem`` is None when the
  file is good, else a reason naming the file, never a secret's value.
- Only files are read: no env var, no Secrets Manager, no network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ..routes import RouteTable
from .credentials import read_credentials_file
from .errors import CaFileError, CredentialsError
from .transport import load_ca_file

FileKind = Literal["ca_file", "credentials"]


@dataclass(frozen=True, slots=True)
class FileCheck:
    field: str  # where routes.yaml names it: brokers.amazonmq.ca_file, ...
    path: str
    kind: FileKind
    problem: str | None  # None: the file reads and parses

    def __str__(self) -> str:
        return f"{self.field}: {self.problem or 'ok'}"


def named_files(table: RouteTable) -> Iterator[tuple[str, str, FileKind]]:
    """``(field, path, kind)`` for every file ``table`` names."""
    for name, broker in table.brokers.items():
        if broker.ca_file is not None:
            yield f"brokers.{name}.ca_file", broker.ca_file, "ca_file"
        if broker.credentials is not None and broker.credentials.file is not None:
            yield f"brokers.{name}.credentials.file", broker.credentials.file, "credentials"
        mapping = broker.client_credentials
        for login, credentials in mapping.logins if mapping is not None else ():
            if credentials.file is not None:
                field = f"brokers.{name}.client_credentials.logins[{login!r}].file"
                yield field, credentials.file, "credentials"


def check_file(path: str, kind: FileKind) -> str | None:
    """None when the file at ``path`` serves as ``kind``, else why not."""
    try:
        if kind == "ca_file":
            load_ca_file(path)
        else:
            read_credentials_file(path)
    except (CaFileError, CredentialsError) as exc:
        return str(exc)
    return None


def check_named_files(table: RouteTable) -> list[FileCheck]:
    return [
        FileCheck(field, path, kind, check_file(path, kind))
        for field, path, kind in named_files(table)
    ]
