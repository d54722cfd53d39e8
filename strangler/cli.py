"""Command line: ``strangler run | validate | doctor | status | plan | replay | drain | verify
| rollout | audit``.

``validate`` never touches the network (Envoy's ``--mode validate``): it loads
routes.yaml, reads every file it names (CA certificates, credentials files) as a
connect would, prints what each route does, and exits 0 (valid) or 1 (invalid,
with file:line: reason on stderr; with ``--strict``, warnings too). Exit codes
and the ``--routes`` option are the same for every command (``conventions``).
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

from . import allocator
from .conventions import (
    ExitCode,
    add_routes_option,
    batch_milliseconds,
    positive_count,
    positive_number,
    routes_path,
)
from .drain import commands as drain_commands
from .facts import Fact, FactSink
from .ledger import commands as ledger_commands
from .proxy import ProxyContext, ProxyServer, ProxySettings, RoutesHolder, RoutesReloader
from .replay import commands as replay_commands
from .rollout import commands as rollout_commands
from .routes import RoutesError, RouteTable, load_routes
from .stomp import Limits
from .stomp.native import BUILD_NOTE

EXIT_OK = ExitCode.OK
EXIT_INVALID = ExitCode.FAILED  # validate: the file is invalid
EXIT_USAGE = ExitCode.CONFIG


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
    add_routes_option(run)
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
        "--confirm-timeout",
        type=positive_number,
        default=ProxySettings().confirm_timeout,
        metavar="SECONDS",
        help="an Amazon MQ frame without a receipt after this long means the connection is "
        "hung: it is dropped, its frames are in doubt and their routes' on_failure applies "
        "(default %(default)s)",
    )
    run.add_argument(
        "--amazonmq-batch-ms",
        type=batch_milliseconds,
        default=ProxySettings().amazonmq_batch_delay * 1000,
        metavar="MS",
        help="mirror copies and receipt-less Amazon MQ primaries wait at most this long to "
        "go out together, one receipt for up to 64 of them; 0 writes them at once "
        "(default %(default)g)",
    )
    run.add_argument(
        "--max-connections",
        type=positive_count,
        default=ProxySettings().max_connections,
        metavar="N",
        help="producer connections served at once; one more gets an ERROR "
        "(client_refused) (default %(default)s)",
    )
    run.add_argument(
        "--max-buffered",
        type=positive_count,
        default=ProxySettings().max_buffered_bytes,
        metavar="BYTES",
        help="bytes of unfinished frames all connections together may hold; a frame that "
        "would pass it closes its connection with an ERROR (default %(default)s)",
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
    add_routes_option(doctor)
    drain_commands.add_legacy_login_options(doctor)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")

    validate = commands.add_parser(
        "validate",
        help="check a routes.yaml without connecting anywhere (exit 0 valid, 1 invalid)",
    )
    add_routes_option(validate, positional=True)
    validate.add_argument(
        "--strict",
        action="store_true",
        help="treat warnings as errors (exit 1): for CI pipelines that check routes changes",
    )
    validate.add_argument(
        "--skip-files",
        action="store_true",
        help="do not read the CA and credentials files routes.yaml names (e.g. in a CI "
        "pipeline that checks routes.yaml without them)",
    )
    replay_commands.add_plan_command(commands)
    replay_commands.add_replay_command(commands)
    drain_commands.add_drain_command(commands)
    drain_commands.add_verify_command(commands)
    rollout_commands.add_rollout_command(commands)
    ledger_commands.add_audit_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(
            routes_path(parser, args), strict=args.strict, check_files=not args.skip_files
        )
    if args.command == "run":
        return _run(args)
    if args.command == "doctor":
        from .doctor import doctor

        return doctor(args)
    if args.command == "status":
        from .admin.client import print_status

        return print_status(args.admin, as_json=args.json)
    if args.command in ("plan", "replay", "drain", "verify", "rollout", "audit"):
        return int(args.handler(args))
    return EXIT_USAGE


def _validate(path: str, *, strict: bool, check_files: bool) -> int:
    try:
        table = load_routes(path)
    except RoutesError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        # A file that cannot be read was not checked: a usage error, not an answer.
        return EXIT_USAGE if exc.unreadable else EXIT_INVALID
    if check_files:
        from .upstream.named_files import check_named_files

        bad = [check for check in check_named_files(table) if check.problem is not None]
        for check in bad:
            print(f"invalid: {table.source}: {check}", file=sys.stderr)
        if bad:
            return EXIT_INVALID
    print(_describe(table))
    if strict and table.warnings:
        print(f"invalid: {len(table.warnings)} warning(s), and --strict", file=sys.stderr)
        return EXIT_INVALID
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
        return EXIT_USAGE
    limits = Limits(max_frame_bytes=args.max_frame_bytes)
    try:
        tls = _server_tls(args.tls_cert, args.tls_key)
    except TlsFilesError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        capture = replay_commands.open_capture(args, table, limits)
    except OSError as exc:
        print(f"strangler: cannot write the capture file: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except replay_commands.CaptureUnavailable as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
        confirm_timeout=args.confirm_timeout,
        amazonmq_batch_delay=args.amazonmq_batch_ms / 1000,
        max_connections=args.max_connections,
        max_buffered_bytes=args.max_buffered,
    )
    ctx = ProxyContext(settings, RoutesHolder(table), facts, tap=capture)
    allocator.tune()
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
        return EXIT_USAGE
    finally:
        facts.close()
        replay_commands.close_capture(capture)  # after the proxy stopped: sessions closed
    return EXIT_OK


class TlsFilesError(Exception):
    """--tls-cert / --tls-key cannot be used; the message says which and why."""


def _server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None:
        if key is not None:
            raise TlsFilesError("--tls-key needs --tls-cert (the certificate chain it belongs to)")
        return None
    texts = {}
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None:
            try:
                with open(path, "rb") as f:
                    texts[flag] = f.read()
            except OSError as exc:
                raise TlsFilesError(f"{flag} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in texts["--tls-cert"]:
        raise TlsFilesError(f"--tls-cert {cert}: no PEM certificate in it")
    if key is None and b"PRIVATE KEY-----" not in texts["--tls-cert"]:
        raise TlsFilesError(
            f"--tls-cert {cert} holds no private key: give its key file with --tls-key FILE"
        )
    if key is not None and b"PRIVATE KEY-----" not in texts["--tls-key"]:
        raise TlsFilesError(f"--tls-key {key}: no PEM private key in it")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFilesError(
                f"--tls-key {key or cert} is not the private key of --tls-cert {cert}"
            ) from None
        raise TlsFilesError(
            f"--tls-cert {cert} / --tls-key {key or cert}: cannot be loaded ({exc.reason or exc}; "
            "an encrypted key is not supported)"
        ) from None
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
    ctx.facts.writer_counters.append(metrics.on_facts)
    reloader = RoutesReloader(ctx, args.routes)
    stopping = asyncio.Event()
    listening = asyncio.Event()  # /readyz: not ready before the proxy listens
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
            listening=listening.is_set,
        )
        await admin.start()
    await server.start()
    listening.set()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)

    reloads: set[asyncio.Task[bool]] = set()  # referenced until done (the loop keeps weak refs)

    def on_sighup() -> None:
        # logrotate's postrotate may send either: the facts file is opened again by name.
        ctx.facts.reopen()
        task = asyncio.create_task(reloader.reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        loop.add_signal_handler(signal.SIGUSR1, ctx.facts.reopen)
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
