"""Declarative routing of STOMP destinations between the legacy broker and Amazon MQ.

Pure: no sockets, no asyncio; the only I/O is reading routes.yaml (``load_routes``) and,
when the proxy asks, a credentials file or Secrets Manager secret (``Credentials.resolve``,
which imports boto3 lazily).
"""

from .client_credentials import ClientCredentials, SessionLogin, Unmapped, session_login
from .credentials import Credentials, secret_arn_region
from .decide import ConsumerDecision, decide, decide_send, decide_subscribe, split_bucket
from .errors import CredentialsError, RoutesError
from .loader import load_routes, parse_routes
from .model import (
    AMAZONMQ,
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_RULE,
    DEFAULT_TRACE_HEADER,
    LEGACY,
    MATCH_KINDS,
    AmazonMQRef,
    BrokerConfig,
    BrokerEndpoint,
    Decision,
    MatchKind,
    Mode,
    OnFailure,
    Route,
)
from .table import DEFAULT_CACHE_LIMIT, Resolution, RouteTable

__all__ = [
    "AMAZONMQ",
    "DEFAULT_CACHE_LIMIT",
    "DEFAULT_HEARTBEAT_MS",
    "DEFAULT_RULE",
    "DEFAULT_TRACE_HEADER",
    "LEGACY",
    "MATCH_KINDS",
    "AmazonMQRef",
    "BrokerConfig",
    "BrokerEndpoint",
    "ClientCredentials",
    "ConsumerDecision",
    "Credentials",
    "CredentialsError",
    "Decision",
    "MatchKind",
    "Mode",
    "OnFailure",
    "Resolution",
    "Route",
    "RouteTable",
    "RoutesError",
    "SessionLogin",
    "Unmapped",
    "decide",
    "decide_send",
    "decide_subscribe",
    "load_routes",
    "parse_routes",
    "secret_arn_region",
    "session_login",
    "split_bucket",
]
