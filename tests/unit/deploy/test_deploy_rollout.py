"""Offline checks of deploy/kubernetes/rollout: the `strangler rollout` controller's
manifests (no cluster). Its arguments go through strangler's own parser, the routes file
it steps is this repository's, and it runs as the sidecar does: non-root, read-only root
filesystem, no capabilities, limits, no Kubernetes API token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from strangler.cli import build_parser
from strangler.routes import load_routes

ROOT = Path(__file__).resolve().parents[3]
ROLLOUT = ROOT / "deploy" / "kubernetes" / "rollout"
APP = {"app.kubernetes.io/name": "strangler-rollout"}


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(ROLLOUT.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return found


def one(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents() if doc["kind"] == kind]
    return found


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def containers() -> list[dict[str, Any]]:
    spec = pod()
    return [*spec["initContainers"], *spec["containers"]]


def controller() -> dict[str, Any]:
    (found,) = pod()["containers"]
    assert found["name"] == "rollout"
    return dict(found)


def dockerfile_uid() -> str:
    users: list[str] = re.findall(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    return users[-1]


def test_the_manifests_are_a_kustomization_of_their_own() -> None:
    kinds = sorted(doc["kind"] for doc in documents())
    assert kinds == ["Deployment", "Kustomization", "NetworkPolicy", "ServiceAccount"]
    kustomization = one("Kustomization")
    for resource in kustomization["resources"]:
        assert (ROLLOUT / resource).is_file(), resource
    # The sidecars' kustomization does not start the controller: it runs once per fleet.
    sidecars = yaml.safe_load((ROLLOUT.parent / "kustomization.yaml").read_text())
    assert not any("rollout" in resource for resource in sidecars["resources"])
    for doc in documents():
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"] == "strangler-rollout"


def test_one_controller_running_the_loop_with_git() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["selector"]["matchLabels"] == APP
    assert APP.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    args = controller()["args"]
    parsed = build_parser().parse_args(args)  # every flag is one strangler knows
    assert parsed.command == "rollout" and parsed.git and not parsed.once and not parsed.dry_run
    assert parsed.prometheus.startswith("http")
    assert parsed.interval == 30.0


def test_the_commented_verify_gate_logins_are_flags_rollout_takes() -> None:
    text = (ROLLOUT / "deployment.yaml").read_text()
    commented = re.findall(r"^ +# - (\S+)$", text, re.M)
    assert commented[0] == "--legacy-login" and "--legacy-passcode-file" in commented
    parsed = build_parser().parse_args([*controller()["args"], *commented])
    assert parsed.legacy_login == "strangler-verify"
    assert parsed.legacy_passcode_file == "/etc/strangler-legacy/passcode"


def test_the_routes_file_is_in_the_working_copy_the_init_container_clones() -> None:
    (clone,) = pod()["initContainers"]
    command = clone["command"]
    assert command[:2] == ["git", "clone"] and "--single-branch" in command
    working_copy = command[-1]
    env = {e["name"]: e["value"] for e in clone["env"]}
    assert "$(GIT_REPOSITORY)" in command and "$(GIT_BRANCH)" in command
    assert env["GIT_REPOSITORY"].startswith("https://") and env["GIT_BRANCH"]
    routes = Path(build_parser().parse_args(controller()["args"]).routes)
    relative = routes.relative_to(working_copy)
    # The example path is this repository's: the file the sidecars' ConfigMap is made of.
    assert relative == Path("deploy/kubernetes/routes.yaml")
    load_routes(ROOT / relative)  # valid, as the controller requires at start
    # Both containers see the same working copy, in an emptyDir: nothing outlives the pod.
    volumes = {v["name"]: v for v in pod()["volumes"]}
    for each in (clone, controller()):
        mounts = {m["mountPath"]: m["name"] for m in each["volumeMounts"]}
        work = next(name for path, name in mounts.items() if working_copy.startswith(path))
        assert "emptyDir" in volumes[work]


def test_git_credentials_come_from_a_secret_file_never_the_environment() -> None:
    volumes = {v["name"]: v for v in pod()["volumes"]}
    secrets = {name: v["secret"] for name, v in volumes.items() if "secret" in v}
    ((name, secret),) = secrets.items()
    assert secret["defaultMode"] == 0o440  # the group (fsGroup) reads it, nobody else
    assert pod()["securityContext"]["fsGroup"] == int(dockerfile_uid())
    for each in containers():
        env = each.get("env", [])
        assert all("valueFrom" not in e for e in env), each["name"]
        config = {e["name"]: e["value"] for e in env}
        assert config["GIT_CONFIG_KEY_0"] == "credential.helper"
        (mount,) = [m for m in each["volumeMounts"] if m["name"] == name]
        assert mount["readOnly"] is True
        helper_file = config["GIT_CONFIG_VALUE_0"].removeprefix("store --file=")
        assert Path(helper_file).parent == Path(mount["mountPath"])
        assert config["GIT_TERMINAL_PROMPT"] == "0"  # never waits for a password


@pytest.mark.parametrize("index", [0, 1], ids=["clone", "rollout"])
def test_each_container_is_non_root_read_only_with_limits(index: int) -> None:
    each = containers()[index]
    context = each["securityContext"]
    assert context["runAsNonRoot"] is True
    assert str(context["runAsUser"]) == dockerfile_uid()
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = each["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    image = each["image"]
    assert image == controller()["image"] and image.endswith("-git")  # the image with git
    assert each["imagePullPolicy"] == "IfNotPresent"


def test_the_pod_has_its_own_account_without_an_api_token() -> None:
    spec = pod()
    account = one("ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    assert account["automountServiceAccountToken"] is False
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True and str(context["runAsUser"]) == dockerfile_uid()
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_network_policy_admits_nothing() -> None:
    policy = one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == APP
    assert policy["policyTypes"] == ["Ingress"] and policy["ingress"] == []
    assert not any(c.get("ports") for c in containers())  # nothing to admit


def test_the_image_is_pinned_and_built_with_git() -> None:
    (image,) = one("Kustomization")["images"]
    assert image["name"] == controller()["image"].rpartition(":")[0]
    assert re.fullmatch(r"\d+\.\d+\.\d+-git", image["newTag"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG GIT=false" in dockerfile  # the sidecar's image stays without git
    assert re.search(
        r'if \[ "\$\{GIT\}" = true \]; then \\\n.*apt-get install[^\n]* git ', dockerfile
    )


def test_every_skipped_checkov_finding_has_a_reason() -> None:
    for doc in documents():
        annotations = doc.get("metadata", {}).get("annotations", {})
        for key, value in annotations.items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check) and len(reason) > 20, value


def test_the_docs_point_to_the_manifests() -> None:
    assert "deploy/kubernetes/rollout" in (ROOT / "docs" / "rollout.md").read_text()
    assert "rollout/" in (ROLLOUT.parent / "README.md").read_text()
