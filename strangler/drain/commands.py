"""Command-line wiring of ``strangler drain`` and ``strangler verify``.

Facts go to stdout (or ``--facts FILE``), as with ``strangler run``; what a person reads
(the report, the progress line) goes to stderr.

Exit codes (``strangler.conventions``): 0 done (drain: complete, or ``--max`` reached, with
consumed = confirmed = moved; verify: both sides match), 1 a failure or mismatch (a broker
lost or unreachable), 2 a usage or configuration error (routes.yaml, the route's mode,
credentials missing or refused by a broker, a journal in use, an unreadable
``--proxy-facts``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Final

from ..conventions import ExitCode, add_routes_option, positive_count, positive_number
from ..facts import Fact, FactSink
from ..progress import Progress
from ..routes import AMAZONMQ, LEGACY, RoutesError, RouteTable, load_routes
from ..upstream.client import LoginRefused, PublishError, open_broker
from .backlog import Backlog, browse
from .brokers import (
    LOGIN_ENV,
    PASSCODE_ENV,
    Connection,
    Target,
    TargetError,
    legacy_login,
    resolve_target,
    routes_login,
)
from .journal import Journal, JournalError, default_path
from .mover import Drain, DrainResult, DrainSettings

EXIT_OK: Final = ExitCode.OK
EXIT_FAILED: Final = ExitCode.FAILED
EXIT_USAGE: Final = ExitCode.CONFIG
EXIT_INTERRUPTED: Final = ExitCode.INTERRUPTED
# What to do when a broker refuses the login these commands use.
LOGIN_HINTS: Final = {
    LEGACY: f"log in to legacy with --legacy-login USER or {LOGIN_ENV}, and the passcode in "
    f"{PASSCODE_ENV} or --legacy-passcode-file (or credentials under brokers.legacy in "
    "routes.yaml); `strangler doctor` checks them",
    AMAZONMQ: "check brokers.amazonmq's credentials in routes.yaml; `strangler doctor` checks them",
}
DEFAULTS: Final = DrainSettings()


class _RefusePasscode(argparse.Action):
    """``--legacy-passcode VALUE`` is refused, without repeating VALUE anywhere."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        parser.error(
            "--legacy-passcode: a passcode on the command line is visible to every user "
            f"of this machine (ps); set {PASSCODE_ENV} or use --legacy-passcode-file"
        )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("destination", metavar="DESTINATION", help="the legacy queue, /queue/NAME")
    add_routes_option(parser)
    parser.add_argument(
        "--facts", metavar="FILE", help="append facts (JSON lines) to FILE instead of stdout"
    )
    add_legacy_login_options(parser)
    parser.add_argument(
        "--timeout",
        type=positive_number,
        default=30.0,
        metavar="SECONDS",
        help="give up when a broker owes an answer for this long (default %(default)s)",
    )


def add_legacy_login_options(parser: argparse.ArgumentParser) -> None:
    """How drain and verify log in to legacy (``doctor`` checks the same login)."""
    parser.add_argument(
        "--legacy-login",
        metavar="USER",
        help="log in to legacy as USER (default: $STRANGLER_LEGACY_LOGIN, else routes.yaml's "
        "credentials of legacy); the passcode comes from $STRANGLER_LEGACY_PASSCODE or "
        "--legacy-passcode-file, never from the command line",
    )
    parser.add_argument(
        "--legacy-passcode-file", metavar="FILE", help="the legacy passcode: FILE's first line"
    )
    parser.add_argument("--legacy-passcode", action=_RefusePasscode, help=argparse.SUPPRESS)


def add_drain_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drain = commands.add_parser(
        "drain",
        allow_abbrev=False,
        help="move a cut-over queue's backlog from legacy to Amazon MQ, resumably",
        description=(
            "Consume DESTINATION on legacy and send each message to Amazon MQ (headers kept, "
            "the route's Amazon MQ destination), acknowledging it on legacy only after Amazon "
            "MQ confirmed it. Safe to interrupt and rerun. Needs a cutover route."
        ),
    )
    _common(drain)
    drain.add_argument(
        "--to", choices=[AMAZONMQ], default=AMAZONMQ, help="where to (default %(default)s)"
    )
    drain.add_argument(
        "--dry-run",
        action="store_true",
        help="browse both queues and report what would move; move nothing",
    )
    drain.add_argument(
        "--rate", type=positive_number, metavar="N", help="move at most N messages/s"
    )
    drain.add_argument(
        "--max", type=positive_count, metavar="N", help="stop after moving N messages"
    )
    drain.add_argument(
        "--prefetch",
        type=positive_count,
        default=DEFAULTS.prefetch,
        metavar="N",
        help="messages delivered and unacknowledged at once; also the most a crash can "
        "duplicate on Amazon MQ (default %(default)s)",
    )
    drain.add_argument(
        "--idle",
        type=positive_number,
        default=DEFAULTS.idle,
        metavar="SECONDS",
        help="after this long without a message, check legacy's queue is empty and finish "
        "(default %(default)s)",
    )
    drain.add_argument(
        "--journal",
        metavar="FILE",
        help="ids sent to Amazon MQ and not yet acknowledged on legacy, for the next run "
        "(default $XDG_STATE_HOME/strangler/drain/QUEUE-HASH.json)",
    )
    drain.set_defaults(handler=run_drain)


def add_verify_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify",
        allow_abbrev=False,
        help="compare a mirrored queue on legacy and Amazon MQ without consuming (exit 1 differ)",
        description=(
            "Browse DESTINATION on legacy and its mirror on Amazon MQ (the route's "
            "target_destination) and report the trace ids missing on Amazon MQ, extra there, "
            "or held there more than once. Nothing is consumed."
        ),
    )
    _common(verify)
    verify.add_argument(
        "--allow-extra",
        action="store_true",
        help="do not fail for messages only on Amazon MQ (legacy's consumers took them)",
    )
    verify.add_argument(
        "--examples", type=int, default=5, metavar="N", help="ids listed per kind (default 5)"
    )
    verify.add_argument(
        "--proxy-facts",
        action="append",
        metavar="FILE",
        help="the facts of the proxies that routed DESTINATION (repeatable; rotated and .gz "
        "files too; - reads stdin): explain each difference where they can (a failed copy, "
        "a copy lost with a killed proxy, a duplicate in doubt); an explained duplicate is "
        "not a mismatch",
    )
    verify.set_defaults(handler=run_verify)


# -- shared set-up ----------------------------------------------------------------------------


class _Setup:
    """routes.yaml, the target and both logins, read before anything connects."""

    def __init__(self, args: argparse.Namespace, purpose: str) -> None:
        self.table: RouteTable = load_routes(args.routes)
        self.target: Target = resolve_target(
            self.table, args.destination, "drain" if purpose == "drain" else "verify"
        )
        self.legacy_login = legacy_login(self.table, args.legacy_login, args.legacy_passcode_file)
        self.amazonmq_login = routes_login(self.table, AMAZONMQ)
        self.timeout: float = args.timeout

    def open_legacy(self) -> Connection:
        return open_broker(self.table, LEGACY, self.legacy_login, self.timeout)

    def open_amazonmq(self) -> Connection:
        return open_broker(self.table, AMAZONMQ, self.amazonmq_login, self.timeout)

    def browse(self, broker: str, destination: str, *, keyed: bool = True) -> Backlog:
        opener = self.open_legacy if broker == LEGACY else self.open_amazonmq
        connection = opener()
        try:
            trace_header = self.target.trace_header
            return browse(connection, destination, trace_header, self.timeout, keyed=keyed)
        finally:
            connection.close()

    def count_legacy(self) -> int:
        """How many messages legacy's queue holds now (none consumed)."""
        return self.browse(LEGACY, self.target.destination, keyed=False).count

    def endpoint(self, broker: str) -> str:
        config = self.table.brokers[broker]
        return str(config.endpoints[0]) if config.endpoints else str(config.aws)


def _setup(args: argparse.Namespace, purpose: str) -> _Setup | None:
    try:
        return _Setup(args, purpose)
    except (RoutesError, TargetError) as exc:
        print(f"strangler {purpose}: {exc}", file=sys.stderr)
        return None


@contextlib.contextmanager
def _facts(args: argparse.Namespace) -> Iterator[FactSink]:
    sink = FactSink(path=args.facts) if args.facts else FactSink(sys.stdout)
    try:
        yield sink
    finally:
        sink.close()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _broker_failed(purpose: str, exc: PublishError) -> int:
    """Report a broker error: a refused login is configuration (2), the rest a failure (1)."""
    if isinstance(exc, LoginRefused):
        hint = next((h for name, h in LOGIN_HINTS.items() if str(exc).startswith(name)), "")
        _say(f"strangler {purpose}: {exc}" + (f"\n  {hint}" if hint else ""))
        return EXIT_USAGE
    _say(f"strangler {purpose}: {exc}")
    return EXIT_FAILED


# -- drain --------------------------------------------------------------------------------------


def run_drain(args: argparse.Namespace) -> int:
    setup = _setup(args, "drain")
    if setup is None:
        return EXIT_USAGE
    target = setup.target
    route = (
        f"{target.destination} (legacy {setup.endpoint(LEGACY)}) -> "
        f"{target.amazonmq_destination} (amazonmq {setup.endpoint(AMAZONMQ)}), "
        f"route {target.rule} ({target.mode})"
    )
    with _facts(args) as facts:
        if args.dry_run:
            return _dry_run(setup, facts, route)
        journal_path = args.journal or default_path(setup.endpoint(LEGACY), target.destination)
        try:
            with Journal(journal_path, target.destination) as journal:
                return _drain(args, setup, facts, journal, route)
        except JournalError as exc:
            _say(f"strangler drain: {exc}")
            return EXIT_USAGE
        except KeyboardInterrupt:  # before the move loop, which handles its own
            return EXIT_INTERRUPTED


def _dry_run(setup: _Setup, facts: FactSink, route: str) -> int:
    target = setup.target
    try:
        legacy = setup.browse(LEGACY, target.destination)
        amazonmq = setup.browse(AMAZONMQ, target.amazonmq_destination)
    except PublishError as exc:
        return _broker_failed("drain", exc)
    already = sum(1 for key in legacy.keys if key in amazonmq.keys)
    facts.emit(
        Fact.DRAIN_PLANNED,
        **target.described,
        backlog=legacy.count,
        bytes=legacy.bytes,
        without_trace_id=legacy.without_trace,
        redelivered=legacy.redelivered,
        amazonmq_messages=amazonmq.count,
        already_on_amazonmq=already,
    )
    oldest = (
        datetime.fromtimestamp(legacy.oldest_ms / 1000, UTC).isoformat(timespec="seconds")
        if legacy.oldest_ms
        else "-"
    )
    _say(
        "\n".join(
            [
                f"drain --dry-run {route}",
                f"  backlog on legacy: {legacy.count} messages, {legacy.bytes} bytes of body, "
                f"oldest {oldest}",
                f"    without a trace id: {legacy.without_trace} (moved with their legacy "
                "message-id as trace id)",
                f"    redelivered (a consumer took them and did not acknowledge): "
                f"{legacy.redelivered}",
                f"  on Amazon MQ now: {amazonmq.count} messages; {already} of the backlog's ids "
                "are there already (a drain would copy them again)",
                f"would move: {legacy.count} messages; nothing was moved",
            ]
        )
    )
    return EXIT_OK


def _drain(
    args: argparse.Namespace, setup: _Setup, facts: FactSink, journal: Journal, route: str
) -> int:
    target = setup.target
    settings = DrainSettings(
        prefetch=args.prefetch,
        rate=args.rate,
        max_messages=args.max,
        idle=args.idle,
        timeout=args.timeout,
    )
    earlier = len(journal.earlier)
    try:
        backlog = setup.count_legacy()
        legacy = setup.open_legacy()
        try:
            amazonmq = setup.open_amazonmq()
        except PublishError:
            legacy.close()
            raise
    except PublishError as exc:
        return _broker_failed("drain", exc)
    facts.emit(
        Fact.DRAIN_STARTED,
        **target.described,
        backlog=backlog,
        prefetch=settings.prefetch,
        duplicate_bound=settings.prefetch,
        rate=settings.rate,
        max=settings.max_messages,
        journal=str(journal.path),
        earlier_suspects=earlier,
    )
    _say(f"drain {route}")
    _say(f"  backlog on legacy: {backlog} messages")
    if earlier:
        _say(
            f"  {earlier} message(s) of an earlier drain that stopped were sent to Amazon MQ "
            f"without legacy confirming the ACK ({journal.path}); each one met again is "
            "moved again and reported as a possible duplicate"
        )
    stop = threading.Event()
    drain = Drain(
        target,
        legacy,
        amazonmq,
        setup.count_legacy,
        journal,
        facts,
        settings,
        progress=Progress(backlog, label=f"drain {target.destination}", noun="moved"),
        stop=stop,
    )
    with _on_sigterm(stop.set):
        result = drain.run()
    facts.emit(Fact.DRAIN_FINISHED, **target.described, **result.as_fields())
    _say(_render(result, settings, journal))
    if result.stopped == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


@contextlib.contextmanager
def _on_sigterm(handler: Callable[[], None]) -> Iterator[None]:
    """SIGTERM stops the drain as Ctrl-C does: no new message, receipts in flight awaited."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (tests call main() elsewhere)
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _render(result: DrainResult, settings: DrainSettings, journal: Journal) -> str:
    check = "ok" if result.counts_match else "MISMATCH"
    lines = [
        f"  consumed {result.consumed} = confirmed by Amazon MQ {result.confirmed} = "
        f"acknowledged on legacy {result.moved}: {check}",
        f"  moved {result.moved} messages in {result.moving:.1f}s ({result.rate:.0f} msg/s; "
        f"{result.elapsed:.1f}s with the checks)",
    ]
    if result.returned:
        lines.append(f"  left on legacy unsent (--max or a stop): {result.returned}")
    lines.append(
        f"  possible duplicates on Amazon MQ: {result.possible_duplicates} "
        f"(a crash can leave at most {settings.prefetch}, --prefetch; see the "
        "drain_duplicate_possible facts for their trace ids)"
    )
    if result.unseen_suspects:
        lines.append(
            f"  {len(result.unseen_suspects)} id(s) an earlier drain sent were not on legacy "
            "any more: legacy had taken their ACK, unless another consumer took them "
            f"(then they were processed on legacy too): {', '.join(result.unseen_suspects[:5])}"
        )
    remaining = "unknown" if result.legacy_remaining is None else str(result.legacy_remaining)
    lines.append(f"  legacy's queue now holds: {remaining}")
    if journal.suspects:
        lines.append(f"  journal: {len(journal.suspects)} id(s) kept in {journal.path}")
    outcome = {
        "empty": "complete: legacy's queue is empty",
        "max": "stopped at --max; rerun to continue",
        "not_empty": "legacy still holds messages this drain was not given (another consumer "
        "holds them, or producers still send here: check message_fell_back); rerun",
        "interrupted": "interrupted; rerun to continue",
        "error": f"failed: {result.error}; rerun to continue",
    }[result.stopped]
    if not result.counts_match:
        outcome = f"count check failed; {outcome}"
    return "\n".join([*lines, f"result: {outcome}"])


# -- verify -------------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    from ..ledger import InputError
    from ..ledger.copies import read_copies
    from .verify import verify

    setup = _setup(args, "verify")
    if setup is None:
        return EXIT_USAGE
    proxy_facts = None
    if args.proxy_facts:
        try:
            proxy_facts = read_copies(args.proxy_facts, setup.target.rule)
        except InputError as exc:
            _say(f"strangler verify: {exc}")
            return EXIT_USAGE
    with _facts(args) as facts:
        try:
            result = verify(
                setup.target,
                setup.browse,
                facts,
                allow_extra=args.allow_extra,
                proxy_facts=proxy_facts,
            )
        except PublishError as exc:
            return _broker_failed("verify", exc)
    _say(result.render(args.examples))
    return EXIT_OK if result.matches else EXIT_FAILED
