"""Which destinations a drain or verify works on, and its connections to the two brokers.

Invariants:
- Queues only: a topic has no backlog to move or compare.
- The Amazon MQ destination is the one the proxy sends to (``Decision.amazonmq_destination``:
  the route's ``target_destination``, else the same name).
- ``drain`` needs a route that sends the destination to Amazon MQ only (cutover, or split
  100%, and not dry-run): under any other, producers still fill legacy's queue. ``verify``
  needs a mirror that is not in dry-run: the one mode where both brokers get every message.
- Connections are ``upstream.client.open_broker``'s, as replay's are: the same discovery,
  TLS verification and routes.yaml credentials; every secret is read before connecting.
- Legacy's login: ``--legacy-login`` or ``STRANGLER_LEGACY_LOGIN``, with the passcode from
  ``STRANGLER_LEGACY_PASSCODE`` or a file (never from the command line, where ``ps`` shows
  it); else routes.yaml's credentials of legacy; else no login.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from ..routes import AMAZONMQ, LEGACY, RouteTable
from ..stomp import Frame
from ..upstream.client import PublishError, broker_login

LOGIN_ENV: Final = "STRANGLER_LEGACY_LOGIN"
PASSCODE_ENV: Final = "STRANGLER_LEGACY_PASSCODE"

Purpose = Literal["drain", "verify"]


class Connection(Protocol):
    """A broker connection: ``upstream.client.BrokerClient``."""

    name: str
    server: str | None  # CONNECTED's server header

    def send(self, raw: bytes) -> None: ...

    def poll(self, timeout: float) -> list[Frame]: ...

    def fileno(self) -> int: ...

    @property
    def buffered(self) -> bool: ...

    def close(self) -> None: ...


class TargetError(Exception):
    """The destination or the routes do not allow this command (a usage error, exit 2)."""


@dataclass(frozen=True, slots=True)
class Target:
    destination: str  # on legacy
    amazonmq_destination: str
    rule: str
    mode: str
    routes_version: str
    trace_header: str

    @property
    def names(self) -> dict[str, str]:
        """The fields every drain and verify fact starts with."""
        return {"destination": self.destination, "amazonmq_destination": self.amazonmq_destination}

    @property
    def described(self) -> dict[str, str]:
        """``names`` and the route that gave them: for the facts of a whole run."""
        return {**self.names, "rule": self.rule, "routes_version": self.routes_version}


def resolve_target(table: RouteTable, destination: str, purpose: Purpose) -> Target:
    if not destination.startswith("/queue/") or destination == "/queue/":
        raise TargetError(
            f"{destination!r} is not a queue (/queue/NAME): only queues hold a backlog"
        )
    resolution = table.resolve(destination)
    decision = resolution.hit
    wanted = (AMAZONMQ,) if purpose == "drain" else (LEGACY, AMAZONMQ)
    varies = resolution.weight is not None  # a split: some messages still go to legacy
    if varies or decision.targets != wanted or decision.dry_run:
        where = "dry-run " if decision.dry_run else ""
        if resolution.route is None:
            now = f"no route matches {destination} in {table.source}: it goes to legacy"
        else:
            now = (
                f"route {decision.rule} sends {destination} as {where}{resolution.route.describe()}"
            )
        need = (
            "drain moves a backlog once producers send to Amazon MQ only: make the route a "
            "cutover (not dry-run) first"
            if purpose == "drain"
            else "verify compares the two copies of a mirrored destination: the route must "
            "be a mirror (not dry-run)"
        )
        raise TargetError(f"{now}; {need}")
    assert decision.amazonmq_destination is not None  # Decision: set iff amazonmq in targets
    return Target(
        destination=destination,
        amazonmq_destination=decision.amazonmq_destination,
        rule=decision.rule,
        mode=str(decision.mode),
        routes_version=table.version,
        trace_header=table.trace_header,
    )


def legacy_login(
    table: RouteTable,
    login: str | None,
    passcode_file: str | None,
    environ: Mapping[str, str] = os.environ,
) -> tuple[str, str] | None:
    """Legacy's login for drain and verify (see the module docstring for the order)."""
    user = login if login is not None else environ.get(LOGIN_ENV)
    passcode = _read_passcode(passcode_file) if passcode_file else environ.get(PASSCODE_ENV)
    if user is None:
        if passcode_file is not None:
            raise TargetError(f"--legacy-passcode-file needs --legacy-login or {LOGIN_ENV}")
        return routes_login(table, LEGACY)
    if passcode is None:
        raise TargetError(
            f"legacy login {user!r} has no passcode: set {PASSCODE_ENV} or --legacy-passcode-file"
        )
    return user, passcode


def _read_passcode(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise TargetError(f"--legacy-passcode-file {path}: {exc.strerror or exc}") from None
    if not text:
        raise TargetError(f"--legacy-passcode-file {path}: the first line is empty")
    return text


def routes_login(table: RouteTable, name: str) -> tuple[str, str] | None:
    """Broker ``name``'s login from routes.yaml, read now (a missing secret: usage error)."""
    try:
        return broker_login(table, name, None)
    except PublishError as exc:
        raise TargetError(str(exc)) from None
