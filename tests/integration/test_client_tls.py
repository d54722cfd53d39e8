"""Producers that already speak stomp+ssl keep doing so through the proxy."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from .brokers import BrokerInfo
from .conftest import ProxyFactory
from .harness import connect, drain, unique_queue

pytestmark = pytest.mark.integration


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "proxy.pem", tmp_path / "proxy.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_a_tls_producer_sends_through_a_tls_listener(
    make_proxy: ProxyFactory, legacy: BrokerInfo, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    dest = unique_queue("client-tls")
    proxy = make_proxy("  []\n", tls=context)
    client = connect(proxy.host, proxy.port, legacy.username, legacy.password, ca_file=str(cert))
    assert client.wait_receipts([client.send(dest, "over tls")])
    client.close()
    assert [m.body for m in drain(legacy, dest)] == [b"over tls"]
    assert proxy.facts("proxy_started")[0]["tls"] is True
