"""Amazon MQ found through the AWS API (moto) and then used for real: the proxy
discovers the active/standby endpoints, which point at local STOMP+SSL brokers."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.mq.models import mq_backends

from strangler.aws import clear_client_cache

from .brokers import BrokerInfo, free_port
from .conftest import ProxyFactory
from .harness import connect, drain, unique_queue

pytestmark = pytest.mark.integration
REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    clear_client_cache()
    with mock_aws():
        yield
    clear_client_cache()


def _broker_with_endpoints(name: str, active: str, standby: str) -> str:
    broker_id = boto3.client("mq", region_name=REGION).create_broker(
        BrokerName=name,
        DeploymentMode="ACTIVE_STANDBY_MULTI_AZ",
        EngineType="ACTIVEMQ",
        EngineVersion="5.18",
        HostInstanceType="mq.m5.large",
        PubliclyAccessible=False,
        AutoMinorVersionUpgrade=True,
        Users=[{"Username": "strangler", "Password": "amazonmq-secret-1"}],
    )["BrokerId"]
    broker = mq_backends[DEFAULT_ACCOUNT_ID][REGION].brokers[broker_id]
    # moto gives both instances one host; point them at two distinct local endpoints.
    for instance, url in zip(broker.instances, (active, standby), strict=True):
        instance["endpoints"] = [f"ssl://{url}:61617", f"stomp+ssl://{url}"]
    return str(broker_id)


@pytest.mark.usefixtures("aws")
def test_proxy_routes_to_the_endpoints_it_discovered_by_broker_name(
    make_proxy: ProxyFactory, legacy: BrokerInfo, amazonmq: BrokerInfo
) -> None:
    dest = unique_queue("discovered")
    # The first instance does not answer (the standby of a real pair refuses connections);
    # the second is the local Amazon MQ stand-in.
    _broker_with_endpoints(
        "orders-broker", f"127.0.0.1:{free_port()}", f"127.0.0.1:{amazonmq.port}"
    )
    block = (
        "  amazonmq:\n"
        f"    broker_name: orders-broker\n    region: {REGION}\n"
        f"    ca_file: {amazonmq.ca_file}\n"
        "    credentials: {username_env: STRANGLER_TEST_AMQ_USER,"
        " password_env: STRANGLER_TEST_AMQ_PASSWORD}\n"
    )
    proxy = make_proxy(
        f"  - {{name: moved, match: {{exact: '{dest}'}}, mode: cutover, on_failure: reject}}\n",
        amazonmq_block=block,
    )
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password)
    assert client.wait_receipts([client.send(dest, f"m{i}") for i in range(5)])
    client.close()
    assert len(drain(amazonmq, dest)) == 5
    up = proxy.wait_fact("message_confirmed", 5, broker="amazonmq")
    assert len(up) == 5
