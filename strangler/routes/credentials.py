"""Where a broker's username and password come from: a pure description, never the secret.

Invariants:
- A ``Credentials`` value is exactly one form: both env var names, one file path, or one
  AWS Secrets Manager secret (``secret_id``, optionally with its ``region``).
- routes.yaml only names the source; nothing here reads it. The proxy reads secrets at
  connect time (``strangler.upstream.credentials.resolve_credentials``), so a rotated secret
  is picked up on reconnect without a routes reload, and loading routes never touches secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

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
