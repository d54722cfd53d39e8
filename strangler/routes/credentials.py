"""Where a broker's username and password come from, and reading them when the proxy connects.

Invariants:
- A ``Credentials`` value is exactly one form: both env var names, or one file path.
- routes.yaml only names the source; secrets are read by ``resolve`` at connect time, so a
  rotated secret is picked up on reconnect without a routes reload, and loading routes never
  touches secrets.
- Error messages name the env var / file / key that is missing or wrong and never include a
  secret value, nor any excerpt of the secrets file (YAML error snippets would quote it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from .errors import CredentialsError


@dataclass(frozen=True, slots=True)
class Credentials:
    username_env: str | None = None
    password_env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        has_env = self.username_env is not None or self.password_env is not None
        if self.file is not None and has_env:
            raise ValueError("Credentials: use either file or username_env/password_env")
        if self.file is None and (self.username_env is None or self.password_env is None):
            raise ValueError("Credentials: need file, or both username_env and password_env")

    def resolve(self, environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
        """Return ``(username, password)``; raise ``CredentialsError`` naming what is missing."""
        if self.file is not None:
            return _read_file(self.file)
        # __post_init__ guarantees both names in the env form.
        assert self.username_env is not None and self.password_env is not None
        return _read_env(environ, self.username_env), _read_env(environ, self.password_env)


def _read_env(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if value is None:
        raise CredentialsError(f"environment variable {name} is not set")
    if value == "":
        raise CredentialsError(f"environment variable {name} is empty")
    return value


def _read_file(path: str) -> tuple[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        # The exception text quotes the offending byte, which is part of a secret.
        raise CredentialsError(f"credentials file {path}: not valid UTF-8") from None
    except OSError as e:
        raise CredentialsError(f"credentials file {path}: {e.strerror or 'cannot read'}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # Only the position: a YAML error's own message quotes the line, i.e. the secret.
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise CredentialsError(
            f"credentials file {path}: not a valid YAML/JSON mapping{where}"
        ) from None
    if not isinstance(data, dict):
        raise CredentialsError(
            f"credentials file {path}: expected a mapping with 'username' and 'password'"
        )
    # Extra keys are tolerated: secret-manager exports carry host/engine/etc. alongside.
    return _file_field(path, data, "username"), _file_field(path, data, "password")


def _file_field(path: str, data: dict[object, object], key: str) -> str:
    if key not in data:
        raise CredentialsError(f"credentials file {path}: missing '{key}'")
    value = data[key]
    if not isinstance(value, str):
        raise CredentialsError(
            f"credentials file {path}: '{key}' must be a string (quote it in YAML)"
        )
    if value == "":
        raise CredentialsError(f"credentials file {path}: '{key}' is empty")
    return value
