"""Command-line wiring of capture (``run --capture``), ``replay`` and ``plan``.

``strangler.cli`` calls ``add_*`` while building its parser and the handlers set as
``args.handler``. Only argparse and light modules are imported at module level: mitmproxy
loads when a command actually reads or writes a flow file.

Exit codes (``strangler.conventions``): 0 done (``plan``: no change), 1 a failure
(``replay``: a broker error; ``plan``: a routes file is invalid), 2 usage or configuration
(``replay``: an invalid routes.yaml, an unreadable capture or state file, a refused login,
mitmproxy missing), 3 ``plan``: something changes, 130 interrupted (``replay``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any, Final

from ..conventions import ExitCode, add_routes_option, positive_count, positive_number
from ..routes import RoutesError, RouteTable, load_routes
from ..stomp import DEFAULT_LIMITS, Limits
from .extra import CaptureUnavailable, require_mitmproxy

if TYPE_CHECKING:
    from .capture import FlowCapture
    from .sources import MessageSource

EXIT_OK: Final = ExitCode.OK
EXIT_INVALID: Final = ExitCode.FAILED  # plan: a routes file is invalid; replay: a broker error
EXIT_CHANGES: Final = ExitCode.CHANGES
EXIT_USAGE: Final = ExitCode.CONFIG
EXIT_INTERRUPTED: Final = ExitCode.INTERRUPTED
__all__ = ["CaptureUnavailable"]  # for cli: `run --capture` without the extra

_SIZE: Final = re.compile(r"(\d+)\s*([KMG]i?B?)?", re.IGNORECASE)
_UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size(text: str) -> int:
    """Bytes from ``268435456``, ``256M``, ``256MiB`` or ``1G`` (binary units)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size like 256M or 1G, got {text!r}")
    value = int(match.group(1)) * _UNITS[(match.group(2) or "")[:1].lower()]
    if value < 1024:
        raise argparse.ArgumentTypeError("must be at least 1024 bytes")
    return value


# -- run --capture --------------------------------------------------------------------------


def add_capture_options(run: argparse.ArgumentParser) -> None:
    from .capture import DEFAULT_MAX_BYTES  # light: capture imports mitmproxy lazily

    run.add_argument(
        "--capture",
        metavar="FILE",
        help="record every producer connection as a TCP flow in FILE (mitmproxy's flow "
        "format: open it with mitmproxy/mitmweb -r, or `strangler replay`), created readable "
        "by its owner only (0600), producers' passcodes emptied; off by default",
    )
    run.add_argument(
        "--capture-passcodes",
        action="store_true",
        help="keep producers' CONNECT passcodes in the capture (off: emptied), e.g. so that "
        "`strangler replay` logs in to legacy as the captured producer did",
    )
    run.add_argument(
        "--capture-headers-only",
        action="store_true",
        help="keep every frame but empty its body (and CONNECT's passcode): bodies may hold "
        "sensitive data; such captures serve `replay --dry-run` and `plan` only",
    )
    run.add_argument(
        "--capture-max-bytes",
        type=size,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help="when FILE would grow past N bytes (e.g. 256M), it is renamed FILE.1 "
        "(replacing the previous FILE.1) and a new FILE is started (default 256MiB)",
    )


def open_capture(
    args: argparse.Namespace, table: RouteTable, limits: Limits = DEFAULT_LIMITS
) -> FlowCapture | None:
    """The tap for ``strangler run``, or None without ``--capture`` (raises OSError, or
    CaptureUnavailable without mitmproxy: the writer thread would fail on every flow)."""
    if not getattr(args, "capture", None):
        return None
    require_mitmproxy("--capture (it writes mitmproxy's flow format)")
    from .capture import FlowCapture

    legacy = table.brokers["legacy"].endpoints[0]
    return FlowCapture(
        args.capture,
        headers_only=args.capture_headers_only,
        keep_passcodes=args.capture_passcodes,
        max_bytes=args.capture_max_bytes,
        server=(legacy.host, legacy.port),
        listen=(args.listen[0], args.listen[1]),
        limits=limits,
    )


def close_capture(capture: FlowCapture | None) -> None:
    if capture is not None:
        capture.close()
        print(f"strangler: {capture.summary()}", file=sys.stderr)


# -- replay ---------------------------------------------------------------------------------


def add_replay_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .publish import DEFAULT_TIMEOUT, DEFAULT_WINDOW

    replay = commands.add_parser(
        "replay",
        help="decide captured SENDs with a routes file (--dry-run), or send them again",
        description=(
            "Read a capture (`strangler run --capture`, or any mitmproxy TCP flow file such "
            "as `mitmdump --mode reverse:tcp://legacy:61613@61613 -w FILE`) or a facts file, "
            "and decide every SEND exactly as the proxy would. --dry-run reports messages "
            "per route and destination; without it the SENDs are sent again, each with a "
            "receipt, to the brokers the routes choose, resumably."
        ),
    )
    replay.add_argument(
        "capture", nargs="+", metavar="CAPTURE", help="flow or facts file(s), oldest first"
    )
    add_routes_option(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="only report what the routes decide; send nothing"
    )
    replay.add_argument(
        "--against",
        metavar="OLD",
        help="(--dry-run) also decide with OLD routes and list the messages decided differently",
    )
    replay.add_argument(
        "--facts",
        action="append",
        metavar="FILE",
        help="(--dry-run) the facts of the run the capture recorded (repeatable; rotated and "
        ".gz files too): decide each captured SEND under the trace id the live proxy gave "
        "it (split routes without a sticky header then decide as they did live) and report "
        "how many decisions agree",
    )
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.add_argument(
        "--examples",
        type=int,
        default=5,
        metavar="N",
        help="trace ids listed per difference (default %(default)s)",
    )
    replay.add_argument(
        "--state",
        metavar="FILE",
        help="resumable position (default CAPTURE.replay-state.json): SENDs confirmed "
        "there are skipped by a rerun",
    )
    replay.add_argument(
        "--rate", type=positive_number, metavar="N", help="send at most N messages per second"
    )
    replay.add_argument(
        "--limit",
        type=positive_count,
        metavar="N",
        help="stop after sending N messages in this run",
    )
    replay.add_argument(
        "--window",
        type=positive_count,
        default=DEFAULT_WINDOW,
        metavar="N",
        help="messages awaiting a receipt at once (default %(default)s)",
    )
    replay.add_argument(
        "--timeout",
        type=positive_number,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="give up when a broker answers nothing for this long (default %(default)s)",
    )
    replay.set_defaults(handler=run_replay)


def _load(path: str) -> RouteTable | None:
    try:
        return load_routes(path)
    except RoutesError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return None


def _unreadable(*paths: str) -> bool:
    """Whether one of ``paths`` cannot be read at all (usage, 2), not merely invalid (1)."""
    return any(not os.access(path, os.R_OK) or os.path.isdir(path) for path in paths)


def _source(paths: list[str]) -> MessageSource | None:
    from .sources import MessageSource, SourceError

    try:
        return MessageSource(paths)
    except SourceError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return None


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def run_replay(args: argparse.Namespace) -> int:
    from .report import Report
    from .sources import SourceError

    table = _load(args.routes)
    against = _load(args.against) if args.against else None
    if table is None or (args.against and against is None):
        return EXIT_USAGE
    if against is not None and not args.dry_run:
        print("strangler: --against needs --dry-run", file=sys.stderr)
        return EXIT_USAGE
    source = _source(args.capture)
    if source is None:
        return EXIT_USAGE
    if args.facts and not args.dry_run:
        print("strangler: --facts needs --dry-run", file=sys.stderr)
        return EXIT_USAGE
    if not args.dry_run:
        return _publish(args, table, source)
    if args.facts:
        return _dry_run_live(args, table, against, source)
    try:
        report = Report(table, against, examples=args.examples).add_all(source)
    except SourceError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        _print_json(report.as_dict(source.stats))
    else:
        files = ", ".join(args.capture)
        print(report.render(source.stats, title=f"replay --dry-run of {files}"))
    return EXIT_OK


def _dry_run_live(
    args: argparse.Namespace, table: RouteTable, against: RouteTable | None, source: MessageSource
) -> int:
    """``--dry-run --facts``: each SEND keyed by its live trace id; the agreement figure."""
    from ..ledger import InputError
    from .live import Agreement, LiveDecisions
    from .report import Report
    from .sources import SourceError

    try:
        live = LiveDecisions(args.facts)
    except InputError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return EXIT_INVALID
    report = Report(table, against, examples=args.examples)
    agreement = Agreement(examples=args.examples)
    try:
        for message in source:
            found = live.find(message)
            decision = report.add(agreement.keyed(message, found))
            if found is not None:
                agreement.compare(found, decision, table.version)
    except SourceError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        _print_json({**report.as_dict(source.stats), "live": agreement.as_dict(live.files)})
    else:
        files = ", ".join(args.capture)
        print(report.render(source.stats, title=f"replay --dry-run of {files}"))
        print()
        print("\n".join(agreement.render(live.files)))
    return EXIT_OK


def _publish(args: argparse.Namespace, table: RouteTable, source: MessageSource) -> int:
    from ..progress import Progress
    from ..upstream.client import PublishError
    from .publish import Publisher, ReplayState, broker_opener, describe, fingerprint
    from .sources import SourceError

    if "facts" in source.kinds:
        print(
            "strangler: facts files hold no message bodies; use them with --dry-run",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        total = sum(1 for _ in source)  # a counting pass: streamed, nothing kept
    except SourceError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if source.stats.headers_only:
        print(
            "strangler: the capture was taken with --capture-headers-only (no bodies); "
            "it can only be used with --dry-run",
            file=sys.stderr,
        )
        return EXIT_USAGE
    for error in source.stats.errors:
        print(f"strangler: warning: {error}", file=sys.stderr)
    state_path = args.state or f"{args.capture[0]}.replay-state.json"
    try:
        state = ReplayState.load(state_path)
        digest = fingerprint(args.capture)
    except (PublishError, OSError) as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if state is None:
        state = ReplayState(
            capture=[os.path.abspath(p) for p in args.capture],
            fingerprint=digest,
            total=total,
            routes_version=table.version,
        )
    elif state.fingerprint != digest:
        print(
            f"strangler: {state_path} records the replay of another capture "
            f"({', '.join(state.capture)}); remove it or pass --state",
            file=sys.stderr,
        )
        return EXIT_USAGE
    elif state.routes_version != table.version:
        print(
            f"strangler: note: routes changed since {state_path} was written "
            f"({state.routes_version} -> {table.version}); the remaining messages follow "
            "the current routes",
            file=sys.stderr,
        )
        state.routes_version = table.version
    if state.confirmed >= total:
        print(f"strangler: all {total} SENDs are already confirmed ({state_path}); nothing to do")
        return EXIT_OK

    def save(confirmed: int) -> None:
        state.confirmed = confirmed
        state.save(state_path)

    publisher = Publisher(
        table,
        broker_opener(table, source.stats.login, args.timeout),
        window=args.window,
        rate=args.rate,
        timeout=args.timeout,
        progress=Progress(total),
    )
    result = publisher.run(source, total=total, start=state.confirmed, limit=args.limit, save=save)
    if args.json:
        _print_json({"replay": describe(result, state_path), **result.report.as_dict()})
    else:
        print(result.report.render(title=f"replay of {', '.join(args.capture)}: sent this run"))
        print()
        done = "complete" if result.complete else "rerun the same command to continue"
        print(
            f"{result.confirmed} of {total} SENDs confirmed ({result.sent} sent this run); "
            f"position in {state_path}; {done}"
        )
    if result.error is not None:
        print(f"strangler: replay stopped: {result.error}", file=sys.stderr)
        return EXIT_USAGE if result.login_refused else EXIT_INVALID
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK


# -- plan -----------------------------------------------------------------------------------


def add_plan_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser(
        "plan",
        help="what changing OLD routes to NEW would do (exit 0 no change, 3 changes, 1 invalid)",
        description=(
            "Compare two routes files without connecting anywhere: routes added, removed "
            "and changed; destinations that change broker; with --capture, how many "
            "captured messages would move from where to where."
        ),
    )
    plan.add_argument("old", help="the routes.yaml in force")
    plan.add_argument("new", help="the proposed routes.yaml")
    plan.add_argument(
        "--capture",
        action="append",
        metavar="FILE",
        help="a capture or facts file to count moving messages in (repeatable, oldest first)",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--examples", type=int, default=5, metavar="N", help="trace ids listed per change"
    )
    plan.set_defaults(handler=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from .plan import make_plan
    from .report import Report
    from .sources import SourceError

    old, new = _load(args.old), _load(args.new)
    if old is None or new is None:
        return EXIT_USAGE if _unreadable(args.old, args.new) else EXIT_INVALID
    plan = make_plan(old, new)
    if args.capture:
        source = _source(args.capture)
        if source is None:
            return EXIT_USAGE
        try:
            plan.messages = Report(new, old, examples=args.examples).add_all(source)
        except SourceError as exc:
            print(f"strangler: {exc}", file=sys.stderr)
            return EXIT_USAGE
        plan.stats = source.stats
    if args.json:
        _print_json(plan.as_dict())
    else:
        print(plan.render())
    return EXIT_CHANGES if plan.changed else EXIT_OK
