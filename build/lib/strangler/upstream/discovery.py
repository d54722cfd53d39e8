"""Endpoints of a broker named by Amazon MQ id or name, asked from AWS.

Answers are cached for a minute per broker, so a hundred producer sessions
opening Amazon MQ connections cost one ``describe_broker``; a connection that
failed asks again (``fresh``), which is how a replaced or failed-over broker's
new endpoints are found. boto3 blocks, so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from ..routes import AmazonMQRef, BrokerConfig
from .errors import BrokerUnavailable

CACHE_SECONDS: Final = 60.0
_cache: dict[AmazonMQRef, tuple[float, BrokerConfig]] = {}


async def resolve_endpoints(config: BrokerConfig, *, fresh: bool = False) -> BrokerConfig:
    """``config`` with endpoints; raises BrokerUnavailable naming the AWS problem."""
    ref = config.aws
    if ref is None:
        return config
    cached = _cache.get(ref)
    if cached is not None and not fresh and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    from ..aws import AwsError, discover_endpoints  # boto3 only when a broker needs it

    try:
        resolved = await asyncio.to_thread(discover_endpoints, config)
    except AwsError as exc:
        raise BrokerUnavailable(config.name, f"Amazon MQ discovery: {exc.reason}") from exc
    _cache[ref] = (time.monotonic(), resolved)
    return resolved
