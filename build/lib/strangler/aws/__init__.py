"""Amazon MQ through the AWS API: endpoint discovery and Secrets Manager credentials.

Everything here blocks (boto3) and raises only ``AwsError``: the asyncio layer runs it in a
thread. ``strangler.routes`` imports this package lazily, so routes.yaml can be checked
without boto3.
"""

from .clients import clear_client_cache, mq_client, secretsmanager_client
from .config import Discovery, discover, discover_endpoints
from .discovery import DiscoveredBroker, ensure_routable, parse_broker, resolve_broker
from .errors import AwsError
from .secrets import read_secret_credentials

__all__ = [
    "AwsError",
    "DiscoveredBroker",
    "Discovery",
    "clear_client_cache",
    "discover",
    "discover_endpoints",
    "ensure_routable",
    "mq_client",
    "parse_broker",
    "read_secret_credentials",
    "resolve_broker",
    "secretsmanager_client",
]
