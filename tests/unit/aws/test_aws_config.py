"""discover_endpoints: what the proxy calls to turn a routes.yaml broker into endpoints."""

from __future__ import annotations

import json
from dataclasses import replace

import boto3
import pytest
from aws_fakes import (
    PASSWORD,
    REGION,
    amazon_endpoints,
    create_broker,
    moto_broker,
    set_instance_endpoints,
)

from strangler.aws import (
    AwsError,
    discover,
    discover_endpoints,
    mq_client,
    secretsmanager_client,
)
from strangler.routes import (
    AMAZONMQ,
    AmazonMQRef,
    BrokerConfig,
    BrokerEndpoint,
    Credentials,
    parse_routes,
)
from strangler.upstream import resolve_credentials

pytestmark = pytest.mark.usefixtures("aws")

HOST_1 = "b-1-1.mq.eu-west-1.amazonaws.com"
HOST_2 = "b-1-2.mq.eu-west-1.amazonaws.com"


def routes_with(amazonmq: str) -> str:
    return "brokers:\n  legacy:\n    url: stomp://127.0.0.1:61611\n  amazonmq:\n" + amazonmq


def test_static_urls_are_returned_unchanged_without_calling_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # any AWS call would now fail
    table = parse_routes(routes_with("    url: stomp+ssl://mq.internal:61614\n"), "r.yaml")
    config = table.brokers[AMAZONMQ]
    assert discover_endpoints(config) is config
    assert discover(config).broker is None
    assert discover(config).warnings == ()


def test_broker_name_from_routes_yaml_is_discovered() -> None:
    broker_id = create_broker("orders", version="5.17.6")
    set_instance_endpoints(broker_id, amazon_endpoints(HOST_1), amazon_endpoints(HOST_2))
    table = parse_routes(
        routes_with(f"    broker_name: orders\n    region: {REGION}\n    heartbeat_ms: 5000\n"),
        "r.yaml",
    )
    config = table.brokers[AMAZONMQ]
    assert config.endpoints == ()
    assert config.needs_discovery

    found = discover(config)
    assert found.config.endpoints == (
        BrokerEndpoint("stomp+ssl", HOST_1, 61614),
        BrokerEndpoint("stomp+ssl", HOST_2, 61614),
    )
    # Everything else is kept, including aws, so the schedule can rediscover.
    assert found.config == replace(config, endpoints=found.config.endpoints)
    assert not found.config.needs_discovery
    assert found.broker is not None and found.broker.broker_id == broker_id
    assert found.warnings == (
        "ActiveMQ 5.17.6 is past end of support on Amazon MQ; upgrade to 5.18 or later",
    )
    assert discover_endpoints(config) == found.config


def test_rediscovery_follows_changed_endpoints() -> None:
    broker_id = create_broker("orders")
    set_instance_endpoints(broker_id, amazon_endpoints(HOST_1), amazon_endpoints(HOST_2))
    config = parse_routes(routes_with("    broker_name: orders\n"), "r").brokers[AMAZONMQ]
    first = discover_endpoints(config)
    set_instance_endpoints(broker_id, amazon_endpoints(HOST_2), amazon_endpoints(HOST_1))
    second = discover_endpoints(first)
    assert [e.host for e in second.endpoints] == [HOST_2, HOST_1]


def test_a_broker_not_running_is_refused_by_discovery() -> None:
    broker_id = create_broker("orders")
    moto_broker(broker_id).state = "REBOOT_IN_PROGRESS"
    # Built in code: moto's ids lack the "b-" prefix the loader insists on.
    config = BrokerConfig(
        name=AMAZONMQ,
        endpoints=(),
        ca_file=None,
        credentials=None,
        aws=AmazonMQRef(broker_id=broker_id),
    )
    with pytest.raises(AwsError, match="state is REBOOT_IN_PROGRESS, not RUNNING"):
        discover_endpoints(config)


def test_explicit_client_is_used() -> None:
    broker_id = create_broker("orders")
    set_instance_endpoints(broker_id, amazon_endpoints(HOST_1), amazon_endpoints(HOST_2))
    config = parse_routes(routes_with("    broker_name: orders\n"), "r").brokers[AMAZONMQ]
    assert len(discover_endpoints(config, client=mq_client(REGION)).endpoints) == 2


def test_clients_are_shared_per_service_and_region() -> None:
    assert mq_client(REGION) is mq_client(REGION)
    assert mq_client(REGION) is not mq_client("us-east-1")
    assert secretsmanager_client(REGION) is secretsmanager_client(REGION)
    assert mq_client(REGION).meta.region_name == REGION


def test_secret_credentials_from_routes_yaml_inherit_the_broker_region() -> None:
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="prod/strangler", SecretString=json.dumps({"username": "u", "password": PASSWORD})
    )
    table = parse_routes(
        routes_with(
            "    broker_name: orders\n    region: us-east-1\n"
            "    credentials:\n      secret_id: prod/strangler\n"
        ),
        "r",
    )
    credentials = table.brokers[AMAZONMQ].credentials
    assert credentials == Credentials(secret_id="prod/strangler", region="us-east-1")
    assert resolve_credentials(credentials, {}) == ("u", PASSWORD)
