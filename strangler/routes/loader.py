"""routes.yaml -> RouteTable, rejecting anything not exactly understood.

Invariants:
- The only I/O in the package is ``load_routes`` reading the routes file: a regular file of
  at most ``MAX_ROUTES_BYTES``, opened without blocking (a FIFO or ``/dev/zero`` in its
  place is refused, never waited on nor read without end). Secrets are never
  read here (``Credentials`` only names env vars, a file or a Secrets Manager secret) and
  ``ca_file`` is not opened: the proxy checks those when it connects.
- YAML is composed with ``yaml.SafeLoader`` into nodes and walked by hand, so every error
  names the offending node's line and column; arbitrary tags cannot construct objects.
- Unknown keys, duplicate keys and YAML merge keys are errors at every level: a typo must
  never silently fall back to a default (a misspelt ``weight`` would otherwise route 0%).
- The first problem found is raised as ``RoutesError``; its reason starts with the dotted
  path of the field (``routes[1].weight: required for mode split``).
- ``RouteTable.version`` is the first 12 hex digits of sha256 over the exact file bytes, so
  every replica loading the same file reports the same version.
- Relative ``ca_file`` and credentials ``file`` paths resolve against the routes file's
  folder (not the proxy's cwd), so a routes file and its certificates move together.
- ``brokers.amazonmq`` names its endpoints with exactly one of ``url``, ``urls``,
  ``broker_id`` or ``broker_name``; the last two (optionally with ``region``) become
  ``BrokerConfig.aws`` with no endpoints, which ``strangler.aws`` discovers at connect time.
  The legacy broker is self-hosted: it always needs ``url``/``urls``.
- ``brokers.amazonmq.client_credentials`` maps legacy logins to Amazon MQ credentials
  (each entry in the same three forms as ``credentials``) and says what an unmapped login
  gets (``unmapped: shared|refuse``, required); no other broker may have it.
- Credentials ``secret_id`` (Secrets Manager) takes its region from ``region:``, else the
  secret's ARN, else the broker's ``region:``, else the AWS SDK default; a ``region:``
  contradicting the ARN is an error.
- A ``rollout:`` plan is only read on split routes (legacy and mirror routes keep it,
  ignored with a warning, like ``weight``); a gate's ``route:`` must name a route of the
  same file. A ``verify:`` gate names a queue a route of the same file matches; a route
  that is not a mirror (not dry-run) there is a warning, not an error: setting that
  route to ``mode: legacy`` must stay a one-line rollback (the gate then holds the
  rollout). ``rollout.state`` is what ``strangler rollout`` wrote, checked as strictly.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, NoReturn, TypeVar
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..regular_files import UnreadableFile, read_regular_file
from .client_credentials import ClientCredentials, Unmapped
from .credentials import Credentials, secret_arn_region
from .errors import RoutesError
from .model import (
    AMAZONMQ,
    BROKER_NAMES,
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_RULE,
    DEFAULT_TRACE_HEADER,
    LEGACY,
    MATCH_KINDS,
    AmazonMQRef,
    BrokerConfig,
    BrokerEndpoint,
    MatchKind,
    Mode,
    OnFailure,
    Route,
)
from .rollout import (
    GATE_NAME,
    QUERY_PLACEHOLDERS,
    Duration,
    Gate,
    GateMetric,
    OnBreach,
    Phase,
    RolloutPlan,
    RolloutState,
    parse_duration,
    parse_time,
)
from .table import RouteTable

_TOP_KEYS: Final = ("brokers", "dry_run", "routes", "trace_header")
_BROKER_KEYS: Final = (
    "url",
    "urls",
    "broker_id",
    "broker_name",
    "region",
    "ca_file",
    "credentials",
    "client_credentials",
    "heartbeat_ms",
)
# Exactly one of these says where a broker is; the last two ask Amazon MQ's API.
_BROKER_SOURCES: Final = ("url", "urls", "broker_id", "broker_name")
_AWS_BROKER_KEYS: Final = ("broker_id", "broker_name", "region")
_CREDENTIAL_KEYS: Final = ("username_env", "password_env", "file", "secret_id", "region")
_CLIENT_CREDENTIAL_KEYS: Final = ("unmapped", "logins")
_ROUTE_KEYS: Final = (
    "name",
    "match",
    "mode",
    "target_destination",
    "weight",
    "sticky_header",
    "on_failure",
    "dry_run",
    "rollout",
)
_ROLLOUT_KEYS: Final = ("steps", "every", "gates", "on_breach", "promote", "state")
_GATE_KEYS: Final = (
    "name",
    "metric",
    "query",
    "verify",
    "max",
    "min",
    "window",
    "min_messages",
    "route",
)
# What one gate measures: exactly one of these.
_GATE_KINDS: Final = ("metric", "query", "verify")
VERIFY_GATE_NAME: Final = "verify"  # a verify gate's name when it has none
_STATE_KEYS: Final = ("phase", "since", "gates")

_SCHEMES: Final = ("stomp", "stomp+ssl")
_ROUTE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Amazon MQ ids are "b-" + a UUID; kept loose so only obvious mix-ups (ARN, host, name) fail.
_BROKER_ID: Final = re.compile(r"b-[A-Za-z0-9-]{1,100}")
# Amazon MQ's own rule for broker names: 1-50 of letters, digits and - . _ ~
_BROKER_NAME: Final = re.compile(r"[A-Za-z0-9._~-]{1,50}")
# eu-west-1, us-gov-west-1, cn-north-1, eusc-de-east-1
_REGION: Final = re.compile(r"[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}")
# Secrets Manager names allow letters, digits and /_+=.@-; an ARN adds ':'.
_SECRET_ID: Final = re.compile(r"[A-Za-z0-9/_+=.@:-]{1,2048}")
_MAX_HEARTBEAT_MS: Final = 3_600_000
# Headers the proxy or broker act on; reusing one as the trace header would corrupt a SEND.
_RESERVED_HEADERS: Final = frozenset(
    {"destination", "receipt", "content-length", "content-type", "transaction"}
)

# Why a key is refused for a mode, keyed by (key, mode); absent pairs are allowed.
# Rolling back is editing one line (`mode: cutover` -> `mode: legacy`), so legacy and
# mirror routes keep the other modes' keys, ignored with a warning, for the way forward
# again. Split and cutover stay strict: a stray key there is more likely a mistake.
_TOLERATED: Final = frozenset({Mode.LEGACY, Mode.MIRROR})

_FORBIDDEN: Final[dict[tuple[str, Mode], str]] = {
    ("weight", Mode.LEGACY): "only split routes have a weight",
    ("weight", Mode.MIRROR): "only split routes have a weight",
    ("weight", Mode.CUTOVER): "only split routes have a weight",
    ("sticky_header", Mode.LEGACY): "only split routes use it",
    ("sticky_header", Mode.MIRROR): "only split routes use it",
    ("sticky_header", Mode.CUTOVER): "only split routes use it",
    ("on_failure", Mode.LEGACY): "legacy routes never send to Amazon MQ",
    ("on_failure", Mode.MIRROR): "mirror failures never affect the client",
    ("target_destination", Mode.LEGACY): "legacy routes never send to Amazon MQ",
    ("rollout", Mode.LEGACY): "only split routes step their weight",
    ("rollout", Mode.MIRROR): "only split routes step their weight",
    ("rollout", Mode.CUTOVER): "only split routes step their weight",
}

_Choice = TypeVar("_Choice", bound=StrEnum)

_YAML_TAG: Final = "tag:yaml.org,2002:"
_NULL_TAG: Final = _YAML_TAG + "null"
_MERGE_TAG: Final = _YAML_TAG + "merge"
_MAP_TAG: Final = _YAML_TAG + "map"
_SEQ_TAG: Final = _YAML_TAG + "seq"
# A routes file with thousands of routes is a few hundred KiB.
MAX_ROUTES_BYTES: Final = 1 << 20
# The tags the safe loader gives plain YAML; any other (!!python/..., !custom) is refused.
_SCALAR_TAGS: Final = frozenset(
    _YAML_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary", "merge")
)
# Keys that would hold a secret in the file itself; routes.yaml names where secrets are.
_SECRET_KEYS: Final = frozenset(
    {"password", "passcode", "passwd", "pass", "secret", "username", "user", "login", "token"}
)
_NO_SECRETS: Final = (
    "secrets never go in this file: name environment variables (username_env, "
    "password_env), a file (file: PATH) or a Secrets Manager secret (secret_id: NAME)"
)
# PyYAML's indentation problems, as a person would put them (the original follows).
_YAML_PROBLEMS: Final = (
    (
        "expected <block end>, but found '<block mapping start>'",
        "this line is indented more than the keys before it{context}; the keys of one "
        "mapping must start in the same column",
    ),
    (
        "expected <block end>, but found '<block sequence start>'",
        "this list item is indented differently from the lines before it{context}",
    ),
    (
        "expected <block end>, but found '-'",
        "this list item is indented differently from the lines before it{context}",
    ),
    (
        "did not find expected key",
        "this line is not indented like the keys of its mapping{context}",
    ),
    (
        "did not find expected '-' indicator",
        "this line is not indented like the items of its list{context}",
    ),
    (
        "mapping values are not allowed here",
        "unexpected ':' (a key indented under a value on the line above, or a value with "
        "': ' in it: quote the value)",
    ),
    (
        "could not find expected ':'",
        "a line inside a mapping that is not 'key: value'{context} (a missing ':', or a "
        "value continued on the next line: quote it)",
    ),
)


def load_routes(path: str | os.PathLike[str]) -> RouteTable:
    """Read and validate a routes file; raise ``RoutesError`` on any problem."""
    source = os.fspath(path)
    try:
        data = read_regular_file(source, MAX_ROUTES_BYTES)
    except UnreadableFile as e:
        raise RoutesError(
            source, None, f"cannot read routes file: {e.reason}", unreadable=True
        ) from None
    return parse_routes(data, source)


def parse_routes(text: str | bytes, source: str) -> RouteTable:
    """Validate routes given as text; ``source`` names the file in errors and anchors paths."""
    # surrogatepass: a str with lone surrogates then fails as "not valid UTF-8", not a crash.
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    version = hashlib.sha256(data).hexdigest()[:12]
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RoutesError(source, None, f"not valid UTF-8 (byte offset {e.start})") from None
    return _Reader(source).table(decoded, version)


@dataclass(frozen=True, slots=True)
class _Field:
    key: Node
    value: Node


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _shape(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a scalar"


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


class _Reader:
    """Walks one composed document; every failure carries the offending node's position."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.folder = os.path.dirname(os.path.abspath(source))
        self.constructor = SafeConstructor()
        self.warnings: list[str] = []
        # Verify gates' queues (queue, node, path): checked against the whole table.
        self.verified: list[tuple[str, Node, str]] = []

    def fail(self, node: Node, reason: str) -> NoReturn:
        mark = node.start_mark
        raise RoutesError(self.source, mark.line + 1, reason, column=mark.column + 1)

    # -- document ---------------------------------------------------------------------------

    def compose(self, text: str) -> Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else None
            column = mark.column + 1 if mark is not None else None
            reason = _yaml_problem(e, text.splitlines()[line - 1 : line] if line else [])
            raise RoutesError(self.source, line, reason, column=column) from None
        except yaml.YAMLError as e:
            # ReaderError (e.g. control characters) has an offset, not a line.
            raise RoutesError(self.source, None, f"YAML error: {e}") from None

    def table(self, text: str, version: str) -> RouteTable:
        root = self.compose(text)
        if root is None:
            raise RoutesError(
                self.source, None, "file is empty; expected a mapping with 'brokers' and 'routes'"
            )
        top = self.mapping(root, "", _TOP_KEYS)
        dry_run = self.boolean(top["dry_run"].value, "dry_run") if "dry_run" in top else False
        trace_header = DEFAULT_TRACE_HEADER
        if "trace_header" in top:
            trace_header = self.header(top["trace_header"].value, "trace_header")
            if trace_header.lower() in _RESERVED_HEADERS:
                self.fail(
                    top["trace_header"].value,
                    f"trace_header: {trace_header!r} is a STOMP header the proxy relies on",
                )
        if "brokers" not in top:
            self.fail(root, "brokers: required (at least brokers.legacy)")
        brokers = self.brokers(top["brokers"])
        routes: tuple[Route, ...] = ()
        if "routes" in top:
            routes = self.routes(top["routes"].value, dry_run, AMAZONMQ in brokers)

        def build() -> RouteTable:
            return RouteTable(
                version=version,
                source=self.source,
                brokers=brokers,
                routes=routes,
                dry_run=dry_run,
                trace_header=trace_header,
                warnings=self.warnings,
            )

        table = build()
        if self.verified:
            warned = len(self.warnings)
            self.check_verified(table)
            if len(self.warnings) > warned:
                table = build()  # with the verify gates' warnings
        return table

    def check_verified(self, table: RouteTable) -> None:
        """Each verify gate's queue is matched by a route of this file; a mirror, or warned."""
        for queue, node, path in self.verified:
            resolution = table.resolve(queue)
            route = resolution.route
            if route is None:
                self.fail(
                    node,
                    f"{path}: no route of this file matches {queue} (it goes to legacy only); "
                    "a verify gate compares the two copies of a mirror route's queue",
                )
            if route.mode is not Mode.MIRROR or resolution.hit.dry_run:
                now = "dry-run mirror" if route.mode is Mode.MIRROR else f"mode {route.mode}"
                self.warnings.append(
                    f"{self.source}:{_line(node)}: {path}: {queue} is routed by route "
                    f"{route.name!r} ({now}), not a mirror: the gate has no answer and holds "
                    "the rollout until that route is a mirror again"
                )

    # -- brokers ----------------------------------------------------------------------------

    # Block mappings start at their first key, so "missing key" errors point at the key that
    # owns the mapping (`legacy:`) instead, which is where a reader looks for it.

    def brokers(self, owner: _Field) -> dict[str, BrokerConfig]:
        fields = self.mapping(owner.value, "brokers", BROKER_NAMES, noun="broker")
        if LEGACY not in fields:
            self.fail(owner.key, "brokers.legacy: required")
        return {name: self.broker(name, field) for name, field in fields.items()}

    def broker(self, name: str, owner: _Field) -> BrokerConfig:
        path = f"brokers.{name}"
        fields = self.mapping(owner.value, path, _BROKER_KEYS)
        if name != AMAZONMQ:
            for key in _AWS_BROKER_KEYS:
                if key in fields:
                    self.fail(
                        fields[key].key,
                        f"{path}.{key}: only brokers.{AMAZONMQ} can be looked up in AWS; "
                        f"the {name} broker needs 'url' or 'urls'",
                    )
        given = [key for key in fields if key in _BROKER_SOURCES]
        if given[:2] == ["url", "urls"] or given[:2] == ["urls", "url"]:
            self.fail(
                fields[given[1]].key,
                f"{path}: has both 'url' and 'urls'; use 'url' for one broker "
                "or 'urls' for an active/standby list",
            )
        if len(given) > 1:
            self.fail(
                fields[given[1]].key,
                f"{path}: has both '{given[0]}' and '{given[1]}'; "
                f"use exactly one of {', '.join(_BROKER_SOURCES)}",
            )
        if not given:
            lookup = (
                ", or 'broker_id'/'broker_name' to look it up in AWS" if name == AMAZONMQ else ""
            )
            self.fail(
                owner.key, f"{path}: needs 'url' (or 'urls' for an active/standby list{lookup})"
            )
        endpoints: tuple[BrokerEndpoint, ...] = ()
        aws = None
        if given[0] == "url":
            endpoints = (self.endpoint(fields["url"].value, f"{path}.url"),)
        elif given[0] == "urls":
            endpoints = self.endpoints(fields["urls"].value, f"{path}.urls")
        else:
            aws = self.aws_ref(fields, path)
        if "region" in fields and aws is None:
            self.fail(
                fields["region"].key,
                f"{path}.region: only used with broker_id or broker_name "
                "(the Amazon MQ broker's region)",
            )

        ca_file = None
        if "ca_file" in fields:
            ca_node = fields["ca_file"].value
            ca_file = self.path(ca_node, f"{path}.ca_file")
            # Discovered Amazon MQ endpoints are always stomp+ssl.
            if aws is None and not any(endpoint.tls for endpoint in endpoints):
                self.fail(ca_node, f"{path}.ca_file: only used with stomp+ssl:// URLs")

        credentials = None
        if "credentials" in fields:
            credentials = self.credentials(
                fields["credentials"], f"{path}.credentials", aws.region if aws else None
            )

        client_credentials = None
        if "client_credentials" in fields:
            if name != AMAZONMQ:
                self.fail(
                    fields["client_credentials"].key,
                    f"{path}.client_credentials: only for brokers.{AMAZONMQ}; "
                    f"producers log in to {name} with their own login",
                )
            client_credentials = self.client_credentials(
                fields["client_credentials"],
                f"{path}.client_credentials",
                aws.region if aws else None,
            )

        heartbeat_ms = DEFAULT_HEARTBEAT_MS
        if "heartbeat_ms" in fields:
            heartbeat_node = fields["heartbeat_ms"].value
            heartbeat_ms = self.integer(heartbeat_node, f"{path}.heartbeat_ms")
            if not 0 <= heartbeat_ms <= _MAX_HEARTBEAT_MS:
                self.fail(
                    heartbeat_node,
                    f"{path}.heartbeat_ms: {heartbeat_ms} is out of range; "
                    f"must be between 0 (off) and {_MAX_HEARTBEAT_MS}",
                )
        return BrokerConfig(
            name=name,
            endpoints=endpoints,
            ca_file=ca_file,
            credentials=credentials,
            heartbeat_ms=heartbeat_ms,
            aws=aws,
            client_credentials=client_credentials,
        )

    def aws_ref(self, fields: dict[str, _Field], path: str) -> AmazonMQRef:
        region = None
        if "region" in fields:
            region = self.region(fields["region"].value, f"{path}.region")
        if "broker_id" in fields:
            node = fields["broker_id"].value
            broker_id = self.string(node, f"{path}.broker_id")
            if not _BROKER_ID.fullmatch(broker_id):
                self.fail(
                    node,
                    f"{path}.broker_id: {broker_id!r} is not an Amazon MQ broker id "
                    "(b-1234abcd-...; the last part of the broker's ARN); "
                    "to look a broker up by name use 'broker_name'",
                )
            return AmazonMQRef(broker_id=broker_id, region=region)
        node = fields["broker_name"].value
        broker_name = self.string(node, f"{path}.broker_name")
        if not _BROKER_NAME.fullmatch(broker_name):
            self.fail(
                node,
                f"{path}.broker_name: {broker_name!r} is not an Amazon MQ broker name "
                "(1-50 letters, digits, '-', '.', '_', '~')",
            )
        return AmazonMQRef(broker_name=broker_name, region=region)

    def region(self, node: Node, path: str) -> str:
        value = self.string(node, path)
        if not _REGION.fullmatch(value):
            self.fail(node, f"{path}: {value!r} is not an AWS region name like eu-west-1")
        return value

    def endpoints(self, node: Node, path: str) -> tuple[BrokerEndpoint, ...]:
        items = self.sequence(node, path)
        if not items:
            self.fail(node, f"{path}: must list at least one URL")
        seen: dict[BrokerEndpoint, int] = {}
        for index, item in enumerate(items):
            endpoint = self.endpoint(item, f"{path}[{index}]")
            if endpoint in seen:
                self.fail(item, f"{path}[{index}]: duplicate of {path}[{seen[endpoint]}]")
            seen[endpoint] = index
        return tuple(seen)

    def endpoint(self, node: Node, path: str) -> BrokerEndpoint:
        raw = self.string(node, path)
        # Checked first and never echoed: the text before '@' would be a password.
        if "@" in raw:
            self.fail(
                node,
                f"{path}: must not embed a username or password; use the broker's credentials",
            )
        if raw.lower().startswith("failover:"):
            self.fail(
                node,
                f"{path}: ActiveMQ failover: URLs are not supported; list each broker in 'urls'",
            )
        scheme, separator, _ = raw.partition("://")
        if not separator:
            self.fail(
                node, f"{path}: {raw!r} is not a URL; expected stomp://host:port or stomp+ssl://"
            )
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            self.fail(
                node, f"{path}: scheme '{scheme}' is not supported; use stomp:// or stomp+ssl://"
            )
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as e:
            self.fail(node, f"{path}: {raw!r} is not a valid URL ({e})")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            self.fail(node, f"{path}: {raw!r} must be just scheme://host:port")
        if not parts.hostname:
            self.fail(node, f"{path}: missing host in {raw!r}")
        if port is None:
            self.fail(node, f"{path}: missing port in {raw!r} (e.g. {scheme}://host:61613)")
        if port == 0:
            self.fail(node, f"{path}: port must be between 1 and 65535")
        return BrokerEndpoint(scheme=scheme, host=parts.hostname, port=port)

    def credentials(self, owner: _Field, path: str, broker_region: str | None) -> Credentials:
        node = owner.key
        fields = self.mapping(owner.value, path, _CREDENTIAL_KEYS)
        if "secret_id" in fields:
            return self.secret(fields, node, path, broker_region)
        if "region" in fields:
            self.fail(fields["region"].key, f"{path}.region: only used with secret_id")
        if "file" in fields:
            if "username_env" in fields or "password_env" in fields:
                self.fail(
                    node, f"{path}: use either 'file' or 'username_env' + 'password_env', not both"
                )
            return Credentials(file=self.path(fields["file"].value, f"{path}.file"))
        if "username_env" not in fields and "password_env" not in fields:
            self.fail(
                node, f"{path}: needs 'username_env' and 'password_env', or 'file', or 'secret_id'"
            )
        for key, other in (("username_env", "password_env"), ("password_env", "username_env")):
            if key not in fields:
                self.fail(node, f"{path}.{key}: required together with {other}")
        username_env = self.env_name(fields["username_env"].value, f"{path}.username_env")
        password_env = self.env_name(fields["password_env"].value, f"{path}.password_env")
        return Credentials(username_env=username_env, password_env=password_env)

    def client_credentials(
        self, owner: _Field, path: str, broker_region: str | None
    ) -> ClientCredentials:
        fields = self.mapping(owner.value, path, _CLIENT_CREDENTIAL_KEYS)
        choices = ", ".join(u.value for u in Unmapped)
        if "unmapped" not in fields:
            self.fail(
                owner.key,
                f"{path}.unmapped: required (what a login not listed gets: 'shared', the "
                "proxy's own credentials, or 'refuse', no Amazon MQ)",
            )
        unmapped_node = fields["unmapped"].value
        unmapped_text = self.string(unmapped_node, f"{path}.unmapped")
        try:
            unmapped = Unmapped(unmapped_text)
        except ValueError:
            self.fail(unmapped_node, f"{path}.unmapped: {unmapped_text!r} is not one of {choices}")
        if "logins" not in fields:
            self.fail(
                owner.key,
                f"{path}.logins: required (legacy login -> that producer's Amazon MQ credentials)",
            )
        logins = self.logins(fields["logins"].value, f"{path}.logins", broker_region)
        return ClientCredentials(logins=logins, unmapped=unmapped)

    def logins(
        self, node: Node, path: str, broker_region: str | None
    ) -> tuple[tuple[str, Credentials], ...]:
        if not isinstance(node, MappingNode):
            self.fail(
                node,
                f"{path}: must be a mapping of legacy login to credentials, "
                f"got {self.describe(node)}",
            )
        self.plain(node, path, _MAP_TAG)
        if not node.value:
            self.fail(node, f"{path}: must map at least one login")
        first_seen: dict[str, int] = {}
        entries: list[tuple[str, Credentials]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.fail(key_node, f"{path}: YAML merge keys ('<<') are not supported")
            login = self.scalar(key_node, path, "a login")
            if not isinstance(login, str):
                hint = "; quote it" if isinstance(login, bool | int | float) else ""
                self.fail(
                    key_node, f"{path}: a login must be a string, got {_describe(login)}{hint}"
                )
            if not login:
                self.fail(key_node, f"{path}: a login must not be empty")
            if any(ord(char) < 0x20 or char == "\x7f" for char in login):
                self.fail(key_node, f"{path}: a login must not contain control characters")
            if login in first_seen:
                self.fail(
                    key_node,
                    f"{path}: duplicate login {login!r} (first at line {first_seen[login]})",
                )
            first_seen[login] = _line(key_node)
            credentials = self.credentials(
                _Field(key=key_node, value=value_node), f"{path}[{login!r}]", broker_region
            )
            entries.append((login, credentials))
        return tuple(entries)

    def secret(
        self, fields: dict[str, _Field], node: Node, path: str, broker_region: str | None
    ) -> Credentials:
        for other in ("file", "username_env", "password_env"):
            if other in fields:
                self.fail(
                    fields[other].key,
                    f"{path}: use one of 'secret_id', 'file' or 'username_env' + 'password_env', "
                    f"not 'secret_id' and '{other}'",
                )
        secret_node = fields["secret_id"].value
        secret_id = self.string(secret_node, f"{path}.secret_id")
        if not _SECRET_ID.fullmatch(secret_id):
            # Not echoed: the usual mistake here is pasting the secret itself.
            self.fail(
                secret_node,
                f"{path}.secret_id: must be the NAME or ARN of a Secrets Manager secret "
                "(letters, digits, '/_+=.@-'), not the secret itself",
            )
        arn_region = secret_arn_region(secret_id)
        region = None
        if "region" in fields:
            region_node = fields["region"].value
            region = self.region(region_node, f"{path}.region")
            if arn_region is not None and region != arn_region:
                self.fail(
                    region_node,
                    f"{path}.region: {region} contradicts the secret ARN's region "
                    f"{arn_region}; a secret is read in its own region",
                )
        return Credentials(secret_id=secret_id, region=region or arn_region or broker_region)

    def env_name(self, node: Node, path: str) -> str:
        name = self.string(node, path)
        if not _ENV_NAME.fullmatch(name):
            # Not echoed: the usual mistake here is pasting the secret itself.
            self.fail(
                node,
                f"{path}: must be the NAME of an environment variable "
                "(letters, digits, '_'), not the secret itself",
            )
        return name

    def path(self, node: Node, path: str) -> str:
        value = self.string(node, path)
        if not value.strip():
            self.fail(node, f"{path}: must not be empty")
        # os.path.join keeps an absolute value as is.
        return os.path.normpath(os.path.join(self.folder, value))

    # -- routes -----------------------------------------------------------------------------

    def routes(self, node: Node, dry_run: bool, has_amazonmq: bool) -> tuple[Route, ...]:
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            return ()  # `routes:` with nothing under it: same as an empty list
        items = self.sequence(node, "routes")
        names: dict[str, int] = {}
        # Gates may measure a route further down the file: checked once all are named.
        measured: list[tuple[str, Node, str]] = []
        routes = tuple(
            self.route(item, index, dry_run, has_amazonmq, names, measured)
            for index, item in enumerate(items)
        )
        for name, name_node, path in measured:
            if name not in names:
                self.fail(name_node, f"{path}: no route named {name!r} in this file")
        return routes

    def route(
        self,
        node: Node,
        index: int,
        dry_run: bool,
        has_amazonmq: bool,
        names: dict[str, int],
        measured: list[tuple[str, Node, str]],
    ) -> Route:
        path = f"routes[{index}]"
        fields = self.mapping(node, path, _ROUTE_KEYS)

        def need(key: str, why: str = "required") -> Node:
            if key not in fields:
                self.fail(node, f"{path}.{key}: {why}")
            return fields[key].value

        name_node = need("name")
        name = self.string(name_node, f"{path}.name")
        if not _ROUTE_NAME.fullmatch(name):
            self.fail(
                name_node,
                f"{path}.name: {name!r} may only contain letters, digits, '_', '.' and '-' "
                "(it is used as a metrics label)",
            )
        if name == DEFAULT_RULE:
            self.fail(
                name_node, f"{path}.name: {name!r} is reserved for destinations no route matches"
            )
        if name in names:
            self.fail(
                name_node,
                f"{path}.name: duplicate route name {name!r} (first at line {names[name]})",
            )
        names[name] = _line(name_node)

        match_kind, pattern = self.match(need("match"), f"{path}.match")
        self.warn_unprefixed(fields["match"].value, f"{path}.match.{match_kind}", pattern)

        mode_node = need("mode")
        mode_text = self.string(mode_node, f"{path}.mode")
        try:
            mode = Mode(mode_text)
        except ValueError:
            self.fail(
                mode_node,
                f"{path}.mode: {mode_text!r} is not one of {', '.join(m.value for m in Mode)}",
            )
        if mode is not Mode.LEGACY and not has_amazonmq:
            self.fail(
                mode_node,
                f"{path}.mode: mode {mode} sends to Amazon MQ, "
                "but brokers.amazonmq is not configured",
            )
        ignored: set[str] = set()
        for key, field in fields.items():
            why = _FORBIDDEN.get((key, mode))
            if why is None:
                continue
            if mode not in _TOLERATED:
                self.fail(field.key, f"{path}.{key}: not allowed for mode {mode} ({why})")
            ignored.add(key)
            self.warnings.append(
                f"{self.source}:{_line(field.key)}: {path}.{key}: ignored for mode {mode} ({why})"
            )

        weight = None
        sticky_header = None
        if mode is Mode.SPLIT:
            weight = self.weight(need("weight", "required for mode split"), f"{path}.weight")
            if "sticky_header" in fields:
                sticky_header = self.header(fields["sticky_header"].value, f"{path}.sticky_header")

        on_failure = None
        if mode in (Mode.SPLIT, Mode.CUTOVER):
            on_failure_node = need(
                "on_failure",
                f"required for mode {mode} (what to do when Amazon MQ fails: legacy or reject)",
            )
            on_failure_text = self.string(on_failure_node, f"{path}.on_failure")
            try:
                on_failure = OnFailure(on_failure_text)
            except ValueError:
                self.fail(
                    on_failure_node,
                    f"{path}.on_failure: {on_failure_text!r} is not one of "
                    f"{', '.join(f.value for f in OnFailure)}",
                )

        target_destination = None
        if "target_destination" in fields and "target_destination" not in ignored:
            target_destination = self.destination(
                fields["target_destination"].value, f"{path}.target_destination"
            )
            self.warn_unprefixed(
                fields["target_destination"].value, f"{path}.target_destination", target_destination
            )

        route_dry_run = dry_run
        if "dry_run" in fields:
            route_dry_run = self.boolean(fields["dry_run"].value, f"{path}.dry_run")

        rollout = None
        if "rollout" in fields and "rollout" not in ignored:
            rollout = self.rollout(fields["rollout"], f"{path}.rollout", measured)

        return Route(
            name=name,
            match_kind=match_kind,
            pattern=pattern,
            mode=mode,
            weight=weight,
            sticky_header=sticky_header,
            on_failure=on_failure,
            target_destination=target_destination,
            dry_run=route_dry_run,
            line=_line(node),
            rollout=rollout,
        )

    def match(self, node: Node, path: str) -> tuple[MatchKind, str]:
        if not isinstance(node, MappingNode):
            self.fail(
                node,
                f"{path}: must be a mapping like {{exact: /queue/x}}, got {self.describe(node)}",
            )
        fields = self.mapping(node, path, MATCH_KINDS)
        kinds = list(fields)
        if not kinds:
            self.fail(node, f"{path}: needs exactly one of {', '.join(MATCH_KINDS)}")
        if len(kinds) > 1:
            self.fail(
                fields[kinds[1]].key,
                f"{path}: has both '{kinds[0]}' and '{kinds[1]}'; "
                f"use exactly one of {', '.join(MATCH_KINDS)}",
            )
        kind = next(k for k in MATCH_KINDS if k == kinds[0])  # narrows str to MatchKind
        return kind, self.destination(fields[kind].value, f"{path}.{kind}")

    # -- rollout ----------------------------------------------------------------------------

    def rollout(
        self, owner: _Field, path: str, measured: list[tuple[str, Node, str]]
    ) -> RolloutPlan:
        fields = self.mapping(owner.value, path, _ROLLOUT_KEYS)
        for key, why in (
            ("steps", "the weights to step through, e.g. [1, 5, 25, 50, 100]"),
            ("every", "how long each step runs before the next, e.g. 10m"),
            ("gates", "at least one gate (a rollout that cannot see trouble never rolls back)"),
        ):
            if key not in fields:
                self.fail(owner.key, f"{path}.{key}: required ({why})")
        steps = self.steps(fields["steps"].value, f"{path}.steps")
        every = self.duration(fields["every"].value, f"{path}.every")
        on_breach = OnBreach.ROLLBACK
        if "on_breach" in fields:
            on_breach = self.choice(fields["on_breach"].value, f"{path}.on_breach", OnBreach)
        promote = False
        if "promote" in fields:
            promote_node = fields["promote"].value
            promote = self.boolean(promote_node, f"{path}.promote")
            if promote and steps[-1] != 100.0:
                self.fail(
                    promote_node,
                    f"{path}.promote: a route is promoted to cutover only from 100%; "
                    f"the last step is {steps[-1]:g}",
                )
        gates = self.gates(fields["gates"].value, f"{path}.gates", measured)
        state = None
        if "state" in fields:
            state = self.rollout_state(fields["state"].value, f"{path}.state")
        return RolloutPlan(
            steps=steps,
            every=every,
            gates=gates,
            on_breach=on_breach,
            promote=promote,
            state=state,
        )

    def steps(self, node: Node, path: str) -> tuple[float, ...]:
        items = self.sequence(node, path)
        if not items:
            self.fail(node, f"{path}: must list at least one weight")
        steps: list[float] = []
        for index, item in enumerate(items):
            step = self.weight(item, f"{path}[{index}]")
            if steps and step <= steps[-1]:
                self.fail(
                    item,
                    f"{path}[{index}]: {step:g} does not go up from the step before it "
                    f"({steps[-1]:g}); steps must be strictly ascending",
                )
            steps.append(step)
        return tuple(steps)

    def gates(
        self, node: Node, path: str, measured: list[tuple[str, Node, str]]
    ) -> tuple[Gate, ...]:
        items = self.sequence(node, path)
        if not items:
            self.fail(
                node,
                f"{path}: at least one gate (a rollout that cannot see trouble never rolls back)",
            )
        seen: dict[str, int] = {}
        gates: list[Gate] = []
        for index, item in enumerate(items):
            gate, name_node = self.gate(item, f"{path}[{index}]", measured)
            if gate.name in seen:
                self.fail(
                    name_node,
                    f"{path}[{index}].name: duplicate gate name {gate.name!r} "
                    f"(first at line {seen[gate.name]}); name one of them",
                )
            seen[gate.name] = _line(name_node)
            gates.append(gate)
        return tuple(gates)

    def gate(
        self, node: Node, path: str, measured: list[tuple[str, Node, str]]
    ) -> tuple[Gate, Node]:
        fields = self.mapping(node, path, _GATE_KEYS)
        given = [key for key in _GATE_KINDS if key in fields]
        if not given:
            self.fail(
                node,
                f"{path}: needs 'metric' (one of {', '.join(m.value for m in GateMetric)}), "
                "'query' (PromQL) or 'verify' (a mirror route's queue, compared on both brokers)",
            )
        if len(given) > 1:
            self.fail(
                fields[given[1]].key, f"{path}: has both '{given[0]}' and '{given[1]}'; use one"
            )
        if "verify" in fields:
            return self.verify_gate(node, fields, path)
        metric = None
        query = None
        if "metric" in fields:
            metric = self.choice(fields["metric"].value, f"{path}.metric", GateMetric)
            name_node = fields["metric"].value
            name = str(metric)
        else:
            query = self.query(fields["query"].value, f"{path}.query")
            if "name" not in fields:
                self.fail(node, f"{path}.name: required for a query gate (it names its value)")
            name_node = fields["query"].value
            name = ""
        if "name" in fields:
            name_node = fields["name"].value
            name = self.gate_name(name_node, path)
        bounds = [key for key in ("max", "min") if key in fields]
        if not bounds:
            self.fail(node, f"{path}: needs 'max' (breach above) or 'min' (breach below)")
        if len(bounds) > 1:
            self.fail(fields["min"].key, f"{path}: has both 'max' and 'min'; use one")
        bound = float(self.number(fields[bounds[0]].value, f"{path}.{bounds[0]}"))
        for key, why in (
            ("window", "the time the gate looks back over, e.g. 5m"),
            ("min_messages", "below this many messages in the window: not enough data"),
        ):
            if key not in fields:
                self.fail(node, f"{path}.{key}: required ({why})")
        window = self.duration(fields["window"].value, f"{path}.window")
        min_messages = self.min_messages(fields["min_messages"].value, path)
        route = None
        if "route" in fields:
            route_node = fields["route"].value
            route = self.string(route_node, f"{path}.route")
            measured.append((route, route_node, f"{path}.route"))
        gate = Gate(
            name=name,
            window=window,
            min_messages=min_messages,
            metric=metric,
            query=query,
            max=bound if bounds[0] == "max" else None,
            min=bound if bounds[0] == "min" else None,
            route=route,
        )
        return gate, name_node

    def verify_gate(self, node: Node, fields: dict[str, _Field], path: str) -> tuple[Gate, Node]:
        """``{verify: /queue/NAME, max: 0, min_messages: N}``: a mirrored queue compared on
        both brokers as ``strangler verify`` does; ``max`` is the messages that may be
        missing on Amazon MQ (default 0)."""
        for key, why in (
            ("window", "it compares the two queues as they are when it runs, not over a time"),
            ("min", "it breaches above max, the messages missing on Amazon MQ"),
            ("route", "it measures the route its queue matches"),
        ):
            if key in fields:
                self.fail(fields[key].key, f"{path}.{key}: not allowed for a verify gate ({why})")
        queue_node = fields["verify"].value
        queue = self.verify_queue(queue_node, f"{path}.verify")
        name_node = queue_node
        name = VERIFY_GATE_NAME
        if "name" in fields:
            name_node = fields["name"].value
            name = self.gate_name(name_node, path)
        bound = 0.0
        if "max" in fields:
            max_node = fields["max"].value
            bound = float(self.number(max_node, f"{path}.max"))
            if bound < 0:
                self.fail(max_node, f"{path}.max: must not be negative (messages missing)")
        if "min_messages" not in fields:
            self.fail(
                node,
                f"{path}.min_messages: required (below this many messages on legacy's queue: "
                "not enough data to compare)",
            )
        min_messages = self.min_messages(fields["min_messages"].value, path)
        self.verified.append((queue, queue_node, f"{path}.verify"))
        gate = Gate(name=name, window=None, min_messages=min_messages, max=bound, verify=queue)
        return gate, name_node

    def verify_queue(self, node: Node, path: str) -> str:
        value = self.destination(node, path)
        name = value.removeprefix("/queue/")
        if name == value or not name or any(char in name for char in ",*>"):
            self.fail(
                node,
                f"{path}: {value!r} is not one queue: verify browses one queue, /queue/NAME "
                "(no topic, wildcard or composite destination)",
            )
        return value

    def gate_name(self, node: Node, path: str) -> str:
        name = self.string(node, f"{path}.name")
        if not GATE_NAME.fullmatch(name):
            self.fail(
                node, f"{path}.name: {name!r} may only contain letters, digits, '_', '.' and '-'"
            )
        return name

    def min_messages(self, node: Node, path: str) -> float:
        value = float(self.number(node, f"{path}.min_messages"))
        if value < 0:
            self.fail(node, f"{path}.min_messages: must not be negative")
        return value

    def query(self, node: Node, path: str) -> str:
        value = self.string(node, path)
        if not value.strip():
            self.fail(node, f"{path}: must not be empty")
        template = string.Template(value)
        unknown = [n for n in template.get_identifiers() if n not in QUERY_PLACEHOLDERS]
        if unknown or not template.is_valid():
            self.fail(
                node,
                f"{path}: may only use ${', $'.join(QUERY_PLACEHOLDERS)} "
                f"(and $$ for a literal $); found {'$' + unknown[0] if unknown else 'a stray $'}",
            )
        return value

    def rollout_state(self, node: Node, path: str) -> RolloutState:
        fields = self.mapping(node, path, _STATE_KEYS)
        phase = Phase.ROLLING
        if "phase" in fields:
            phase = self.choice(fields["phase"].value, f"{path}.phase", Phase)
        since = None
        if "since" in fields:
            since = self.timestamp(fields["since"].value, f"{path}.since")
        values: list[tuple[str, float | None]] = []
        if "gates" in fields:
            gates_node = fields["gates"].value
            if not isinstance(gates_node, MappingNode):
                self.fail(gates_node, f"{path}.gates: must be a mapping of gate name to value")
            self.plain(gates_node, f"{path}.gates", _MAP_TAG)
            for key_node, value_node in gates_node.value:
                key = self.scalar(key_node, f"{path}.gates", "a gate name")
                if not isinstance(key, str) or not GATE_NAME.fullmatch(key):
                    self.fail(key_node, f"{path}.gates: {key!r} is not a gate name")
                value = self.scalar(value_node, f"{path}.gates.{key}", "a number or null")
                if value is not None:
                    value = float(self.number(value_node, f"{path}.gates.{key}"))
                values.append((key, value))
        return RolloutState(phase=phase, since=since, gates=tuple(values))

    def timestamp(self, node: Node, path: str) -> datetime:
        value = self.scalar(node, path, "a timestamp")
        moment = value if isinstance(value, datetime) else None
        if isinstance(value, str):
            moment = parse_time(value)
        if moment is None or moment.tzinfo is None:
            self.fail(
                node,
                f"{path}: must be an ISO 8601 timestamp with a timezone, "
                'e.g. "2025-05-01T10:00:00Z"',
            )
        return moment

    def duration(self, node: Node, path: str) -> Duration:
        value = self.scalar(node, path, "a duration")
        duration = parse_duration(value) if isinstance(value, str) else None
        if duration is None or duration.seconds <= 0:
            self.fail(
                node,
                f"{path}: must be a duration like 30s, 10m or 1h "
                "(a whole number and one of ms, s, m, h, d; above 0)",
            )
        return duration

    def choice(self, node: Node, path: str, kind: type[_Choice]) -> _Choice:
        text = self.string(node, path)
        try:
            return kind(text)
        except ValueError:
            self.fail(node, f"{path}: {text!r} is not one of {', '.join(k.value for k in kind)}")

    def warn_unprefixed(self, node: Node, path: str, pattern: str) -> None:
        """Destinations are /queue/NAME or /topic/NAME; a bare name is valid but suspicious."""
        if pattern.startswith(("/", "*")):
            return
        self.warnings.append(
            f"{self.source}:{_line(node)}: {path}: {pattern!r} does not start with /queue/ or "
            f"/topic/: producers usually send /queue/{pattern.lstrip('/')}, which this would "
            "not match (ActiveMQ takes a bare name for a queue of that name)"
        )

    def weight(self, node: Node, path: str) -> float:
        value = self.number(node, path)
        if not 0 <= value <= 100:
            self.fail(node, f"{path}: {value!r} is out of range; must be between 0 and 100")
        return float(value)

    def destination(self, node: Node, path: str) -> str:
        value = self.string(node, path)
        if not value:
            self.fail(node, f"{path}: must not be empty")
        if any(ord(char) < 0x20 or char == "\x7f" for char in value):
            self.fail(node, f"{path}: must not contain control characters")
        return value

    def header(self, node: Node, path: str) -> str:
        value = self.string(node, path)
        if not value:
            self.fail(node, f"{path}: must not be empty")
        if ":" in value or any(ord(char) < 0x20 or char == "\x7f" for char in value):
            self.fail(node, f"{path}: {value!r} is not a valid STOMP header name")
        return value

    # -- YAML shapes ------------------------------------------------------------------------

    def mapping(
        self, node: Node, path: str, allowed: Sequence[str], noun: str = "key"
    ) -> dict[str, _Field]:
        where = path or "top level"
        if not isinstance(node, MappingNode):
            described = self.describe(node, where)
            self.fail(node, f"{where}: must be a mapping, got {described}")
        self.plain(node, where, _MAP_TAG)
        fields: dict[str, _Field] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.fail(key_node, f"{where}: YAML merge keys ('<<') are not supported")
            key = self.scalar(key_node, where, "a key")
            if not isinstance(key, str):
                self.fail(key_node, f"{where}: keys must be strings, got {_describe(key)}")
            if key not in allowed:
                if key.lower() in _SECRET_KEYS:
                    self.fail(key_node, f"{where}: '{key}': {_NO_SECRETS}")
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
                self.fail(key_node, f"{where}: unknown {noun} '{key}' ({hint})")
            if key in fields:
                first = _line(fields[key].key)
                self.fail(key_node, f"{where}: duplicate key '{key}' (first at line {first})")
            fields[key] = _Field(key=key_node, value=value_node)
        return fields

    def sequence(self, node: Node, path: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.fail(node, f"{path}: must be a list, got {self.describe(node, path)}")
        self.plain(node, path, _SEQ_TAG)
        return list(node.value)

    def plain(self, node: Node, path: str, tag: str) -> None:
        # Collections are walked, never constructed, so a tag would be silently ignored.
        if node.tag != tag:
            self.refuse_tag(node, path)

    def refuse_tag(self, node: Node, path: str) -> NoReturn:
        self.fail(
            node,
            f"{path or 'value'}: YAML tag {_tag_text(node.tag)!r} is refused: routes.yaml is "
            "read with YAML's safe loader, and tags that build objects (!!python/...) or "
            "custom tags are not allowed",
        )

    def describe(self, node: Node, path: str = "") -> str:
        if isinstance(node, ScalarNode):
            return _describe(self.scalar(node, path, "a value"))
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            self.refuse_tag(node, path)
        return _shape(node)

    def scalar(self, node: Node, path: str, expected: str) -> object:
        if node.tag not in _SCALAR_TAGS and node.tag not in (_MAP_TAG, _SEQ_TAG):
            self.refuse_tag(node, path)
        if not isinstance(node, ScalarNode):
            self.fail(node, f"{path or 'value'}: must be {expected}, got {_shape(node)}")
        try:
            value: object = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            # Unknown or unsafe tags (!!python/object, !foo) and malformed typed scalars.
            problem = getattr(e, "problem", None) or str(e)
            self.fail(node, f"{path or 'value'}: {problem}")
        return value

    def string(self, node: Node, path: str) -> str:
        value = self.scalar(node, path, "a string")
        if not isinstance(value, str):
            # YAML 1.1 reads yes/no/on/off/123/1.0 as non-strings; quoting is the fix.
            hint = "; quote it" if isinstance(value, bool | int | float) else ""
            self.fail(node, f"{path}: must be a string, got {_describe(value)}{hint}")
        return value

    def boolean(self, node: Node, path: str) -> bool:
        value = self.scalar(node, path, "true or false")
        if not isinstance(value, bool):
            self.fail(node, f"{path}: must be true or false, got {_describe(value)}")
        return value

    def integer(self, node: Node, path: str) -> int:
        value = self.scalar(node, path, "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, f"{path}: must be an integer, got {_describe(value)}")
        return value

    def number(self, node: Node, path: str) -> float | int:
        value = self.scalar(node, path, "a number")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, f"{path}: must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            self.fail(node, f"{path}: must be a finite number")
        return value


def _tag_text(tag: str) -> str:
    """A tag as it was written: ``!!python/object:x`` rather than its expanded URI."""
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


def _yaml_problem(error: yaml.MarkedYAMLError, lines: list[str]) -> str:
    """PyYAML's syntax error as a reason a person can act on (its own words in brackets)."""
    # PyYAML phrases some problems as the second half of a sentence ("but found ...").
    problem = (error.problem or "").removeprefix("but ")
    original = problem or error.context or "invalid YAML"
    context = ""
    if error.context and error.context_mark is not None and problem:
        context = f" (the block that starts at line {error.context_mark.line + 1})"
    line = lines[0] if lines else ""
    if "\t" in line[: len(line) - len(line.lstrip())] or "'\\t'" in original:
        return (
            "YAML syntax error: a tab character: YAML indents with spaces only; replace the "
            f"tab with spaces [YAML: {original}]"
        )
    full = f"{error.context}, {problem}" if error.context and problem else original
    for raw, friendly in _YAML_PROBLEMS:
        if raw in full or raw in original:
            return f"YAML syntax error: {friendly.format(context=context)} [YAML: {original}]"
    return f"YAML syntax error: {original}{context}"
