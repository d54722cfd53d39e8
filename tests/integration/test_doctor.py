"""``strangler doctor`` against the real brokers: green, and each kind of failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strangler.cli import main

from .brokers import BrokerInfo, free_port
from .harness import routes_yaml

pytestmark = pytest.mark.integration

ROUTE = "  - {name: moved, match: {exact: /queue/doctor}, mode: cutover, on_failure: legacy}\n"


def _doctor(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    code = main(["doctor", "--routes", str(path), "--json"])
    checks = json.loads(capsys.readouterr().out)
    return code, {c["name"].split(" ")[0] + ":" + c["status"]: c["detail"] for c in checks}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


def test_doctor_is_green_against_the_local_brokers(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks = _doctor(_write(tmp_path, routes_yaml(legacy, amazonmq, ROUTE)), capsys)
    assert code == 0
    assert "login accepted" in checks["amazonmq:ok"]
    assert "STOMP answers" in checks["legacy:ok"]
    # The stand-in is ActiveMQ 5.17, which Amazon MQ no longer supports.
    assert "end of support" in checks["amazonmq:warn"]


def test_doctor_fails_on_an_invalid_routes_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks = _doctor(_write(tmp_path, "brokers: {legacy: {url: ftp://x:1}}\n"), capsys)
    assert code == 1 and "routes.yaml:1" in checks["routes:fail"]


def test_doctor_fails_when_legacy_is_unreachable(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    text = routes_yaml(legacy, amazonmq, ROUTE).replace(f":{legacy.port}", f":{free_port()}")
    code, checks = _doctor(_write(tmp_path, text), capsys)
    assert code == 1 and "connection refused" in checks["legacy:fail"]


def test_doctor_fails_when_amazonmq_is_unreachable(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    text = routes_yaml(legacy, amazonmq, ROUTE, amazonmq_port=free_port())
    code, checks = _doctor(_write(tmp_path, text), capsys)
    assert code == 1 and "connection refused" in checks["amazonmq:fail"]


def test_doctor_fails_when_the_certificate_is_not_trusted(
    tmp_path: Path, legacy: BrokerInfo, amazonmq: BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    text = routes_yaml(legacy, amazonmq, ROUTE).replace(f"    ca_file: {amazonmq.ca_file}\n", "")
    code, checks = _doctor(_write(tmp_path, text), capsys)
    assert code == 1 and "certificate verification failed" in checks["amazonmq:fail"]


def test_doctor_fails_when_amazonmq_refuses_the_login(
    tmp_path: Path,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_AMQ_PASSWORD", "not-the-password")
    code, checks = _doctor(_write(tmp_path, routes_yaml(legacy, amazonmq, ROUTE)), capsys)
    assert code == 1 and "login refused" in checks["amazonmq:fail"]
    assert "not-the-password" not in json.dumps(checks)


def test_doctor_fails_when_credentials_are_missing(
    tmp_path: Path,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRANGLER_TEST_AMQ_PASSWORD")
    code, checks = _doctor(_write(tmp_path, routes_yaml(legacy, amazonmq, ROUTE)), capsys)
    assert code == 1 and "STRANGLER_TEST_AMQ_PASSWORD" in checks["amazonmq:fail"]
