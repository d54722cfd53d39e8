"""Command line: ``strangler run | validate | doctor | status | plan | replay | drain | verify``.

``validate`` never touches the network (Envoy's ``--mode validate``): it loads
routes.yaml, prints what each route does, and exits 0 (valid) or 1 (invalid,
with file:line: reason on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .drain import commands as drain_commands
from .facts import Fact, FactSink
from .proxy import ProxyContext, ProxyServer, ProxySettings, RoutesHolder, RoutesReloader
from .replay import commands as replay_commands
from .routes import RoutesError, RouteTable, load_routes
from .stomp import Limits
from .stomp.native import BUILD_NOTE

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def _version() -> str:
    try:
        return version("strangler")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def _admin(text: str) -> tuple[str, int] | None:
    return None if text == "off" else _listen(text)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strangler",
        description=(
            "A STOMP proxy that sits next to your producers and moves their messages from a "
            "self-hosted ActiveMQ (legacy) to Amazon MQ, one destination at a time, as "
            "routes.yaml says. Every decision is written as a JSON fact."
        ),
        epilog="Start with `strangler validate routes.yaml`, then `strangler run --routes ...`",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"strangler {_version()} (frame pump: {BUILD_NOTE})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the proxy",
        description="Listen for producers and route each SEND as routes.yaml says.",
    )
    run.add_argument("--routes", required=True, help="path to routes.yaml")
    run.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 61613),
        metavar="HOST:PORT",
        help="where producers connect (default 127.0.0.1:61613, loopback only)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="decide and record every message, but send everything to legacy",
    )
    run.add_argument(
        "--facts", metavar="FILE", help="append facts (JSON lines) to FILE instead of stdout"
    )
    run.add_argument(
        "--max-frame-bytes",
        type=int,
        default=Limits().max_frame_bytes,
        help="refuse frames larger than this (default %(default)s)",
    )
    run.add_argument(
        "--max-inflight",
        type=int,
        default=1000,
        help="per connection, frames awaiting an Amazon MQ receipt before the producer "
        "is slowed down (default %(default)s)",
    )

    run.add_argument(
        "--admin",
        type=_admin,
        default=("127.0.0.1", 9090),
        metavar="HOST:PORT",
        help="admin HTTP: /healthz /readyz /metrics /routes /status "
        "(default 127.0.0.1:9090; 'off' to disable)",
    )
    run.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="serve STOMP over TLS to producers with this certificate (chain) file",
    )
    run.add_argument("--tls-key", metavar="PEM", help="the private key for --tls-cert")
    run.add_argument(
        "--no-watch",
        action="store_true",
        help="do not reload routes.yaml when it changes (SIGHUP still reloads)",
    )
    run.add_argument(
        "--mirror-backlog",
        type=int,
        default=64 * 1024 * 1024,
        metavar="BYTES",
        help="mirror copies (all connections together) waiting for room beyond "
        "--max-inflight before a copy is dropped (message_mirror_failed); the producer is "
        "never slowed for a copy (default %(default)s)",
    )
    run.add_argument(
        "--backlog-check",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="consumers of a cutover queue: once legacy sent nothing for this long, check "
        "whether legacy's queue is empty and, if so, stop reading it (default %(default)s)",
    )
    run.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, wait this long for in-flight receipts (default %(default)s)",
    )

    replay_commands.add_capture_options(run)

    status = commands.add_parser(
        "status",
        help="show what each route is doing (talks to a running proxy's admin port)",
    )
    status.add_argument(
        "--admin",
        type=_listen,
        default=("127.0.0.1", 9090),
        metavar="HOST:PORT",
        help="the proxy's admin address (default 127.0.0.1:9090)",
    )
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    doctor = commands.add_parser(
        "doctor",
        help="check the brokers in routes.yaml are reachable, verified and accept the login",
    )
    doctor.add_argument("--routes", required=True, help="path to routes.yaml")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")

    validate = commands.add_parser(
        "validate",
        help="check a routes.yaml without connecting anywhere (exit 0 valid, 1 invalid)",
    )
    validate.add_argument("routes", help="path to routes.yaml")
    replay_commands.add_plan_command(commands)
    replay_commands.add_replay_command(commands)
    drain_commands.add_drain_command(commands)
    drain_commands.add_verify_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.routes)
    if args.command == "run":
        return _run(args)
    if args.command == "doctor":
        from .doctor import doctor

        return doctor(args.routes, as_json=args.json)
    if args.command == "status":
        from .admin.client import print_status

        return print_status(args.admin, as_json=args.json)
    if args.command in ("plan", "replay", "drain", "verify"):
        return int(args.handler(args))
    return EXIT_USAGE


def _validate(path: str) -> int:
    try:
        table = load_routes(path)
    except RoutesError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(_describe(table))
    return EXIT_OK


def _describe(table: RouteTable) -> str:
    lines = [f"{table.source}: valid, routes version {table.version}"]
    for name, broker in table.brokers.items():
        urls = ", ".join(str(e) for e in broker.endpoints) or f"{broker.aws} (asked from AWS)"
        lines.append(f"  broker {name}: {urls}")
    for route in table.routes:
        lines.append(f"  {route.name}: {route.match_kind} {route.pattern!r} {route.describe()}")
    lines.append("  anything else: legacy")
    for warning in table.warnings:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    try:
        table = load_routes(args.routes)
    except RoutesError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_INVALID
    limits = Limits(max_frame_bytes=args.max_frame_bytes)
    try:
        tls = _server_tls(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        print(f"strangler: cannot load --tls-cert/--tls-key: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        capture = replay_commands.open_capture(args, table, limits)
    except OSError as exc:
        print(f"strangler: cannot write the capture file: {exc}", file=sys.stderr)
        return EXIT_INVALID
    facts = FactSink(path=args.facts) if args.facts else FactSink(sys.stdout)
    settings = ProxySettings(
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        dry_run=args.dry_run,
        limits=limits,
        max_inflight=args.max_inflight,
        tls=tls,
        backlog_check_interval=args.backlog_check,
        mirror_backlog_bytes=args.mirror_backlog,
    )
    ctx = ProxyContext(settings, RoutesHolder(table), facts, tap=capture)
    facts.emit(
        Fact.ROUTES_LOADED,
        source=table.source,
        routes_version=table.version,
        routes=[r.name for r in table.routes],
    )
    try:
        _event_loop_run(_serve(ctx, args))
    except OSError as exc:
        print(
            f"strangler: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr
        )
        return EXIT_INVALID
    finally:
        facts.close()
        replay_commands.close_capture(capture)  # after the proxy stopped: sessions closed
    return EXIT_OK


def _server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _event_loop_run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop  # optional: measurably faster loop (see bench/)
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve(ctx: ProxyContext, args: argparse.Namespace) -> None:
    from .admin import AdminServer, ProxyMetrics, StatusWindow

    server = ProxyServer(ctx)
    metrics = ProxyMetrics(ctx, open_sessions=lambda: len(server.sessions))
    ctx.facts.writer_listeners.append(metrics.on_fact)
    reloader = RoutesReloader(ctx, args.routes)
    stopping = asyncio.Event()
    admin = None
    if args.admin is not None:
        admin_host, admin_port = args.admin
        admin = AdminServer(
            ctx,
            metrics,
            StatusWindow(ctx, metrics),
            admin_host,
            admin_port,
            alive=lambda: not stopping.is_set(),
        )
        await admin.start()
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(
            signal.SIGHUP, lambda: asyncio.ensure_future(reloader.reload("SIGHUP"))
        )
    if not args.no_watch:
        reloader.start_watching()
    host, port = server.address
    where = f"listening on {host}:{port}"
    if admin is not None:
        where += " (admin http://{}:{})".format(*admin.address)
    print(f"strangler: {where}", file=sys.stderr, flush=True)
    serving = asyncio.create_task(server.serve_forever())
    await stopping.wait()
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    await reloader.stop()
    await server.stop(grace=args.shutdown_grace)
    if admin is not None:
        await admin.stop()


if __name__ == "__main__":
    sys.exit(main())
