"""Fill a routes.yaml broker's endpoints in from Amazon MQ: what the proxy calls.

Blocking (boto3, a few seconds at worst, about a minute when AWS is unreachable): the
asyncio layer must run it in a thread, e.g.
``config = await asyncio.to_thread(discover_endpoints, table.brokers["amazonmq"])``,
at connect time and then on a schedule, keeping the previous endpoints when it raises.

Invariants:
- A config without ``aws`` (static ``url``/``urls``) is returned unchanged, without any
  AWS call, so callers need not branch.
- The returned config equals the input except ``endpoints``, which are exactly the
  discovered broker's (so ``aws`` stays set and the result can be rediscovered later).
- A broker that is not RUNNING, not ActiveMQ or without a STOMP endpoint raises
  ``AwsError``; it never yields a config with no endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..routes import BrokerConfig
from .discovery import DiscoveredBroker, ensure_routable, resolve_broker

if TYPE_CHECKING:
    from mypy_boto3_mq.client import MQClient


@dataclass(frozen=True, slots=True)
class Discovery:
    """A config with discovered endpoints, and the broker they came from (None: static)."""

    config: BrokerConfig
    broker: DiscoveredBroker | None

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.broker.warnings if self.broker is not None else ()


def discover(config: BrokerConfig, client: MQClient | None = None) -> Discovery:
    """Resolve ``config.aws`` and return the config with those endpoints, plus the details."""
    if config.aws is None:
        return Discovery(config=config, broker=None)
    broker = resolve_broker(config.aws, client)
    ensure_routable(broker)
    return Discovery(config=replace(config, endpoints=broker.endpoints), broker=broker)


def discover_endpoints(config: BrokerConfig, client: MQClient | None = None) -> BrokerConfig:
    """``config`` with its endpoints filled in from Amazon MQ (see ``discover``)."""
    return discover(config, client).config
