"""``strangler doctor``: preflight checks an operator runs before (and while) routing.

Each check answers OK, WARN or FAIL with one line saying why; the exit code is
1 when anything failed, 2 when routes.yaml itself is invalid (nothing else could be
checked). Checks talk to the brokers exactly as the proxy would (same TLS verification,
same credentials source, same discovery), but send nothing: the Amazon MQ check logs in
and DISCONNECTs. Producers log in to legacy with their own logins, so for the proxy legacy
only has to answer STOMP; ``drain`` and ``verify`` log in to legacy themselves, so the
login they would use (``--legacy-login``/``STRANGLER_LEGACY_LOGIN`` and its passcode, else
routes.yaml's ``credentials`` of legacy) is checked too: refused is a FAIL; no login
configured and the anonymous one refused is a WARN naming the variables to set.
With ``client_credentials``, every mapped producer's Amazon MQ login is checked too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .conventions import ExitCode
from .drain.brokers import LOGIN_ENV, PASSCODE_ENV, TargetError, legacy_login
from .routes import (
    BrokerConfig,
    BrokerEndpoint,
    Credentials,
    RoutesError,
    RouteTable,
    Unmapped,
    load_routes,
)
from .stomp import Frame
from .upstream import BrokerUnavailable, open_stream
from .upstream.discovery import resolve_endpoints
from .upstream.transport import exchange_connect

OK, WARN, FAIL = "ok", "warn", "fail"
# Engine versions Amazon MQ no longer supports (its CONNECTED frame names the server).
_END_OF_SUPPORT = ("ActiveMQ/5.15", "ActiveMQ/5.16", "ActiveMQ/5.17")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    detail: str


async def _stomp_answer(
    broker: str, config: BrokerConfig, endpoint: BrokerEndpoint, login: tuple[str, str] | None
) -> Frame:
    reader, writer = await open_stream(broker, endpoint, config.ca_file, timeout=5.0)
    try:
        headers = [("accept-version", "1.0,1.1,1.2"), ("host", endpoint.host)]
        if login is not None:
            headers += [("login", login[0]), ("passcode", login[1])]
        answer, _ = await exchange_connect(broker, reader, writer, headers, timeout=5.0)
        if answer.command == "CONNECTED":
            writer.write(b"DISCONNECT\n\n\0")
        return answer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass(frozen=True, slots=True)
class LegacyLogin:
    """The login drain and verify would use on legacy, and where it comes from."""

    login: tuple[str, str] | None
    source: str  # "STRANGLER_LEGACY_LOGIN", "--legacy-login", routes.yaml's source, or ""
    problem: str | None = None  # set when it cannot even be read


def legacy_login_for(
    table: RouteTable,
    login: str | None = None,
    passcode_file: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> LegacyLogin:
    if login is not None:
        source = "--legacy-login"
    elif environ.get(LOGIN_ENV) is not None:
        source = LOGIN_ENV
    else:
        credentials = table.brokers["legacy"].credentials
        source = f"routes.yaml ({credentials.describe()})" if credentials else ""
    try:
        return LegacyLogin(legacy_login(table, login, passcode_file, environ), source)
    except TargetError as exc:
        return LegacyLogin(None, source, str(exc))


_SET_LEGACY_LOGIN = (
    f"drain and verify need one: set {LOGIN_ENV} and {PASSCODE_ENV} (or --legacy-login and "
    "--legacy-passcode-file), or credentials under brokers.legacy in routes.yaml"
)


async def _check_legacy(table: RouteTable, tools: LegacyLogin) -> list[Check]:
    config = table.brokers["legacy"]
    checks = []
    if tools.problem is not None:
        checks.append(Check("legacy login (drain, verify)", FAIL, tools.problem))
    for endpoint in config.endpoints:
        try:
            answer = await _stomp_answer("legacy", config, endpoint, None)
        except BrokerUnavailable as exc:
            checks.append(Check(f"legacy {endpoint}", FAIL, exc.reason))
            continue
        anonymous = answer.command == "CONNECTED"
        what = "CONNECTED" if anonymous else "an ERROR to an anonymous login"
        checks.append(Check(f"legacy {endpoint}", OK, f"STOMP answers ({what})"))
        if tools.problem is None:
            checks.append(await _check_legacy_login(config, endpoint, tools, anonymous))
    return checks


async def _check_legacy_login(
    config: BrokerConfig, endpoint: BrokerEndpoint, tools: LegacyLogin, anonymous: bool
) -> Check:
    """The login drain and verify would use (no login at all: what the anonymous one got)."""
    name = f"legacy login (drain, verify) {endpoint}"
    if tools.login is None:
        if anonymous:
            return Check(name, OK, "none configured; legacy accepts an anonymous login")
        return Check(
            name, WARN, f"none configured and legacy refuses an anonymous one: {_SET_LEGACY_LOGIN}"
        )
    user = tools.login[0]
    try:
        answer = await _stomp_answer("legacy", config, endpoint, tools.login)
    except BrokerUnavailable as exc:
        return Check(name, FAIL, exc.reason)
    if answer.command == "CONNECTED":
        return Check(name, OK, f"login accepted as {user!r} (from {tools.source})")
    refused = answer.get("message") or answer.command
    return Check(
        name,
        FAIL,
        f"login {user!r} (from {tools.source}) refused: {refused}; fix it, or {_SET_LEGACY_LOGIN}",
    )


async def _check_amazonmq(table: RouteTable) -> list[Check]:
    configured = table.brokers.get("amazonmq")
    if configured is None:
        return []
    checks = []
    try:
        config = await resolve_endpoints(configured, fresh=True)
    except BrokerUnavailable as exc:
        return [Check("amazonmq discovery", FAIL, exc.reason)]
    if configured.aws is not None:
        urls = ", ".join(str(e) for e in config.endpoints)
        checks.append(Check("amazonmq discovery", OK, f"{configured.aws}: {urls}"))
    mapping = config.client_credentials
    shared = mapping is None or mapping.unmapped is Unmapped.SHARED or bool(config.credentials)
    if shared:
        checks += await _check_login(config, "amazonmq", config.credentials, first=True)
    else:
        checks.append(
            Check(
                "amazonmq credentials",
                OK,
                "none (client_credentials.unmapped: refuse: only mapped logins reach Amazon MQ)",
            )
        )
    # Each mapped producer logs in as itself: a wrong or missing secret would only show when
    # that producer's first message for Amazon MQ falls back or is rejected.
    for index, (login, credentials) in enumerate(mapping.logins if mapping else ()):
        name = f"amazonmq login {login!r}"
        checks += await _check_login(config, name, credentials, first=index == 0 and not shared)
    return checks


async def _check_login(
    config: BrokerConfig, name: str, credentials: Credentials | None, *, first: bool
) -> list[Check]:
    """Resolve ``credentials`` and log in with them on every endpoint (``name`` labels it)."""
    try:
        login = await asyncio.to_thread(credentials.resolve) if credentials else None
    except Exception as exc:  # credential errors carry an operator-facing reason
        return [Check(f"{name} credentials", FAIL, str(exc))]
    found = f"found ({credentials.describe()})" if credentials and login else "none set"
    checks = [Check(f"{name} credentials", OK if login else WARN, found)]
    accepted = 0
    for endpoint in config.endpoints:
        label = f"{name} {endpoint}"
        try:
            answer = await _stomp_answer("amazonmq", config, endpoint, login)
        except BrokerUnavailable as exc:
            checks.append(Check(label, FAIL, exc.reason))
            continue
        if answer.command == "CONNECTED":
            accepted += 1
            version = answer.get("version") or "1.0"
            server = answer.get("server") or "?"
            as_user = f" as {login[0]!r}" if login else ""
            checks.append(
                Check(
                    label,
                    OK,
                    f"TLS verified, login accepted{as_user} (STOMP {version}, server {server})",
                )
            )
            if first and server.startswith(_END_OF_SUPPORT):
                checks.append(
                    Check(
                        label,
                        WARN,
                        f"{server} is past end of support on Amazon MQ (use 5.18 or later)",
                    )
                )
        else:
            checks.append(
                Check(label, FAIL, f"login refused: {answer.get('message') or answer.command}")
            )
    if len(config.endpoints) > 1 and accepted == 1:
        # Active/standby: the standby refusing connections is the normal state.
        endpoints = {f"{name} {endpoint}" for endpoint in config.endpoints}
        checks = [
            Check(c.name, WARN, f"{c.detail} (normal for the standby)")
            if c.status == FAIL and c.name in endpoints
            else c
            for c in checks
        ]
    return checks


async def run_checks(
    path: str, login: str | None = None, passcode_file: str | None = None
) -> list[Check]:
    try:
        table = load_routes(path)
    except RoutesError as exc:
        return [Check("routes", FAIL, str(exc))]
    checks = [Check("routes", OK, f"{table.source}: valid, version {table.version}")]
    checks += [Check("routes", WARN, warning) for warning in table.warnings]
    checks += await _check_legacy(table, legacy_login_for(table, login, passcode_file))
    if table.needs_amazonmq or "amazonmq" in table.brokers:
        checks += await _check_amazonmq(table)
    return checks


def doctor(args: argparse.Namespace) -> int:
    checks = asyncio.run(run_checks(args.routes, args.legacy_login, args.legacy_passcode_file))
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            print(f"{check.status.upper():4}  {check.name}: {check.detail}")
    if checks[0].name == "routes" and checks[0].status == FAIL:
        return ExitCode.CONFIG  # nothing else was checked
    return ExitCode.FAILED if any(c.status == FAIL for c in checks) else ExitCode.OK
