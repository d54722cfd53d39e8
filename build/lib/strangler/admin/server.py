"""Admin HTTP on its own port (loopback by default): /healthz, /readyz,
/metrics, /routes, /status.

A deliberately tiny HTTP/1.1 responder on asyncio streams (GET and HEAD, one
request per connection): the admin surface must not pull a web framework into
a sidecar, and it must keep answering while producers load the data path.
What /readyz means: ``readiness.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..proxy import ProxyContext
from ..routes import RouteTable
from .metrics import ProxyMetrics
from .readiness import Readiness
from .status import StatusWindow

_PATHS = b"try /healthz /readyz /readyz?verbose /metrics /routes /status\n"


def routes_document(table: RouteTable) -> dict[str, Any]:
    """The active table as JSON: everything but secrets (credentials show their source)."""
    brokers = {}
    for name, broker in table.brokers.items():
        mapping = broker.client_credentials
        brokers[name] = {
            "endpoints": [str(e) for e in broker.endpoints],
            "amazonmq": None if broker.aws is None else str(broker.aws),
            "ca_file": broker.ca_file,
            "credentials_from": _source(broker.credentials),
            "client_credentials": None
            if mapping is None
            else {
                "unmapped": str(mapping.unmapped),
                "logins": {login: _source(creds) for login, creds in mapping.logins},
            },
            "heartbeat_ms": broker.heartbeat_ms,
        }
    return {
        "version": table.version,
        "source": table.source,
        "dry_run": table.dry_run,
        "trace_header": table.trace_header,
        "brokers": brokers,
        "routes": [
            {
                "name": r.name,
                "match": {r.match_kind: r.pattern},
                "mode": str(r.mode),
                "weight": r.weight,
                "sticky_header": r.sticky_header,
                "on_failure": None if r.on_failure is None else str(r.on_failure),
                "target_destination": r.target_destination,
                "dry_run": r.dry_run,
                "line": r.line,
            }
            for r in table.routes
        ],
    }


def _source(creds: object | None) -> dict[str, Any] | None:
    if creds is None:
        return None
    return {k: v for k, v in _public_fields(creds).items() if v is not None}


def _public_fields(creds: object) -> dict[str, Any]:
    # Credentials hold only *where* secrets are (env var names, file paths, secret ids).
    names = getattr(creds, "__slots__", ()) or getattr(creds, "__dataclass_fields__", {})
    return {n: getattr(creds, n) for n in names if not n.startswith("_")}


class AdminServer:
    def __init__(
        self,
        ctx: ProxyContext,
        metrics: ProxyMetrics,
        status: StatusWindow,
        host: str,
        port: int,
        alive: Callable[[], bool] = lambda: True,
        listening: Callable[[], bool] = lambda: True,
    ) -> None:
        self._ctx = ctx
        self._metrics = metrics
        self._status = status
        self._host = host
        self._port = port
        self._alive = alive
        self.readiness = Readiness(ctx, listening=listening, stopping=lambda: not alive())
        self._server: asyncio.Server | None = None
        self._sampler: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self._sampler = asyncio.create_task(self._sample_forever())

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        if self._server is not None:
            self._server.close()

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self._status.interval)
            self._status.sample()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.decode("latin-1").partition(" ")
            path, _, query = rest.partition(" ")[0].partition("?")
            # HEAD: GET's status and headers, no body (load balancers and monitors use it).
            get = "GET" if method == "HEAD" else method
            status, content_type, body = await self._route(get, path, query)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            )
            if get != method:
                body = b""
            elif status.startswith("405"):
                head += "Allow: GET, HEAD\r\n"
            writer.write((head + "\r\n").encode("latin-1") + body)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str, query: str = "") -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET and HEAD only\n"
        if path == "/healthz":
            alive = self._alive()
            return (
                ("200 OK" if alive else "503 Service Unavailable"),
                "text/plain",
                (b"ok\n" if alive else b"stopping\n"),
            )
        if path == "/readyz":
            verbose = "verbose" in (p.partition("=")[0] for p in query.split("&"))
            ok, document = await self.readiness.check(verbose=verbose)
            body = json.dumps(document).encode() + b"\n"
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
        if path in ("/metrics", "/status"):
            # Counters follow the fact writer: let it catch up with what was emitted.
            await asyncio.to_thread(self._ctx.facts.flush, 1.0)
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._metrics.registry)
        if path == "/routes":
            body = json.dumps(routes_document(self._ctx.routes.table), indent=2).encode()
            return "200 OK", "application/json", body + b"\n"
        if path == "/status":
            body = json.dumps(self._status.report(), indent=2).encode()
            return "200 OK", "application/json", body + b"\n"
        return "404 Not Found", "text/plain", _PATHS
