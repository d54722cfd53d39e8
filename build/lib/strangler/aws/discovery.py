"""Find an Amazon MQ for ActiveMQ broker's STOMP endpoints through the Amazon MQ API.

Blocking (boto3): the asyncio layer must call these in a thread (``asyncio.to_thread``).

Invariants:
- Endpoints are the ``stomp+ssl://`` entries of every broker instance, picked by scheme,
  never by position in the list, in instance order; duplicates are dropped, first kept.
  Amazon MQ does not say which instance of an active/standby pair is active: the standby
  refuses connections, so a caller tries them in order (as it does with ``urls``).
- ``resolve_broker`` reports whatever state the broker is in; ``ensure_routable`` is the
  single place deciding whether the proxy may send to it (RUNNING, ActiveMQ, has STOMP).
- A broker name resolves to exactly one broker id across every page of ListBrokers, or
  fails naming what was found; it never picks one of several.
- Every failure is an ``AwsError`` (see ``errors``); the MQ API never returns passwords,
  so nothing here handles secrets.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ..routes import AmazonMQRef, BrokerEndpoint
from .clients import mq_client
from .errors import AwsError, aws_call

if TYPE_CHECKING:
    from mypy_boto3_mq.client import MQClient

STOMP_SCHEME: Final = "stomp+ssl"
RUNNING: Final = "RUNNING"
ACTIVEMQ: Final = "ACTIVEMQ"
ACTIVE_STANDBY: Final = "ACTIVE_STANDBY_MULTI_AZ"
SINGLE_INSTANCE: Final = "SINGLE_INSTANCE"
# Amazon MQ for ActiveMQ: 5.15-5.17 are past end of support; 5.18 and 5.19 are current.
OLDEST_SUPPORTED_ENGINE: Final = (5, 18)

_PAGE_SIZE: Final = 100  # ListBrokers' maximum MaxResults: fewest round trips
_VERSION: Final = re.compile(r"(\d+)\.(\d+)")

# Why a broker in each non-RUNNING state cannot take messages, and what happens next.
_STATE_HINTS: Final[Mapping[str, str]] = {
    "CREATION_IN_PROGRESS": "it is still being created (about 15-20 minutes)",
    "CREATION_FAILED": "its creation failed; see the Amazon MQ console",
    "DELETION_IN_PROGRESS": "it is being deleted",
    "REBOOT_IN_PROGRESS": "it is rebooting (maintenance window or a manual reboot)",
    "CRITICAL_ACTION_REQUIRED": "Amazon MQ needs an operator to act",
    "REPLICA": "it is a cross-region replica, which takes no clients until promoted; "
    "point strangler at the primary",
}


@dataclass(frozen=True, slots=True)
class DiscoveredBroker:
    """One ``describe_broker`` answer, reduced to what the proxy needs.

    ``endpoints`` may be empty (a broker still being created has no instances yet);
    ``ensure_routable`` refuses such a broker. ``warnings`` are valid-but-risky facts
    (old engine, no standby) for the operator's log, never reasons to refuse.
    """

    broker_id: str
    name: str
    region: str
    state: str
    deployment_mode: str
    engine_type: str
    engine_version: str
    endpoints: tuple[BrokerEndpoint, ...]
    warnings: tuple[str, ...] = ()
    actions_required: tuple[str, ...] = ()  # CRITICAL_ACTION_REQUIRED codes, e.g. a KMS key

    @property
    def subject(self) -> str:
        return f"Amazon MQ broker {self.name} ({self.broker_id}) in {self.region}"


def resolve_broker(ref: AmazonMQRef, client: MQClient | None = None) -> DiscoveredBroker:
    """Look ``ref`` up (by id, or by name across all pages) and describe it.

    ``client`` (e.g. from ``mq_client``, reusable across calls) must be for ``ref.region``
    when that is set; without one, a client for ``ref.region`` is made.
    """
    mq = client if client is not None else mq_client(ref.region)
    region = mq.meta.region_name
    if ref.region is not None and client is not None and region != ref.region:
        raise ValueError(f"resolve_broker: client is for {region}, the broker is in {ref.region}")
    if ref.broker_id is not None:
        broker_id = ref.broker_id
    else:
        assert ref.broker_name is not None  # AmazonMQRef: exactly one of id and name
        broker_id = _find_by_name(mq, ref.broker_name, region)
    with aws_call(
        "mq:DescribeBroker",
        f"Amazon MQ broker {broker_id} in {region}",
        not_found=f"no Amazon MQ broker with id {broker_id} in {region}",
    ):
        response = mq.describe_broker(BrokerId=broker_id)
    return parse_broker(response, region)


def ensure_routable(broker: DiscoveredBroker) -> None:
    """Raise ``AwsError`` unless the proxy can send STOMP to ``broker`` now."""
    if broker.state != RUNNING:
        hint = _STATE_HINTS.get(broker.state, "not a state strangler knows")
        if broker.actions_required:
            hint += f": {', '.join(broker.actions_required)}"
        raise AwsError(f"{broker.subject}: state is {broker.state}, not {RUNNING}; {hint}")
    if broker.engine_type != ACTIVEMQ:
        raise AwsError(
            f"{broker.subject}: engine is {broker.engine_type}; strangler speaks STOMP, "
            "which only Amazon MQ for ActiveMQ offers"
        )
    if not broker.endpoints:
        raise AwsError(f"{broker.subject}: reports no {STOMP_SCHEME}:// endpoint")


def parse_broker(response: Mapping[str, Any], region: str) -> DiscoveredBroker:
    """A ``describe_broker`` response -> ``DiscoveredBroker`` (pure; used by tests too)."""
    broker_id = str(response.get("BrokerId", ""))
    name = str(response.get("BrokerName", broker_id))
    deployment_mode = str(response.get("DeploymentMode", ""))
    engine_version = str(response.get("EngineVersion", ""))
    warnings: list[str] = []
    endpoints: list[BrokerEndpoint] = []
    for instance in response.get("BrokerInstances") or ():
        for url in instance.get("Endpoints") or ():
            if not url.lower().startswith(f"{STOMP_SCHEME}://"):
                continue
            endpoint = _endpoint(url)
            if endpoint is None:
                warnings.append(f"ignored endpoint {url!r}: not {STOMP_SCHEME}://host:port")
            elif endpoint not in endpoints:
                endpoints.append(endpoint)
    warnings += _warnings(deployment_mode, engine_version, response, len(endpoints))
    actions = tuple(
        str(action.get("ActionRequiredCode", "?"))
        for action in response.get("ActionsRequired") or ()
    )
    return DiscoveredBroker(
        broker_id=broker_id,
        name=name,
        region=region,
        state=str(response.get("BrokerState", "UNKNOWN")),
        deployment_mode=deployment_mode,
        engine_type=str(response.get("EngineType", "")).upper(),
        engine_version=engine_version,
        endpoints=tuple(endpoints),
        warnings=tuple(warnings),
        actions_required=actions,
    )


def _endpoint(url: str) -> BrokerEndpoint | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None or port == 0:
        return None
    return BrokerEndpoint(scheme=STOMP_SCHEME, host=parts.hostname, port=port)


def _warnings(
    deployment_mode: str, engine_version: str, response: Mapping[str, Any], found: int
) -> list[str]:
    warnings: list[str] = []
    version = _VERSION.match(engine_version)
    if version is not None and (int(version[1]), int(version[2])) < OLDEST_SUPPORTED_ENGINE:
        oldest = ".".join(map(str, OLDEST_SUPPORTED_ENGINE))
        warnings.append(
            f"ActiveMQ {engine_version} is past end of support on Amazon MQ; "
            f"upgrade to {oldest} or later"
        )
    pending = response.get("PendingEngineVersion")
    if pending:
        warnings.append(
            f"engine upgrade to {pending} is pending: the broker reboots to apply it "
            "(at the next maintenance window unless applied now)"
        )
    if deployment_mode == SINGLE_INSTANCE:
        warnings.append(
            "deployment mode SINGLE_INSTANCE has no standby: every reboot and maintenance "
            "window makes Amazon MQ unavailable (use ACTIVE_STANDBY_MULTI_AZ)"
        )
    elif deployment_mode == ACTIVE_STANDBY and 0 < found < 2:
        warnings.append(
            f"deployment mode {ACTIVE_STANDBY} but only {found} distinct {STOMP_SCHEME} "
            "endpoint was reported: failover to the standby is not possible"
        )
    return warnings


def _find_by_name(mq: MQClient, name: str, region: str) -> str:
    subject = f"Amazon MQ broker named {name!r} in {region}"
    matches: list[str] = []
    seen: list[str] = []
    with aws_call("mq:ListBrokers", subject):
        pages = mq.get_paginator("list_brokers").paginate(PaginationConfig={"PageSize": _PAGE_SIZE})
        for page in pages:
            for summary in page.get("BrokerSummaries", ()):
                broker_name = summary.get("BrokerName", "")
                seen.append(broker_name)
                if broker_name == name:
                    matches.append(summary.get("BrokerId", ""))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AwsError(
            f"{subject}: {len(matches)} brokers have that name ({', '.join(matches)}); "
            "use broker_id to say which"
        )
    raise AwsError(f"no Amazon MQ broker named {name!r} in {region}{_hint(name, seen)}")


def _hint(name: str, seen: Sequence[str]) -> str:
    if not seen:
        return " (the account has no brokers there; wrong region or account?)"
    close = difflib.get_close_matches(name, seen, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" ({len(seen)} brokers there, none with that name)"
