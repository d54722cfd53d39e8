"""The command line's shared conventions: one exit-code table, ``--routes`` everywhere,
``validate --strict``, clear errors for TLS files and for the missing capture extra.

Everything here fails before any network: the commands are refused at start-up.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from strangler.cli import build_parser, main
from strangler.conventions import ExitCode

ROOT = Path(__file__).parents[2]
VALID = (
    "brokers:\n"
    "  legacy: {url: 'stomp://127.0.0.1:1'}\n"
    "routes:\n"
    "  - {name: orders, match: {exact: /queue/orders}, mode: legacy}\n"
)
WARNED = VALID.replace("/queue/orders", "orders")
# Nothing answers there: a pass that needs Prometheus holds (a file without plans needs none).
ROLLOUT = ["rollout", "--prometheus", "http://127.0.0.1:1", "--query-timeout", "2s"]


def routes(tmp_path: Path, text: str = VALID, name: str = "routes.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- exit codes -----------------------------------------------------------------------------


def test_the_documented_exit_code_table_is_the_code() -> None:
    text = (ROOT / "docs" / "commands.md").read_text()
    table = text[text.index("## Exit codes") :]
    documented = {int(code) for code in re.findall(r"^\| `(\d+)` \|", table, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["validate", "{valid}"], ExitCode.OK),
        (["validate", "{invalid}"], ExitCode.FAILED),
        (["validate", "{missing}"], ExitCode.CONFIG),
        (["validate", "--strict", "{warned}"], ExitCode.FAILED),
        (["validate", "{warned}"], ExitCode.OK),
        (["validate", "--no-such-flag", "{valid}"], ExitCode.CONFIG),
        (["run", "--routes", "{invalid}"], ExitCode.CONFIG),
        (["run", "--routes", "{missing}"], ExitCode.CONFIG),
        (["doctor", "--routes", "{invalid}"], ExitCode.CONFIG),
        (["drain", "/queue/orders", "--routes", "{invalid}"], ExitCode.CONFIG),
        (["drain", "/queue/orders", "--routes", "{valid}"], ExitCode.CONFIG),  # not a cutover
        (["verify", "/queue/orders", "--routes", "{valid}"], ExitCode.CONFIG),  # not a mirror
        (["replay", "{facts}", "--routes", "{invalid}", "--dry-run"], ExitCode.CONFIG),
        (["replay", "{missing}", "--routes", "{valid}", "--dry-run"], ExitCode.CONFIG),
        (["plan", "{valid}", "{valid}"], ExitCode.OK),
        (["plan", "{valid}", "{warned}"], ExitCode.CHANGES),
        (["plan", "{valid}", "{invalid}"], ExitCode.FAILED),
        (["plan", "{valid}", "{missing}"], ExitCode.CONFIG),
        (["status", "--admin", "127.0.0.1:1"], ExitCode.FAILED),
        # rollout: a pass over a file without plans decides nothing; a file it cannot read
        # or that is invalid is refused before any pass, looping or not
        ([*ROLLOUT, "--routes", "{valid}", "--once"], ExitCode.OK),
        ([*ROLLOUT, "--routes", "{invalid}", "--once"], ExitCode.CONFIG),
        ([*ROLLOUT, "--routes", "{invalid}"], ExitCode.CONFIG),
        ([*ROLLOUT, "--routes", "{missing}", "--once"], ExitCode.CONFIG),
        ([*ROLLOUT, "--routes", "{missing}"], ExitCode.CONFIG),
        ([*ROLLOUT, "--routes", "{valid}", "--once", "--git"], ExitCode.CONFIG),  # no git here
        (["rollout", "--routes", "{valid}", "--once"], ExitCode.CONFIG),  # no --prometheus
        # audit reads facts, not routes: unreadable input is 2, a broken promise 1
        (["audit", "{facts}"], ExitCode.OK),
        (["audit", "{facts}", "--trace", "no-such-id"], ExitCode.FAILED),
        (["audit", "{missing}"], ExitCode.CONFIG),
        (["audit", "{not_facts}"], ExitCode.CONFIG),
        (["audit"], ExitCode.CONFIG),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_every_command_follows_the_exit_code_table(
    argv: list[str], code: ExitCode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "valid": routes(tmp_path),
        "warned": routes(tmp_path, WARNED, "warned.yaml"),
        "invalid": routes(tmp_path, VALID.replace("mode: legacy", "mode: legasy"), "bad.yaml"),
        "missing": str(tmp_path / "missing.yaml"),
        "facts": routes(tmp_path, '{"event": "proxy_started"}\n', "facts.jsonl"),
        "not_facts": routes(tmp_path, '{"ts": "2025-03-01T22:00:00Z"}\n', "other.jsonl"),
    }
    args = [a.format(**files) for a in argv]
    try:
        got = main(args)
    except SystemExit as exc:  # argparse's own usage errors
        got = int(exc.code or 0)
    assert got == code, capsys.readouterr()


# -- --routes, one way everywhere ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["validate"],
        ["doctor"],
        ["replay", "capture.flows"],
        ["drain", "/queue/x"],
        ["verify", "/queue/x"],
        ["rollout", "--prometheus", "http://prometheus:9090"],
    ],
)
def test_every_command_reading_one_routes_file_takes_routes_defaulting_to_routes_yaml(
    argv: list[str],
) -> None:
    parser = build_parser()
    assert parser.parse_args([*argv, "--routes", "r.yaml"]).routes == "r.yaml"
    default = parser.parse_args(argv)
    assert (default.routes or "routes.yaml") == "routes.yaml"


def test_validate_takes_the_file_either_way_and_refuses_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = routes(tmp_path)
    assert main(["validate", path]) == 0
    assert main(["validate", "--routes", path]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0  # ./routes.yaml
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        main(["validate", path, "--routes", routes(tmp_path, VALID, "other.yaml")])
    assert caught.value.code == 2
    assert "two routes files given" in capsys.readouterr().err


def test_validate_strict_turns_warnings_into_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = routes(tmp_path, WARNED)
    assert main(["validate", path]) == 0
    assert "warning:" in capsys.readouterr().out
    assert main(["validate", "--strict", path]) == 1
    assert "1 warning(s), and --strict" in capsys.readouterr().err


# -- TLS files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    made: dict[str, str] = {}
    for name in ("a", "b"):
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
        subprocess.run(
            [*command.split(), "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
        made[f"cert_{name}"], made[f"key_{name}"] = str(cert), str(key)
    both = folder / "both"
    both.write_bytes(Path(made["cert_a"]).read_bytes() + Path(made["key_a"]).read_bytes())
    made["both"] = str(both)
    made["missing"] = str(folder / "missing.pem")
    return made


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--tls-cert", "cert_a"],
            "--tls-cert {cert_a} holds no private key: give its key file with --tls-key FILE",
        ),
        (["--tls-key", "key_a"], "--tls-key needs --tls-cert"),
        (
            ["--tls-cert", "cert_a", "--tls-key", "key_b"],
            "--tls-key {key_b} is not the private key of --tls-cert {cert_a}",
        ),
        (["--tls-cert", "missing", "--tls-key", "key_a"], "--tls-cert {missing}: No such file"),
        (["--tls-cert", "key_a", "--tls-key", "key_a"], "--tls-cert {key_a}: no PEM certificate"),
        (["--tls-cert", "cert_a", "--tls-key", "cert_a"], "--tls-key {cert_a}: no PEM private key"),
    ],
)
def test_tls_flags_say_what_is_missing_or_wrong(
    flags: list[str],
    message: str,
    pems: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [pems.get(flag, flag) for flag in flags]
    code = main(["run", "--routes", routes(tmp_path), "--admin", "off", *argv])
    assert code == ExitCode.CONFIG
    assert message.format(**pems) in capsys.readouterr().err


def test_a_pem_holding_certificate_and_key_needs_no_tls_key(pems: dict[str, str]) -> None:
    from strangler.cli import _server_tls

    assert _server_tls(pems["both"], None) is not None


# -- the capture extra ---------------------------------------------------------------------------


def test_without_mitmproxy_capture_and_flow_files_say_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flows = tmp_path / "capture.flows"
    flows.write_bytes(b"")
    facts = routes(tmp_path, "", "facts.jsonl")
    path = routes(tmp_path)
    monkeypatch.setitem(sys.modules, "mitmproxy", None)  # what `import` does when it is absent

    code = main(["run", "--routes", path, "--admin", "off", "--capture", str(tmp_path / "c")])
    assert code == ExitCode.CONFIG
    assert (
        "--capture (it writes mitmproxy's flow format) needs mitmproxy, which is not "
        "installed: pip install 'strangler[capture]'" in capsys.readouterr().err
    )
    assert main(["replay", str(flows), "--routes", path, "--dry-run"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "reading a mitmproxy flow file needs mitmproxy" in err and "strangler[capture]" in err
    # Facts files need no mitmproxy.
    Path(facts).write_text(
        '{"event": "message_routed", "trace_id": "t1", "destination": "/queue/orders"}\n'
    )
    assert main(["replay", facts, "--routes", path, "--dry-run"]) == ExitCode.OK


def test_the_cli_starts_without_importing_mitmproxy() -> None:
    code = (
        "import sys; from strangler.cli import build_parser; build_parser(); "
        "sys.exit('mitmproxy' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_run_takes_the_confirmation_deadline_and_the_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """#14.5/#14.6: the deadline and the proxy-wide limits are the operator's to set."""
    import strangler.cli as cli

    served: list[Any] = []

    def serve(coroutine: Coroutine[Any, Any, None]) -> None:  # the proxy, not started
        served.append(inspect.getcoroutinelocals(coroutine)["ctx"].settings)
        coroutine.close()

    monkeypatch.setattr(cli, "_event_loop_run", serve)
    common = ["run", "--routes", routes(tmp_path), "--facts", str(tmp_path / "facts.jsonl")]
    assert main(common) == ExitCode.OK
    flags = ["--confirm-timeout", "0.5", "--max-connections", "7", "--max-buffered", "65536"]
    assert main([*common, *flags, "--amazonmq-batch-ms", "0"]) == ExitCode.OK
    default, chosen = served
    assert (default.confirm_timeout, default.max_connections) == (5.0, 4096)
    assert default.max_buffered_bytes == 256 * 1024 * 1024
    assert default.amazonmq_batch_delay == 0.002
    assert chosen.confirm_timeout == 0.5
    assert (chosen.max_connections, chosen.max_buffered_bytes) == (7, 65536)
    assert chosen.amazonmq_batch_delay == 0
    wrongs = (
        ["--confirm-timeout", "0"],
        ["--max-connections", "0"],
        ["--amazonmq-batch-ms", "-1"],
        ["--amazonmq-batch-ms", "nan"],
        ["--amazonmq-batch-ms", "1001"],
    )
    for wrong in wrongs:
        with pytest.raises(SystemExit) as exited:
            main([*common, *wrong])
        assert exited.value.code == ExitCode.CONFIG
    assert "must be" in capsys.readouterr().err
