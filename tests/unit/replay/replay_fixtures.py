"""Building blocks for the replay tests: STOMP bytes, captures, plain mitmproxy flows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mitmproxy import io, tcp
from mitmproxy.test import tflow

from strangler.replay.capture import CaptureStats, FlowCapture
from strangler.stomp import encode_parts

Chunk = tuple[bool, bytes]  # (from_client, data)

ROUTES_HEAD = (
    "brokers:\n"
    "  legacy: {url: stomp://127.0.0.1:61611}\n"
    "  amazonmq: {url: stomp+ssl://127.0.0.1:61614}\n"
)


def write_routes(path: Path, routes: str, extra: str = "") -> str:
    path.write_text(ROUTES_HEAD + extra + "routes:\n" + routes)
    return str(path)


def connect(version: str = "1.2", login: str = "producer", passcode: str = "secret") -> bytes:
    headers = (("accept-version", version), ("login", login), ("passcode", passcode))
    return encode_parts("CONNECT", headers, b"", version)


def connected(version: str = "1.2") -> bytes:
    return encode_parts("CONNECTED", (("version", version),), b"", version)


def send(
    destination: str,
    body: bytes = b"hello",
    version: str = "1.2",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    return encode_parts("SEND", (("destination", destination), *headers), body, version)


def frame(command: str, version: str = "1.2", **headers: str) -> bytes:
    return encode_parts(command, tuple(headers.items()), b"", version)


def producer(sends: Sequence[bytes], version: str = "1.2") -> list[Chunk]:
    """A whole producer session: CONNECT, CONNECTED, the SENDs, DISCONNECT."""
    return [
        (True, connect(version)),
        (False, connected(version)),
        *[(True, data) for data in sends],
        (True, frame("DISCONNECT", version)),
    ]


def capture(path: Path, sessions: Sequence[Sequence[Chunk]], **options: Any) -> CaptureStats:
    """Feed sessions through a FlowCapture as the proxy would, one after the other."""
    tap = FlowCapture(path, server=("127.0.0.1", 61611), **options)
    for number, chunks in enumerate(sessions):
        session = f"s{number}"
        tap.opened(session, f"127.0.0.1:{40000 + number}")
        for from_client, data in chunks:
            (tap.from_client if from_client else tap.to_client)(session, data)
        tap.closed(session)
    return tap.close()


def read_flows(path: Path) -> list[Any]:
    with open(path, "rb") as f:
        return list(io.FlowReader(f).stream())


def mitmdump_file(path: Path, sessions: Sequence[Sequence[Chunk]]) -> None:
    """Plain TCP flows, as ``mitmdump -w`` writes them (no strangler metadata)."""
    with open(path, "wb") as f:
        writer = io.FlowWriter(f)  # type: ignore[no-untyped-call]  # untyped upstream
        for chunks in sessions:
            flow = tflow.ttcpflow(
                messages=[
                    tcp.TCPMessage(fc, data, 1_700_000_000.0)  # type: ignore[no-untyped-call]
                    for fc, data in chunks
                ]
            )
            writer.add(flow)


def facts_file(path: Path, routed: Sequence[tuple[str, str]]) -> str:
    """A facts file with one message_routed per (destination, trace id), among other facts."""
    lines: list[dict[str, object]] = [{"event": "proxy_started", "ts": "2026-01-01T00:00:00+00:00"}]
    for destination, trace in routed:
        lines.append(
            {
                "event": "message_routed",
                "ts": "2026-01-01T00:00:01+00:00",
                "session": "s1",
                "trace_id": trace,
                "destination": destination,
                "rule": "whatever",
                "targets": ["legacy"],
            }
        )
        lines.append({"event": "message_confirmed", "trace_id": trace, "broker": "legacy"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)
