"""Which Amazon MQ login a producer session uses: the proxy's own, or one mapped from the
producer's legacy login (``brokers.amazonmq.client_credentials`` in routes.yaml).

A mapping lets each producer reach Amazon MQ as its own Amazon MQ user (its own
permissions, its own name in Amazon MQ's audit and ``JMSXUserID``), which is what the
producer will use once it talks to Amazon MQ directly, after legacy is decommissioned.

Invariants:
- Pure values: only *where* secrets are (``Credentials``); nothing here reads one.
- A login matches exactly (case-sensitive, as ActiveMQ compares logins); a CONNECT
  without a ``login`` header is unmapped.
- A mapped login never falls back to the shared credentials: a mapped secret that fails
  fails that session's Amazon MQ link (the route's ``on_failure`` applies).
- ``SessionLogin.fact_fields`` names a credentials source (env var names, a file path, a
  secret id), never a value, so it may go into facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .credentials import Credentials


class Unmapped(StrEnum):
    """What a session whose login is not in ``logins`` gets."""

    SHARED = "shared"  # the proxy's own credentials (brokers.amazonmq.credentials)
    REFUSE = "refuse"  # no Amazon MQ link: its Amazon MQ frames get the route's on_failure


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    # (legacy login, its Amazon MQ credentials), in file order; logins are unique.
    logins: tuple[tuple[str, Credentials], ...]
    unmapped: Unmapped

    def __post_init__(self) -> None:
        names = [login for login, _ in self.logins]
        if len(set(names)) != len(names):
            raise ValueError("ClientCredentials: duplicate login")

    def lookup(self, login: str | None) -> Credentials | None:
        # A linear scan: done once per session, when its Amazon MQ link is created.
        for name, credentials in self.logins:
            if name == login:
                return credentials
        return None


LoginKind = Literal["shared", "mapped", "refused"]


@dataclass(frozen=True, slots=True)
class SessionLogin:
    """What one session logs in to Amazon MQ with."""

    kind: LoginKind
    client_login: str | None  # the producer's CONNECT login (legacy accepted it)
    credentials: Credentials | None  # None: refused, or shared without credentials

    @property
    def refused(self) -> str | None:
        """Why the session gets no Amazon MQ link; None when it gets one."""
        if self.kind != "refused":
            return None
        who = (
            "a CONNECT without login"
            if self.client_login is None
            else f"login {self.client_login!r}"
        )
        return f"{who} has no Amazon MQ credentials (client_credentials.unmapped: refuse)"

    @property
    def whose(self) -> str:
        """Appended to link failure reasons, so a mapped secret's failure names its login."""
        if self.kind != "mapped":
            return ""
        return f" (credentials mapped for legacy login {self.client_login!r})"

    def fact_fields(self) -> dict[str, str]:
        """``amazonmq_login`` (shared|mapped|refused) and where its credentials come from."""
        fields: dict[str, str] = {"amazonmq_login": self.kind}
        if self.credentials is not None:
            fields["amazonmq_credentials"] = self.credentials.describe()
        return fields


def session_login(
    shared: Credentials | None, mapping: ClientCredentials | None, client_login: str | None
) -> SessionLogin:
    """The Amazon MQ login for a session whose producer logged in to legacy as ``client_login``."""
    if mapping is not None:
        mapped = mapping.lookup(client_login)
        if mapped is not None:
            return SessionLogin("mapped", client_login, mapped)
        if mapping.unmapped is Unmapped.REFUSE:
            return SessionLogin("refused", client_login, None)
    return SessionLogin("shared", client_login, shared)
