"""A bad ca_file is the project's own error, with the file and a reason; never OSError/SSLError."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from pathlib import Path

import pytest

from strangler.routes import BrokerEndpoint
from strangler.upstream import BrokerUnavailable, open_stream
from strangler.upstream.errors import CaFileError
from strangler.upstream.transport import client_tls_context

TEST_CA = Path(__file__).with_name("test-ca.pem")


def ca_refusal(path: Path) -> str:
    with pytest.raises(CaFileError) as caught:
        client_tls_context(str(path))
    assert caught.value.path == str(path)
    assert str(caught.value) == f"ca_file {path}: {caught.value.reason}"
    return caught.value.reason


def test_a_pem_ca_file_gives_a_verifying_context() -> None:
    context = client_tls_context(str(TEST_CA))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "strangler test CA"),),)
    ]


def test_a_missing_ca_file(tmp_path: Path) -> None:
    assert ca_refusal(tmp_path / "missing.pem") == "No such file or directory"


def test_a_ca_file_that_is_a_directory_or_a_fifo(tmp_path: Path) -> None:
    assert ca_refusal(tmp_path) == "not a regular file (a directory)"
    os.mkfifo(tmp_path / "fifo")
    assert ca_refusal(tmp_path / "fifo") == "not a regular file (a FIFO)"


def test_a_ca_file_without_a_certificate(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    assert "no PEM certificate" in ca_refusal(path)
    path.write_text("-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n")
    assert ca_refusal(path).startswith("not a valid PEM certificate")
    path.write_bytes(b"\x30\x82\x01\x90\xff")  # DER
    assert ca_refusal(path).startswith("not a PEM file")


def test_open_stream_reports_a_bad_ca_file_as_the_broker_unavailable(tmp_path: Path) -> None:
    endpoint = BrokerEndpoint("stomp+ssl", "127.0.0.1", 1)
    missing = tmp_path / "missing.pem"
    with pytest.raises(BrokerUnavailable) as caught:
        asyncio.run(open_stream("amazonmq", endpoint, str(missing), timeout=1.0))
    assert caught.value.reason == (
        f"stomp+ssl://127.0.0.1:1: ca_file {missing}: No such file or directory"
    )


def test_replay_and_drain_connections_report_a_bad_ca_file_the_same_way(tmp_path: Path) -> None:
    from strangler.upstream.client import BrokerClient, PublishError

    missing = tmp_path / "missing.pem"
    with pytest.raises(PublishError) as caught:
        BrokerClient("amazonmq", [BrokerEndpoint("stomp+ssl", "127.0.0.1", 1)], str(missing), None)
    assert str(caught.value) == f"amazonmq: ca_file {missing}: No such file or directory"


def test_the_blocking_client_names_a_refused_connection_as_the_proxy_does() -> None:
    """One error map (``describe_os_error``) for the proxy's links and for replay, drain
    and verify: an operator reads "connection refused", not an errno."""
    from strangler.upstream.client import BrokerClient, PublishError

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    endpoint = BrokerEndpoint("stomp", "127.0.0.1", port)
    with pytest.raises(BrokerUnavailable) as proxy_side:
        asyncio.run(open_stream("legacy", endpoint, None, timeout=1.0))
    with pytest.raises(PublishError) as client_side:
        BrokerClient("legacy", [endpoint], None, None)
    assert proxy_side.value.reason.endswith(": connection refused")
    assert str(client_side.value) == f"legacy: cannot connect: {endpoint}: connection refused"
