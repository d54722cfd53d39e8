"""``strangler doctor`` against the real brokers: green, and each kind of failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    assert code == 2 and "routes.yaml:1" in checks["routes:fail"]  # nothing else was checked


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


def _legacy_login_check(path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(["doctor", "--routes", str(path), "--json", *argv])
    checks = json.loads(capsys.readouterr().out)
    found = [c for c in checks if c["name"].startswith("legacy login (drain, verify)")]
    assert len(found) == 1, checks
    return code, found[0]


def test_doctor_checks_the_legacy_login_drain_and_verify_use(
    tmp_path: Path,
    legacy: BrokerInfo,
    amazonmq: BrokerInfo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _write(tmp_path, routes_yaml(legacy, amazonmq, ROUTE))
    monkeypatch.delenv("STRANGLER_LEGACY_LOGIN", raising=False)
    monkeypatch.delenv("STRANGLER_LEGACY_PASSCODE", raising=False)
    # None configured, and legacy refuses anonymous logins: drain would fail; the proxy not.
    code, check = _legacy_login_check(path, capsys)
    assert code == 0 and check["status"] == "warn"
    assert "STRANGLER_LEGACY_LOGIN" in check["detail"]
    assert "STRANGLER_LEGACY_PASSCODE" in check["detail"]

    monkeypatch.setenv("STRANGLER_LEGACY_LOGIN", legacy.username)
    monkeypatch.setenv("STRANGLER_LEGACY_PASSCODE", "not-the-passcode")
    code, check = _legacy_login_check(path, capsys)
    assert code == 1 and check["status"] == "fail"
    assert f"login {legacy.username!r} (from STRANGLER_LEGACY_LOGIN) refused" in check["detail"]
    assert "not-the-passcode" not in check["detail"]

    monkeypatch.setenv("STRANGLER_LEGACY_PASSCODE", legacy.password)
    code, check = _legacy_login_check(path, capsys)
    assert code == 0 and check["status"] == "ok"
    assert check["detail"] == f"login accepted as {legacy.username!r} (from STRANGLER_LEGACY_LOGIN)"

    passcode = tmp_path / "passcode"
    passcode.write_text("wrong\n")
    monkeypatch.delenv("STRANGLER_LEGACY_LOGIN")
    code, check = _legacy_login_check(
        path, capsys, "--legacy-login", legacy.username, "--legacy-passcode-file", str(passcode)
    )
    assert code == 1 and "(from --legacy-login) refused" in check["detail"]

    monkeypatch.setenv("STRANGLER_LEGACY_LOGIN", legacy.username)
    monkeypatch.delenv("STRANGLER_LEGACY_PASSCODE")
    code, check = _legacy_login_check(path, capsys)
    assert code == 1 and "has no passcode: set STRANGLER_LEGACY_PASSCODE" in check["detail"]
