"""Reading a broker's username and password from where routes.yaml says they are.

``strangler.routes.Credentials`` only *names* a source (two env vars, a file, or an AWS
Secrets Manager secret); ``resolve_credentials`` reads it, at connect time.

Invariants:
- Secrets are read on every call, never cached, so a rotated secret is picked up on the
  next connect without a routes reload.
- The Secrets Manager form imports boto3 (through ``strangler.aws``) only when it is used,
  so the proxy runs, and routes.yaml is checked, without boto3 installed.
- Error messages name the env var / file / key that is missing or wrong and never include a
  secret value, nor any excerpt of the secrets file (YAML error snippets would quote it).
- The file form reads a regular file of at most ``MAX_CREDENTIALS_FILE_BYTES`` only
  (``strangler.regular_files``): a FIFO or a device there is refused, never waited on.
- ``read_credentials_file`` is the one reader of the file form: ``strangler validate`` and
  ``doctor`` check a named file with it, so they accept exactly what a connect accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import yaml

from ..regular_files import UnreadableFile, read_regular_file
from ..routes import Credentials
from .errors import CredentialsError

# A username and a password, perhaps with a secret manager's export around them.
MAX_CREDENTIALS_FILE_BYTES = 64 << 10


def resolve_credentials(
    credentials: Credentials, environ: Mapping[str, str] = os.environ
) -> tuple[str, str]:
    """Return ``(username, password)``; raise ``CredentialsError`` naming what is missing.

    The Secrets Manager form makes a blocking AWS API call: from asyncio, run it in a
    thread (``asyncio.to_thread``).
    """
    if credentials.file is not None:
        return read_credentials_file(credentials.file)
    if credentials.secret_id is not None:
        return _read_secret(credentials.secret_id, credentials.region)
    # Credentials.__post_init__ guarantees both names in the env form.
    assert credentials.username_env is not None and credentials.password_env is not None
    return (
        _read_env(environ, credentials.username_env),
        _read_env(environ, credentials.password_env),
    )


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


def read_credentials_file(path: str) -> tuple[str, str]:
    """``(username, password)`` from a YAML/JSON mapping file; ``CredentialsError`` otherwise."""
    try:
        text = read_regular_file(path, MAX_CREDENTIALS_FILE_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        # The exception text quotes the offending byte, which is part of a secret.
        raise CredentialsError(f"credentials file {path}: not valid UTF-8") from None
    except UnreadableFile as e:
        raise CredentialsError(f"credentials file {path}: {e.reason}") from None
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
