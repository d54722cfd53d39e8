"""Where a broker's username and password come from, and reading them when the proxy connects.

Invariants:
- A ``Credentials`` value is exactly one form: both env var names, one file path, or one
  AWS Secrets Manager secret (``secret_id``, optionally with its ``region``).
- routes.yaml only names the source; secrets are read by ``resolve`` at connect time, so a
  rotated secret is picked up on reconnect without a routes reload, and loading routes never
  touches secrets.
- The Secrets Manager form imports boto3 (through ``strangler.aws``) only inside ``resolve``,
  so this package stays importable, and routes.yaml checkable, without it.
- Error messages name the env var / file / key that is missing or wrong and never include a
  secret value, nor any excerpt of the secrets file (YAML error snippets would quote it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import yaml

from .errors import CredentialsError

# arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME (partition: aws, aws-cn, aws-us-gov)
_SECRET_ARN: Final = re.compile(r"arn:[a-z-]+:secretsmanager:([a-z0-9-]+):\d{12}:secret:.+")


def secret_arn_region(secret_id: str) -> str | None:
    """The region inside a Secrets Manager ARN; None when ``secret_id`` is a plain name.

    A secret can only be read through its own region's endpoint, so an ARN's region is
    authoritative.
    """
    match = _SECRET_ARN.fullmatch(secret_id)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Credentials:
    username_env: str | None = None
    password_env: str | None = None
    file: str | None = None
    secret_id: str | None = None  # Secrets Manager name or ARN holding {"username","password"}
    region: str | None = None  # the secret's region; None: the ARN's, else the SDK default

    def __post_init__(self) -> None:
        has_env = self.username_env is not None or self.password_env is not None
        forms = sum((has_env, self.file is not None, self.secret_id is not None))
        if forms > 1:
            raise ValueError(
                "Credentials: use exactly one of file, secret_id, or username_env/password_env"
            )
        if forms == 0 or (has_env and (self.username_env is None or self.password_env is None)):
            raise ValueError(
                "Credentials: need file, secret_id, or both username_env and password_env"
            )
        if self.region is not None and self.secret_id is None:
            raise ValueError("Credentials: region is only used with secret_id")

    def describe(self) -> str:
        """Where the secrets are, for facts and /routes: names only, never a value."""
        if self.file is not None:
            return f"file {self.file}"
        if self.secret_id is not None:
            return f"secret {self.secret_id}"
        return f"env {self.username_env}/{self.password_env}"

    def resolve(self, environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
        """Return ``(username, password)``; raise ``CredentialsError`` naming what is missing.

        The Secrets Manager form makes a blocking AWS API call: from asyncio, run it in a
        thread (``asyncio.to_thread``).
        """
        if self.file is not None:
            return _read_file(self.file)
        if self.secret_id is not None:
            return _read_secret(self.secret_id, self.region)
        # __post_init__ guarantees both names in the env form.
        assert self.username_env is not None and self.password_env is not None
        return _read_env(environ, self.username_env), _read_env(environ, self.password_env)


def _read_secret(secret_id: str, region: str | None) -> tuple[str, str]:
    try:
        # Lazy: boto3 is only needed by routes files that use this form.
        from ..aws.errors import AwsError
        from ..aws.secrets import read_secret_credentials
    except ImportError as e:
        raise CredentialsError(
            f"secret {secret_id}: reading Secrets Manager needs boto3 ({e.name} is missing)"
        ) from None
    try:
        return read_secret_credentials(secret_id, region=region)
    except AwsError as e:
        # The reason already names the secret and the cause; it never holds the value.
        raise CredentialsError(e.reason) from None


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
