"""infra/terraform, checked offline: it parses, and the settings strangler relies on hold."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import hcl2
import pytest

from strangler.routes import AMAZONMQ, AmazonMQRef, Credentials, parse_routes

MODULE = Path(__file__).resolve().parents[3] / "infra" / "terraform"
TF_FILES = sorted(MODULE.glob("*.tf"))
# Strings without their HCL quotes; blocks as plain lists of dicts.
OPTIONS = hcl2.SerializationOptions(
    strip_string_quotes=True, with_comments=False, explicit_blocks=False
)


def load(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = hcl2.loads(path.read_text(), serialization_options=OPTIONS)
    return parsed


@pytest.fixture(scope="module")
def module() -> dict[str, list[dict[str, Any]]]:
    """Every top-level block kind, across all files."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in TF_FILES:
        for kind, blocks in load(path).items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(module: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in module.get("resource", []):
        found.update(block.get(kind, {}))
    return found


def one(module: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    (only,) = resources(module, kind).values()
    return only


def data_sources(module: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in module.get("data", []):
        found.update(block.get(kind, {}))
    return found


def named(module: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in module.get(kind, []):
        found.update(block)
    return found


def test_the_module_has_the_expected_files() -> None:
    names = {path.name for path in TF_FILES}
    assert {"versions.tf", "variables.tf", "main.tf", "outputs.tf"} <= names
    assert (MODULE / "README.md").is_file()


@pytest.mark.parametrize("path", TF_FILES, ids=[p.name for p in TF_FILES])
def test_every_tf_file_parses(path: Path) -> None:
    assert load(path)


def test_versions_are_pinned(module: dict[str, list[dict[str, Any]]]) -> None:
    (terraform,) = module["terraform"]
    assert terraform["required_version"] == ">= 1.5"
    (providers,) = terraform["required_providers"]
    assert providers["aws"] == {"source": "hashicorp/aws", "version": "~> 5.0"}
    assert providers["random"]["source"] == "hashicorp/random"


def test_variable_defaults(module: dict[str, list[dict[str, Any]]]) -> None:
    variables = named(module, "variable")
    assert variables["engine_version"]["default"] == "5.18"
    assert variables["deployment_mode"]["default"] == "ACTIVE_STANDBY_MULTI_AZ"
    for required in ("broker_name", "vpc_id", "subnet_ids"):
        assert "default" not in variables[required]
    for listed in ("allowed_cidr_blocks", "allowed_security_group_ids", "host_instance_type"):
        assert listed in variables


def _validation_regex(variable: dict[str, Any]) -> re.Pattern[str]:
    (validation,) = variable["validation"]
    match = re.search(r'regex\("(.*)", var\.', validation["condition"])
    assert match is not None
    return re.compile(match.group(1).replace("\\\\", "\\"))


@pytest.mark.parametrize(
    ("version", "allowed"),
    [("5.18", True), ("5.19", True), ("5.17", False), ("5.15", False), ("5.18.4", False)],
)
def test_engine_version_validation_refuses_end_of_support(
    module: dict[str, list[dict[str, Any]]], version: str, allowed: bool
) -> None:
    pattern = _validation_regex(named(module, "variable")["engine_version"])
    assert bool(pattern.fullmatch(version)) == allowed


def test_broker_is_private_activemq_with_logs_encryption_and_maintenance(
    module: dict[str, list[dict[str, Any]]],
) -> None:
    broker = one(module, "aws_mq_broker")
    assert broker["engine_type"] == "ActiveMQ"
    assert broker["engine_version"] == "${var.engine_version}"
    assert broker["deployment_mode"] == "${var.deployment_mode}"
    assert broker["host_instance_type"] == "${var.host_instance_type}"
    assert broker["publicly_accessible"] is False
    assert broker["auto_minor_version_upgrade"] is True
    assert broker["subnet_ids"] == "${var.subnet_ids}"
    assert "aws_security_group.stomp.id" in broker["security_groups"]
    assert broker["logs"] == [{"general": True, "audit": True}]
    assert broker["encryption_options"]
    (window,) = broker["maintenance_window_start_time"]
    assert set(window) == {"day_of_week", "time_of_day", "time_zone"}
    (user,) = broker["user"]
    assert user["password"] == "${random_password.broker.result}"
    assert user["console_access"] is False
    (configuration,) = broker["configuration"]
    assert configuration["id"] == "${aws_mq_configuration.this.id}"


def test_only_stomp_over_tls_is_opened(module: dict[str, list[dict[str, Any]]]) -> None:
    group = one(module, "aws_security_group")
    # Inline rules would bypass the rule resources checked below.
    assert "ingress" not in group and "egress" not in group
    assert resources(module, "aws_security_group_rule") == {}
    assert resources(module, "aws_vpc_security_group_egress_rule") == {}
    rules = resources(module, "aws_vpc_security_group_ingress_rule")
    assert set(rules) == {"stomp_from_cidr", "stomp_from_security_group"}
    for rule in rules.values():
        assert (rule["from_port"], rule["to_port"], rule["ip_protocol"]) == (61614, 61614, "tcp")
        assert rule["security_group_id"] == "${aws_security_group.stomp.id}"
    assert "var.allowed_cidr_blocks" in rules["stomp_from_cidr"]["for_each"]
    assert "var.allowed_security_group_ids" in rules["stomp_from_security_group"]["for_each"]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def test_no_resource_opens_anything_to_the_world(module: dict[str, list[dict[str, Any]]]) -> None:
    texts = _strings(module["resource"])
    assert texts
    assert not [text for text in texts if "0.0.0.0/0" in text or "::/0" in text]


def test_password_is_long_and_free_of_characters_amazon_mq_refuses(
    module: dict[str, list[dict[str, Any]]],
) -> None:
    password = one(module, "random_password")
    assert password["length"] >= 16
    assert password["special"] is True
    assert not set(password["override_special"]) & set(",:=")
    assert not set(password["override_special"]) & set("\\\"'\n")


def test_secret_holds_the_json_strangler_reads(module: dict[str, list[dict[str, Any]]]) -> None:
    version = one(module, "aws_secretsmanager_secret_version")
    assert version["secret_id"] == "${aws_secretsmanager_secret.broker.id}"
    assert re.search(r"jsonencode\(\{\s*username = var\.username", version["secret_string"])
    assert "password = random_password.broker.result" in version["secret_string"]


def test_configuration_forces_persistence(module: dict[str, list[dict[str, Any]]]) -> None:
    configuration = one(module, "aws_mq_configuration")
    assert configuration["engine_type"] == "ActiveMQ"
    assert "${local.broker_plugins}" in configuration["data"]
    (local_values,) = module["locals"]
    assert "forcePersistencyModeBrokerPlugin" in local_values["broker_plugins"]


def test_outputs_exist(module: dict[str, list[dict[str, Any]]]) -> None:
    outputs = named(module, "output")
    assert {
        "broker_id",
        "broker_arn",
        "stomp_endpoints",
        "credentials_secret_arn",
        "strangler_iam_policy_json",
        "routes_yaml",
    } <= set(outputs)
    assert outputs["broker_id"]["value"] == "${aws_mq_broker.this.id}"
    assert outputs["credentials_secret_arn"]["value"] == "${aws_secretsmanager_secret.broker.arn}"
    assert outputs["stomp_endpoints"]["value"] == "${local.stomp_endpoints}"
    (local_values,) = module["locals"]
    stomp = local_values["stomp_endpoints"]
    # Picked by scheme from every instance, never by index.
    assert "aws_mq_broker.this.instances" in stomp
    assert 'startswith(endpoint, "stomp+ssl://")' in stomp
    assert not re.search(r"endpoints\[\d\]", stomp)


def test_iam_policy_grants_exactly_what_strangler_calls(
    module: dict[str, list[dict[str, Any]]],
) -> None:
    document = data_sources(module, "aws_iam_policy_document")["strangler"]
    statements = {s["sid"]: s for s in document["statement"]}
    assert {sid: s["actions"] for sid, s in statements.items()} == {
        "DescribeBroker": ["mq:DescribeBroker"],
        "ListBrokers": ["mq:ListBrokers"],
        "ReadBrokerCredentials": ["secretsmanager:GetSecretValue"],
    }
    assert statements["DescribeBroker"]["resources"] == ["${aws_mq_broker.this.arn}"]
    assert statements["ReadBrokerCredentials"]["resources"] == [
        "${aws_secretsmanager_secret.broker.arn}"
    ]
    assert all(s["effect"] == "Allow" for s in statements.values())
    (dynamic,) = document["dynamic"]
    (kms,) = dynamic["statement"]["content"]
    assert kms["actions"] == ["kms:Decrypt"]
    assert kms["condition"][0]["variable"] == "kms:ViaService"


def test_routes_yaml_output_loads_in_strangler(module: dict[str, list[dict[str, Any]]]) -> None:
    template = named(module, "output")["routes_yaml"]["value"]
    body = template.removeprefix("<<-YAML\n").rsplit("\n", 1)[0]
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:amazonmq/o/strangler-AbCdEf"
    rendered = (
        textwrap.dedent(body)
        .replace("${aws_mq_broker.this.id}", "b-1234abcd-56ef-7890-abcd-1234567890ab")
        .replace("${data.aws_region.current.name}", "eu-west-1")
        .replace("${aws_secretsmanager_secret.broker.arn}", arn)
    )
    text = "brokers:\n  legacy:\n    url: stomp://legacy:61613\n" + textwrap.indent(rendered, "  ")
    config = parse_routes(text, "from-terraform.yaml").brokers[AMAZONMQ]
    assert config.aws == AmazonMQRef(
        broker_id="b-1234abcd-56ef-7890-abcd-1234567890ab", region="eu-west-1"
    )
    assert config.credentials == Credentials(secret_id=arn, region="eu-west-1")


def test_readme_routes_yaml_snippet_loads_in_strangler() -> None:
    readme = (MODULE / "README.md").read_text()
    (snippet,) = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    config = parse_routes(snippet, "README.md").brokers[AMAZONMQ]
    assert config.aws is not None and config.aws.broker_id is not None
    assert config.credentials is not None and config.credentials.secret_id is not None


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fmt_is_clean() -> None:
    # fmt needs no providers and no network, unlike validate.
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", str(MODULE)],
        capture_output=True,
        text=True,
        timeout=60,
        # No CLI config to read, and no version check call to HashiCorp.
        env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_irsa_role_for_the_sidecars_service_account(
    module: dict[str, list[dict[str, Any]]],
) -> None:
    variables = named(module, "variable")
    assert variables["eks_oidc_provider_arn"]["default"] is None  # no EKS: no role
    assert variables["kubernetes_service_account"]["default"] == "strangler"
    role = resources(module, "aws_iam_role")["strangler"]
    assert role["count"] == "${var.eks_oidc_provider_arn == null ? 0 : 1}"
    assert role["assume_role_policy"] == "${data.aws_iam_policy_document.irsa_trust[0].json}"
    policy = resources(module, "aws_iam_role_policy")["strangler"]
    assert policy["policy"] == "${data.aws_iam_policy_document.strangler.json}"
    trust = data_sources(module, "aws_iam_policy_document")["irsa_trust"]
    (statement,) = trust["statement"]
    assert statement["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    conditions = {c["variable"]: c["values"] for c in statement["condition"]}
    assert conditions == {
        "${local.oidc_issuer}:sub": [
            "system:serviceaccount:${var.kubernetes_namespace}:${var.kubernetes_service_account}"
        ],
        "${local.oidc_issuer}:aud": ["sts.amazonaws.com"],
    }
    output = named(module, "output")["strangler_role_arn"]
    assert output["value"] == "${one(aws_iam_role.strangler[*].arn)}"
    account = (MODULE.parents[1] / "deploy" / "kubernetes" / "serviceaccount.yaml").read_text()
    assert "eks.amazonaws.com/role-arn" in account and "strangler_role_arn" in account
