"""Immutable values describing brokers, routes and per-message routing decisions.

Invariants:
- Every value here is a frozen, slotted dataclass or a StrEnum; nothing does I/O.
- The loader is the only producer that validates YAML; these classes trust their inputs
  except where a wrong value would silently misroute (see ``Route.__post_init__``).
- ``Route.dry_run`` is the *effective* flag: the loader folds the table-wide default into it,
  so ``Decision.dry_run == route.dry_run`` always holds.
- ``Decision.targets[0] == Decision.primary``; ``amazonmq_destination`` is set iff
  ``"amazonmq" in targets``.
- A ``BrokerConfig`` has endpoints, or an ``aws`` reference to discover them from (or both,
  once ``strangler.aws.discover_endpoints`` has filled them in); never neither.
- ``BrokerConfig.client_credentials`` is only ever set on the Amazon MQ broker (legacy
  always gets the producer's own login); ``login_for`` picks a session's credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from .client_credentials import ClientCredentials, SessionLogin, session_login
from .credentials import Credentials

LEGACY: Final = "legacy"
AMAZONMQ: Final = "amazonmq"
BROKER_NAMES: Final = (LEGACY, AMAZONMQ)

DEFAULT_HEARTBEAT_MS: Final = 10_000
DEFAULT_TRACE_HEADER: Final = "strangler-trace-id"
# The rule name reported when no route matches; the loader reserves it for that reason.
DEFAULT_RULE: Final = "default"

MatchKind = Literal["exact", "glob", "prefix"]
MATCH_KINDS: Final[tuple[MatchKind, ...]] = ("exact", "glob", "prefix")


class Mode(StrEnum):
    LEGACY = "legacy"  # legacy only: the route exists to pin a destination back
    MIRROR = "mirror"  # both; the client waits for legacy, Amazon MQ failures are only logged
    SPLIT = "split"  # weight% of messages to Amazon MQ, the rest to legacy
    CUTOVER = "cutover"  # Amazon MQ only


class OnFailure(StrEnum):
    LEGACY = "legacy"  # Amazon MQ failed: send to legacy instead
    REJECT = "reject"  # Amazon MQ failed: ERROR the client's frame


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    scheme: str  # "stomp" | "stomp+ssl"
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "stomp+ssl"

    def __str__(self) -> str:
        # IPv6 literals need their brackets back to be a usable URL.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AmazonMQRef:
    """An Amazon MQ broker named by id or by name, whose endpoints the AWS API tells.

    Exactly one of ``broker_id`` / ``broker_name``. ``region`` None means the AWS SDK's
    default (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile). Only names things: the
    lookup itself is ``strangler.aws.resolve_broker``, so routes stays free of boto3.
    """

    broker_id: str | None = None
    broker_name: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if (self.broker_id is None) == (self.broker_name is None):
            raise ValueError("AmazonMQRef: give exactly one of broker_id and broker_name")

    def __str__(self) -> str:
        which = self.broker_id if self.broker_id is not None else f"named {self.broker_name!r}"
        return f"Amazon MQ broker {which} in {self.region or 'the default AWS region'}"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    name: str  # "legacy" | "amazonmq"
    # Active first, then standbys: in file order, or in instance order once discovered.
    # Empty only while ``aws`` is set and discovery has not run yet.
    endpoints: tuple[BrokerEndpoint, ...]
    ca_file: str | None  # absolute: the loader resolves it against the routes file's folder
    credentials: Credentials | None
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS
    aws: AmazonMQRef | None = None  # set: endpoints come from Amazon MQ's API, not the file
    # Amazon MQ only: per-producer credentials, keyed by the producer's legacy login.
    client_credentials: ClientCredentials | None = None

    def __post_init__(self) -> None:
        if not self.endpoints and self.aws is None:
            raise ValueError(f"BrokerConfig {self.name}: needs endpoints or an aws reference")

    def login_for(self, client_login: str | None) -> SessionLogin:
        """What a session whose producer logged in to legacy as ``client_login`` uses here."""
        return session_login(self.credentials, self.client_credentials, client_login)

    @property
    def needs_discovery(self) -> bool:
        """True while the endpoints still have to be asked from AWS before connecting."""
        return self.aws is not None and not self.endpoints


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match_kind: MatchKind
    pattern: str
    mode: Mode
    weight: float | None = None  # split only: % of messages to Amazon MQ, 0..100
    sticky_header: str | None = None  # split only
    on_failure: OnFailure | None = None  # split and cutover only
    target_destination: str | None = None  # never for legacy
    dry_run: bool = False  # effective value (route override, else table default)
    line: int = 0  # 1-based line in the routes file; 0 when built in code

    def __post_init__(self) -> None:
        if self.match_kind not in MATCH_KINDS:
            raise ValueError(f"Route {self.name}: match_kind {self.match_kind!r}")
        if (self.weight is None) != (self.mode is not Mode.SPLIT):
            raise ValueError(f"Route {self.name}: weight is required for split and only split")
        if self.weight is not None and not 0.0 <= self.weight <= 100.0:
            raise ValueError(f"Route {self.name}: weight {self.weight} outside 0..100")

    def describe(self) -> str:
        """What the route does, in one line for people: ``split 10% by JMSXGroupID ...``."""
        text = str(self.mode)
        if self.weight is not None:
            text += f" {self.weight:g}%"
            if self.sticky_header:
                text += f" by {self.sticky_header}"
        if self.on_failure is not None:
            text += f" on_failure={self.on_failure}"
        if self.target_destination:
            text += f" -> {self.target_destination}"
        if self.dry_run:
            text += " (dry-run)"
        return text


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str  # route name, or "default" when nothing matched
    mode: Mode
    targets: tuple[str, ...]  # broker names, primary first
    primary: str  # the broker whose confirmation the client's receipt waits for
    amazonmq_destination: str | None  # None iff "amazonmq" not in targets
    on_failure: OnFailure | None
    dry_run: bool  # what decide reports would happen; the proxy enforces legacy-only sending
    routes_version: str
