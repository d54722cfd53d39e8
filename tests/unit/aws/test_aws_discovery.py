"""Amazon MQ discovery against moto: ids, names across pages, endpoints, states, warnings."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from aws_fakes import (
    REGION,
    amazon_endpoints,
    create_broker,
    moto_broker,
    set_instance_endpoints,
)
from botocore.stub import Stubber

from strangler.aws import (
    AwsError,
    ensure_routable,
    mq_client,
    parse_broker,
    resolve_broker,
)
from strangler.routes import AmazonMQRef, BrokerEndpoint

pytestmark = pytest.mark.usefixtures("aws")

HOST_1 = "b-1234abcd-1.mq.eu-west-1.amazonaws.com"
HOST_2 = "b-1234abcd-2.mq.eu-west-1.amazonaws.com"


def stomp(host: str) -> BrokerEndpoint:
    return BrokerEndpoint(scheme="stomp+ssl", host=host, port=61614)


def test_by_id_gives_both_instances_of_an_active_standby_pair_in_order() -> None:
    broker_id = create_broker("orders")
    set_instance_endpoints(broker_id, amazon_endpoints(HOST_1), amazon_endpoints(HOST_2))
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id, region=REGION))
    assert broker.broker_id == broker_id
    assert broker.name == "orders"
    assert broker.region == REGION
    assert broker.state == "RUNNING"
    assert broker.deployment_mode == "ACTIVE_STANDBY_MULTI_AZ"
    assert broker.engine_type == "ACTIVEMQ"
    assert broker.engine_version == "5.18"
    assert broker.endpoints == (stomp(HOST_1), stomp(HOST_2))
    assert all(endpoint.tls for endpoint in broker.endpoints)
    assert broker.warnings == ()
    ensure_routable(broker)


def test_region_defaults_to_the_sdk_default() -> None:
    broker_id = create_broker("orders")
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    assert broker.region == REGION


def test_stomp_endpoint_is_picked_by_scheme_never_by_position() -> None:
    broker_id = create_broker("orders")
    set_instance_endpoints(
        broker_id,
        # first in the list, and a plain stomp:// decoy that must not be taken
        [f"stomp+ssl://{HOST_1}:61614", f"stomp://{HOST_1}:61613", f"ssl://{HOST_1}:61617"],
        # last, after every other protocol, with a non-default port
        [*amazon_endpoints(HOST_2)[:2], *amazon_endpoints(HOST_2)[3:], f"stomp+ssl://{HOST_2}:1"],
    )
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    assert broker.endpoints == (
        stomp(HOST_1),
        BrokerEndpoint(scheme="stomp+ssl", host=HOST_2, port=1),
    )


def test_moto_default_shared_host_is_deduplicated_and_warned_about() -> None:
    # moto gives both instances the same host: one endpoint, and no real failover.
    broker_id = create_broker("orders")
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    assert broker.endpoints == (stomp("mockmq"),)
    assert any("failover to the standby is not possible" in w for w in broker.warnings)


def test_single_instance_has_one_endpoint_and_a_no_standby_warning() -> None:
    broker_id = create_broker("solo", mode="SINGLE_INSTANCE")
    set_instance_endpoints(broker_id, amazon_endpoints(HOST_1))
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    assert broker.endpoints == (stomp(HOST_1),)
    assert broker.warnings == (
        "deployment mode SINGLE_INSTANCE has no standby: every reboot and maintenance "
        "window makes Amazon MQ unavailable (use ACTIVE_STANDBY_MULTI_AZ)",
    )
    ensure_routable(broker)  # a warning, not a refusal


@pytest.mark.parametrize(
    ("version", "warned"),
    [("5.17.6", True), ("5.15.16", True), ("5.17", True), ("5.18", False), ("5.19", False)],
)
def test_engines_before_5_18_are_warned_as_end_of_support(version: str, warned: bool) -> None:
    broker_id = create_broker("old", mode="SINGLE_INSTANCE", version=version)
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    eos = [w for w in broker.warnings if "end of support" in w]
    assert bool(eos) == warned
    if warned:
        assert eos == [
            f"ActiveMQ {version} is past end of support on Amazon MQ; upgrade to 5.18 or later"
        ]
    ensure_routable(broker)


@pytest.mark.parametrize(
    "state",
    [
        "CREATION_IN_PROGRESS",
        "CREATION_FAILED",
        "DELETION_IN_PROGRESS",
        "REBOOT_IN_PROGRESS",
        "CRITICAL_ACTION_REQUIRED",
        "REPLICA",
    ],
)
def test_a_broker_not_running_is_described_but_refused(state: str) -> None:
    broker_id = create_broker("orders")
    moto_broker(broker_id).state = state
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    assert broker.state == state
    with pytest.raises(AwsError) as caught:
        ensure_routable(broker)
    assert caught.value.reason.startswith(
        f"Amazon MQ broker orders ({broker_id}) in {REGION}: state is {state}, not RUNNING; "
    )


def test_critical_action_codes_are_named_in_the_refusal() -> None:
    broker = parse_broker(
        {
            "BrokerId": "b-1",
            "BrokerName": "orders",
            "BrokerState": "CRITICAL_ACTION_REQUIRED",
            "EngineType": "ActiveMQ",
            "ActionsRequired": [{"ActionRequiredCode": "KMS_KEY_DISABLED"}],
        },
        REGION,
    )
    with pytest.raises(AwsError, match="Amazon MQ needs an operator to act: KMS_KEY_DISABLED"):
        ensure_routable(broker)


def test_rabbitmq_broker_is_refused() -> None:
    broker_id = create_broker("rabbit", mode="SINGLE_INSTANCE", engine="RABBITMQ", version="3.13")
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    assert broker.endpoints == ()  # amqps:// only
    with pytest.raises(AwsError, match="engine is RABBITMQ; strangler speaks STOMP"):
        ensure_routable(broker)


def test_running_broker_without_stomp_endpoint_is_refused() -> None:
    broker_id = create_broker("orders", mode="SINGLE_INSTANCE")
    set_instance_endpoints(broker_id, [f"ssl://{HOST_1}:61617", f"stomp://{HOST_1}:61613"])
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    with pytest.raises(AwsError, match=r"reports no stomp\+ssl:// endpoint"):
        ensure_routable(broker)


def test_unparsable_stomp_endpoint_is_skipped_with_a_warning() -> None:
    broker_id = create_broker("orders")
    set_instance_endpoints(broker_id, [f"stomp+ssl://{HOST_1}"], [f"stomp+ssl://{HOST_2}:61614"])
    broker = resolve_broker(AmazonMQRef(broker_id=broker_id))
    assert broker.endpoints == (stomp(HOST_2),)
    assert f"ignored endpoint 'stomp+ssl://{HOST_1}': not stomp+ssl://host:port" in (
        broker.warnings
    )


def test_unknown_id_is_a_clear_error() -> None:
    with pytest.raises(AwsError) as caught:
        resolve_broker(AmazonMQRef(broker_id="b-0000", region=REGION))
    assert str(caught.value) == f"no Amazon MQ broker with id b-0000 in {REGION}"


def test_by_name_among_several_brokers() -> None:
    ids = {name: create_broker(name) for name in ("alpha", "orders", "zeta")}
    set_instance_endpoints(ids["orders"], amazon_endpoints(HOST_1), amazon_endpoints(HOST_2))
    broker = resolve_broker(AmazonMQRef(broker_name="orders", region=REGION))
    assert broker.broker_id == ids["orders"]
    assert broker.endpoints == (stomp(HOST_1), stomp(HOST_2))


def test_name_is_looked_up_in_the_refs_region_only() -> None:
    create_broker("orders", region="us-east-1")
    with pytest.raises(AwsError, match=f"no Amazon MQ broker named 'orders' in {REGION}"):
        resolve_broker(AmazonMQRef(broker_name="orders", region=REGION))
    broker = resolve_broker(AmazonMQRef(broker_name="orders", region="us-east-1"))
    assert broker.region == "us-east-1"


def test_unknown_name_suggests_a_close_one() -> None:
    create_broker("orders-prod")
    with pytest.raises(AwsError) as caught:
        resolve_broker(AmazonMQRef(broker_name="orders-prd"))
    assert str(caught.value) == (
        f"no Amazon MQ broker named 'orders-prd' in {REGION} (did you mean 'orders-prod'?)"
    )


def test_unknown_name_with_no_brokers_at_all_hints_at_region_or_account() -> None:
    with pytest.raises(AwsError, match="the account has no brokers there; wrong region"):
        resolve_broker(AmazonMQRef(broker_name="orders"))


def test_unknown_name_among_unrelated_brokers_counts_them() -> None:
    create_broker("alpha")
    create_broker("beta")
    with pytest.raises(AwsError, match=r"\(2 brokers there, none with that name\)"):
        resolve_broker(AmazonMQRef(broker_name="orders"))


def test_ambiguous_name_is_refused_naming_every_match() -> None:
    first, second = create_broker("orders"), create_broker("orders")
    with pytest.raises(AwsError) as caught:
        resolve_broker(AmazonMQRef(broker_name="orders"))
    assert str(caught.value) == (
        f"Amazon MQ broker named 'orders' in {REGION}: 2 brokers have that name "
        f"({first}, {second}); use broker_id to say which"
    )


def test_client_for_another_region_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="client is for us-east-1"):
        resolve_broker(AmazonMQRef(broker_id="b-1", region=REGION), client=mq_client("us-east-1"))


# -- pagination: moto answers ListBrokers in one page, so the pages are stubbed ------------


def _summary(name: str, broker_id: str) -> dict[str, Any]:
    return {
        "BrokerId": broker_id,
        "BrokerName": name,
        "BrokerState": "RUNNING",
        "DeploymentMode": "ACTIVE_STANDBY_MULTI_AZ",
        "EngineType": "ACTIVEMQ",
    }


def _described(broker_id: str, name: str) -> dict[str, Any]:
    return {
        "BrokerId": broker_id,
        "BrokerName": name,
        "BrokerState": "RUNNING",
        "DeploymentMode": "ACTIVE_STANDBY_MULTI_AZ",
        "EngineType": "ACTIVEMQ",
        "EngineVersion": "5.19",
        "BrokerInstances": [
            {"Endpoints": amazon_endpoints(HOST_1)},
            {"Endpoints": amazon_endpoints(HOST_2)},
        ],
    }


def test_name_on_a_later_page_is_found_following_next_token() -> None:
    client = boto3.client("mq", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response(
            "list_brokers",
            {
                "BrokerSummaries": [_summary(f"other-{i}", f"b-{i}") for i in range(100)],
                "NextToken": "page-2",
            },
            {"MaxResults": 100},
        )
        stub.add_response(
            "list_brokers",
            {"BrokerSummaries": [_summary("orders", "b-orders")]},
            {"MaxResults": 100, "NextToken": "page-2"},
        )
        stub.add_response(
            "describe_broker", _described("b-orders", "orders"), {"BrokerId": "b-orders"}
        )
        broker = resolve_broker(AmazonMQRef(broker_name="orders", region=REGION), client=client)
        stub.assert_no_pending_responses()
    assert broker.broker_id == "b-orders"
    assert broker.endpoints == (stomp(HOST_1), stomp(HOST_2))


def test_same_name_on_two_pages_is_still_ambiguous() -> None:
    client = boto3.client("mq", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response(
            "list_brokers",
            {"BrokerSummaries": [_summary("orders", "b-1")], "NextToken": "t"},
        )
        stub.add_response("list_brokers", {"BrokerSummaries": [_summary("orders", "b-2")]})
        with pytest.raises(AwsError, match=r"2 brokers have that name \(b-1, b-2\)"):
            resolve_broker(AmazonMQRef(broker_name="orders"), client=client)
