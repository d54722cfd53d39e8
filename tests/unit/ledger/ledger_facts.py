"""Fact streams for the ledger's tests, shaped as the proxy writes them (``session.py``).

``Proxy`` is one proxy run: ``start()`` writes ``routes_loaded`` + ``proxy_started``,
``connect()`` a session, ``send()`` a ``message_routed`` (returning its trace id), and
the outcome methods the facts that follow. Trace ids have the proxy's shape: a 16-hex
prefix per run and a hex counter.
"""

from __future__ import annotations

import gzip
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

LEGACY, AMAZONMQ = "legacy", "amazonmq"
VERSION = "v1aaaaaaaaaa"
_clock = itertools.count()
_EPOCH = datetime(2025, 3, 1, 22, 0, tzinfo=UTC)


def stamp(offset_ms: int | None = None) -> str:
    ms = next(_clock) if offset_ms is None else offset_ms
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="microseconds")


class Proxy:
    def __init__(self, version: str = VERSION) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)
        self.sessions = itertools.count(1)
        self.version = version
        self.facts: list[dict[str, Any]] = []

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        fact = {"event": event, "ts": fields.pop("ts", None) or stamp(), **fields}
        self.facts.append(fact)
        return fact

    def start(self) -> Proxy:
        self.emit("routes_loaded", source="routes.yaml", routes_version=self.version)
        self.emit("proxy_started", listen="127.0.0.1:61613", routes_version=self.version)
        return self

    def stop(self) -> None:
        self.emit("proxy_stopped", sessions_closed=0)

    def apply_routes(self, version: str) -> None:
        self.emit("routes_applied", routes_version=version, previous_version=self.version)
        self.version = version

    def connect(self, login: str = "producer") -> str:
        session = f"s{next(self.sessions)}"
        self.emit("client_connected", session=session, login=login, peer="127.0.0.1:40000")
        return session

    def disconnect(self, session: str, reason: str = "client DISCONNECT") -> None:
        self.emit("client_disconnected", session=session, reason=reason, messages=0)

    def send(
        self,
        session: str,
        mode: str = "legacy",
        *,
        rule: str | None = None,
        receipt: bool = True,
        split_to: str = AMAZONMQ,
        transaction: str | None = None,
        **extra: Any,
    ) -> str:
        trace = f"{self.prefix}{next(self.counter):08x}"
        targets = {
            "legacy": [LEGACY],
            "mirror": [LEGACY, AMAZONMQ],
            "split": [split_to],
            "cutover": [AMAZONMQ],
        }[mode]
        self.emit(
            "message_routed",
            session=session,
            trace_id=trace,
            destination=f"/queue/{rule or mode}",
            rule=rule or (mode if mode != "legacy" else "default"),
            mode=mode,
            targets=targets,
            primary=targets[0] if mode != "mirror" else LEGACY,
            would_target=None,
            dry_run=False,
            routes_version=self.version,
            transaction=transaction,
            receipt=receipt,
            **extra,
        )
        return trace

    def confirmed(self, session: str, trace: str, broker: str, role: str = "primary") -> None:
        self.emit(
            "message_confirmed",
            session=session,
            trace_id=trace,
            rule="r",
            broker=broker,
            role=role,
            latency_ms=1.0,
        )

    def fell_back(
        self, session: str, trace: str, *, possibly_stored: bool = False, receipt: bool = True
    ) -> None:
        self.emit(
            "message_fell_back",
            session=session,
            trace_id=trace,
            rule="r",
            reason="amazonmq unavailable",
            to=LEGACY,
            possibly_stored=possibly_stored,
            receipt=receipt,
        )

    def rejected(self, session: str, trace: str, *, possibly_stored: bool = False) -> None:
        self.emit(
            "message_rejected",
            session=session,
            trace_id=trace,
            rule="r",
            reason="amazonmq unavailable",
            possibly_stored=possibly_stored,
        )

    def mirror_failed(self, session: str, trace: str, *, possibly_stored: bool = False) -> None:
        self.emit(
            "message_mirror_failed",
            session=session,
            trace_id=trace,
            rule="r",
            reason="amazonmq unavailable",
            possibly_stored=possibly_stored,
        )

    def resent(self, session: str, trace: str) -> None:
        self.emit(
            "message_resent", session=session, trace_id=trace, broker=AMAZONMQ, endpoint="x:1"
        )

    def lines(self) -> list[bytes]:
        return [orjson.dumps(fact) + b"\n" for fact in self.facts]

    def write(self, path: Path, *, gz: bool = False) -> Path:
        data = b"".join(self.lines())
        if gz:
            path.write_bytes(gzip.compress(data))
        else:
            path.write_bytes(data)
        return path
