"""botocore failures become one operator-readable AwsError naming what to fix."""

from __future__ import annotations

import re

import boto3
import pytest
from aws_fakes import REGION
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.stub import Stubber

from strangler.aws import AwsError, mq_client, read_secret_credentials, resolve_broker
from strangler.aws.errors import aws_call
from strangler.routes import AmazonMQRef


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDeniedException", 403), ("ForbiddenException", 403), ("AccessDenied", 403)],
)
def test_describe_broker_access_denied_names_the_iam_action(code: str, status: int) -> None:
    client = boto3.client("mq", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_broker",
            service_error_code=code,
            service_message="User: arn:aws:sts::123456789012:assumed-role/proxy/i-1 is not "
            "authorized to perform: mq:DescribeBroker",
            http_status_code=status,
        )
        with pytest.raises(AwsError) as caught:
            resolve_broker(AmazonMQRef(broker_id="b-1"), client=client)
    reason = caught.value.reason
    assert reason.startswith(
        f"Amazon MQ broker b-1 in {REGION}: access denied; the proxy's AWS identity needs "
        "IAM permission mq:DescribeBroker (AWS said: User: arn:aws:sts::"
    )
    assert isinstance(caught.value.__cause__, ClientError)  # kept for debugging


def test_list_brokers_access_denied_names_list_brokers() -> None:
    client = boto3.client("mq", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("list_brokers", "AccessDeniedException", http_status_code=403)
        with pytest.raises(AwsError, match="needs IAM permission mq:ListBrokers"):
            resolve_broker(AmazonMQRef(broker_name="orders"), client=client)


def test_get_secret_value_access_denied_names_get_secret_value() -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", "AccessDeniedException", http_status_code=400)
        with pytest.raises(AwsError) as caught:
            read_secret_credentials("prod/strangler", client=client)
    assert caught.value.reason == (
        "secret prod/strangler: access denied; the proxy's AWS identity needs "
        "IAM permission secretsmanager:GetSecretValue"
    )


def test_kms_decryption_failure_names_kms_decrypt() -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", "DecryptionFailure", http_status_code=400)
        with pytest.raises(AwsError, match="needs kms:Decrypt on the secret's KMS key"):
            read_secret_credentials("prod/strangler", client=client)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("UnrecognizedClientException", "AWS rejected the proxy's credentials"),
        ("ExpiredTokenException", "whether the session token expired"),
        ("TooManyRequestsException", "throttled by AWS (TooManyRequestsException)"),
        ("InternalServerErrorException", "mq:DescribeBroker failed: InternalServerErrorException"),
        ("BadRequestException", "mq:DescribeBroker failed: BadRequestException"),
    ],
)
def test_other_client_errors_are_named(code: str, expected: str) -> None:
    client = boto3.client("mq", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("describe_broker", code, http_status_code=400)
        with pytest.raises(AwsError, match=re.escape(expected)):
            resolve_broker(AmazonMQRef(broker_id="b-1"), client=client)


@pytest.mark.usefixtures("no_aws_credentials")
def test_missing_credentials_are_an_operator_readable_error() -> None:
    # Real client, no credentials anywhere: botocore refuses to sign, nothing is sent.
    with pytest.raises(AwsError) as caught:
        resolve_broker(AmazonMQRef(broker_id="b-1"))
    assert caught.value.reason.startswith(
        f"Amazon MQ broker b-1 in {REGION}: no AWS credentials found; give the proxy an "
        "instance or task role, or set AWS_PROFILE"
    )


def test_missing_region_is_an_operator_readable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(AwsError) as caught:
        mq_client()
    assert caught.value.reason == (
        "Amazon MQ in the default AWS region: no AWS region; set 'region:' in routes.yaml, "
        "or AWS_REGION / AWS_DEFAULT_REGION for the proxy"
    )
    with pytest.raises(AwsError, match="no AWS region"):
        read_secret_credentials("prod/strangler")


def test_unreachable_endpoint_is_an_operator_readable_error() -> None:
    # A closed local port: refused at once, no traffic leaves the machine.
    client = boto3.client(
        "mq",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(AwsError) as caught:
        resolve_broker(AmazonMQRef(broker_id="b-1"), client=client)
    assert caught.value.reason == (
        f"Amazon MQ broker b-1 in {REGION}: cannot reach http://127.0.0.1:9/v1/brokers/b-1; "
        "check the proxy's network path to AWS (VPC endpoint, NAT gateway, HTTPS proxy)"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoCredentialsError(), "thing: no AWS credentials found"),
        (
            PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
            "thing: incomplete AWS credentials: Partial credentials found in env, "
            "missing: AWS_SECRET_ACCESS_KEY",
        ),
        (
            EndpointConnectionError(endpoint_url="https://mq.eu-west-1.amazonaws.com/"),
            "thing: cannot reach https://mq.eu-west-1.amazonaws.com/; check",
        ),
        (
            ConnectTimeoutError(endpoint_url="https://mq.eu-west-1.amazonaws.com/"),
            "thing: timed out talking to https://mq.eu-west-1.amazonaws.com/",
        ),
        (
            ProfileNotFound(profile="prod"),
            "thing: mq:DescribeBroker failed: The config profile (prod) could not be found",
        ),
    ],
    ids=["no-credentials", "partial", "endpoint", "timeout", "profile"],
)
def test_botocore_errors_map_to_aws_error(error: Exception, expected: str) -> None:
    with pytest.raises(AwsError) as caught, aws_call("mq:DescribeBroker", "thing"):
        raise error
    assert caught.value.reason.startswith(expected)
    assert str(caught.value) == caught.value.reason


def test_non_aws_exceptions_pass_through_unchanged() -> None:
    with pytest.raises(KeyError), aws_call("mq:DescribeBroker", "thing"):
        raise KeyError("bug")
