"""Helpers for the AWS tests: brokers in moto, and the AWS answers moto cannot give."""

from __future__ import annotations

from typing import Any, Literal

import boto3
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.mq.models import mq_backends

REGION = "eu-west-1"
PASSWORD = "Pa55w0rd!-never-in-a-message"


def create_broker(
    name: str,
    *,
    mode: Literal["ACTIVE_STANDBY_MULTI_AZ", "SINGLE_INSTANCE"] = "ACTIVE_STANDBY_MULTI_AZ",
    version: str = "5.18",
    engine: Literal["ACTIVEMQ", "RABBITMQ"] = "ACTIVEMQ",
    region: str = REGION,
) -> str:
    """Create a broker in moto; return its id."""
    response = boto3.client("mq", region_name=region).create_broker(
        BrokerName=name,
        DeploymentMode=mode,
        EngineType=engine,
        EngineVersion=version,
        HostInstanceType="mq.m5.large",
        PubliclyAccessible=False,
        AutoMinorVersionUpgrade=True,
        Users=[{"Username": "strangler", "Password": PASSWORD}],
    )
    return str(response["BrokerId"])


def moto_broker(broker_id: str, region: str = REGION) -> Any:
    """moto's model object, to set what moto cannot (state, per-instance endpoints)."""
    return mq_backends[DEFAULT_ACCOUNT_ID][region].brokers[broker_id]


def set_instance_endpoints(broker_id: str, *per_instance: list[str]) -> None:
    """Give each broker instance its own endpoint list (moto shares one list and host)."""
    broker = moto_broker(broker_id)
    assert len(per_instance) == len(broker.instances)
    for instance, endpoints in zip(broker.instances, per_instance, strict=True):
        instance["endpoints"] = list(endpoints)


def amazon_endpoints(host: str) -> list[str]:
    """What Amazon MQ for ActiveMQ lists for one instance, in its usual order."""
    return [
        f"ssl://{host}:61617",
        f"amqp+ssl://{host}:5671",
        f"stomp+ssl://{host}:61614",
        f"mqtt+ssl://{host}:8883",
        f"wss://{host}:61619",
    ]
