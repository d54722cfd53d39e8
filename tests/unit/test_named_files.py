"""``validate`` and ``doctor`` read every file routes.yaml names, as a connect would.

Before: ``validate`` passed a missing ``ca_file`` and ``doctor`` crashed with a traceback.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path

import pytest

from strangler.cli import main
from strangler.doctor import FAIL, OK, run_checks
from strangler.routes import load_routes
from strangler.upstream.named_files import check_named_files

TEST_CA = Path(__file__).parent / "upstream" / "test-ca.pem"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_routes(folder: Path) -> Path:
    """Routes naming a CA, a credentials file and a mapped login's file, on unused ports."""
    path = folder / "routes.yaml"
    path.write_text(
        f"""\
brokers:
  legacy: {{url: "stomp://127.0.0.1:{free_port()}"}}
  amazonmq:
    url: "stomp+ssl://127.0.0.1:{free_port()}"
    ca_file: ca.pem
    credentials: {{file: amq.yaml}}
    client_credentials:
      unmapped: shared
      logins:
        orders: {{file: orders.yaml}}
routes:
  - {{name: moved, match: {{exact: /queue/a}}, mode: cutover, on_failure: legacy}}
"""
    )
    return path


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    shutil.copy(TEST_CA, tmp_path / "ca.pem")
    for name in ("amq.yaml", "orders.yaml"):
        (tmp_path / name).write_text("{username: u, password: p4ssw0rd-long}\n")
    return write_routes(tmp_path)


def validate(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["validate", str(path), *extra])
    return code, capsys.readouterr().err


def test_every_named_file_is_checked_in_file_order(routes: Path) -> None:
    checks = check_named_files(load_routes(routes))
    assert [(c.field, Path(c.path).name, c.problem) for c in checks] == [
        ("brokers.amazonmq.ca_file", "ca.pem", None),
        ("brokers.amazonmq.credentials.file", "amq.yaml", None),
        ("brokers.amazonmq.client_credentials.logins['orders'].file", "orders.yaml", None),
    ]


def test_validate_passes_when_every_file_reads(
    routes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate(routes, capsys) == (0, "")


def test_validate_refuses_a_missing_ca_file(
    routes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (routes.parent / "ca.pem").unlink()
    code, err = validate(routes, capsys)
    ca = routes.parent / "ca.pem"
    assert (code, err) == (
        1,
        f"invalid: {routes}: brokers.amazonmq.ca_file: ca_file {ca}: No such file or directory\n",
    )
    # A pipeline that checks routes.yaml without the files can say so.
    assert validate(routes, capsys, "--skip-files") == (0, "")


def test_validate_refuses_a_ca_file_that_is_not_pem_and_bad_credentials_files(
    routes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (routes.parent / "ca.pem").write_text("hello\n")
    (routes.parent / "amq.yaml").write_text("username: u\npassword: [unclosed\n")
    (routes.parent / "orders.yaml").unlink()
    os.mkfifo(routes.parent / "orders.yaml")  # never waited on
    code, err = validate(routes, capsys)
    assert code == 1
    assert err.splitlines() == [
        f"invalid: {routes}: brokers.amazonmq.ca_file: ca_file {routes.parent / 'ca.pem'}: "
        "no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
        f"invalid: {routes}: brokers.amazonmq.credentials.file: credentials file "
        f"{routes.parent / 'amq.yaml'}: not a valid YAML/JSON mapping (line 3)",
        f"invalid: {routes}: brokers.amazonmq.client_credentials.logins['orders'].file: "
        f"credentials file {routes.parent / 'orders.yaml'}: not a regular file (a FIFO)",
    ]
    assert "[unclosed" not in err  # the secret file's content is never quoted


def test_doctor_fails_a_missing_ca_file_and_credentials_file_without_a_traceback(
    routes: Path,
) -> None:
    (routes.parent / "ca.pem").unlink()
    (routes.parent / "amq.yaml").unlink()
    checks = {(c.name, c.status): c.detail for c in asyncio.run(run_checks(str(routes)))}
    ca, amq = routes.parent / "ca.pem", routes.parent / "amq.yaml"
    assert checks[("brokers.amazonmq.ca_file", FAIL)] == (
        f"ca_file {ca}: No such file or directory"
    )
    assert checks[("brokers.amazonmq.credentials.file", FAIL)] == (
        f"credentials file {amq}: No such file or directory"
    )
    assert checks[("brokers.amazonmq.client_credentials.logins['orders'].file", OK)].endswith(
        "orders.yaml: readable, parses"
    )
    # The mapped login's connection attempt names the CA problem instead of crashing.
    login_checks = [d for (name, s), d in checks.items() if name.startswith("amazonmq login")]
    assert any(f"ca_file {ca}: No such file or directory" in d for d in login_checks)


def test_doctor_command_exits_1_on_a_missing_ca_file(
    routes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (routes.parent / "ca.pem").unlink()
    assert main(["doctor", "--routes", str(routes)]) == 1
    out = capsys.readouterr()
    assert "FAIL  brokers.amazonmq.ca_file: ca_file" in out.out and "Traceback" not in out.err
