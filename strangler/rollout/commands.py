"""Command-line wiring of ``strangler rollout``.

Facts go to stdout (or ``--facts FILE``), as with ``strangler run``; one line per
decision for people goes to stderr.

Exit codes (``strangler.conventions``): 0 the pass(es) ran (whatever they decided); 1
with ``--once``, the pass could not run (the git working copy is not usable: changes of
its own, commits the remote lacks, a failed fetch); 2 nothing was done: a usage error, a
routes file that cannot be read or is invalid (checked at start, like ``run``; and with
``--once``, again after a git fetch), ``--git`` outside a git working copy.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any, Final

from ..conventions import ExitCode, add_routes_option, count, positive_number
from ..drain.commands import add_legacy_login_options
from ..facts import FactSink
from ..routes import RoutesError, load_routes
from ..routes.rollout import parse_duration
from .controller import RolloutController
from .prometheus import PrometheusClient
from .targets import FileTarget, GitTarget, Target, TargetError
from .verify_gate import MirrorVerifier

EXIT_OK: Final = ExitCode.OK
EXIT_FAILED: Final = ExitCode.FAILED
EXIT_CONFIG: Final = ExitCode.CONFIG


def _seconds(text: str) -> float:
    duration = parse_duration(text)
    if duration is None or duration.seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 500ms, 30s or 1m, got {text!r}")
    return duration.seconds


def add_rollout_command(commands: Any) -> None:
    rollout = commands.add_parser(
        "rollout",
        allow_abbrev=False,
        help="step split routes' weights up as their rollout plans say, gated by Prometheus "
        "(and by verify of mirrored queues)",
        description=(
            "One controller for the fleet: every --interval it measures each rolling "
            "route's gates in Prometheus and advances, holds or rolls back its weight by "
            "writing the routes file the proxies watch (or committing and pushing it, "
            "with --git). It keeps no state of its own: restart it at any time."
        ),
    )
    add_routes_option(rollout)
    rollout.add_argument(
        "--prometheus",
        required=True,
        metavar="URL",
        help="Prometheus that scrapes every proxy's /metrics, e.g. http://prometheus:9090",
    )
    rollout.add_argument(
        "--interval",
        type=_seconds,
        default=30.0,
        metavar="DURATION",
        help="time between passes; a breach is acted on within one (default 30s)",
    )
    rollout.add_argument("--once", action="store_true", help="one pass, then exit (a CronJob)")
    rollout.add_argument(
        "--dry-run", action="store_true", help="measure and decide, but write nothing"
    )
    rollout.add_argument(
        "--facts", metavar="FILE", help="append facts (JSON lines) to FILE instead of stdout"
    )
    rollout.add_argument(
        "--git",
        action="store_true",
        help="the routes file is in a git working copy: commit each step and push it "
        "(never forced); GitOps tools apply it",
    )
    rollout.add_argument("--git-remote", default="origin", help="(default %(default)s)")
    rollout.add_argument(
        "--git-branch", metavar="BRANCH", help="the branch to push (default: the checked-out one)"
    )
    rollout.add_argument(
        "--retries",
        type=count,
        default=3,
        help="when the file changed under a step (a rejected push), decide again on the new "
        "content up to this many times, then report it held (default %(default)s)",
    )
    rollout.add_argument(
        "--query-timeout",
        type=_seconds,
        default=10.0,
        metavar="DURATION",
        help="per Prometheus query (default 10s)",
    )
    # Verify gates ({verify: /queue/NAME}) browse both brokers as `strangler verify` does,
    # with its logins.
    add_legacy_login_options(rollout)
    rollout.add_argument(
        "--verify-timeout",
        type=positive_number,
        default=30.0,
        metavar="SECONDS",
        help="verify gates: give up when a broker owes an answer for this long "
        "(default %(default)s)",
    )
    rollout.set_defaults(handler=run_rollout)


def run_rollout(args: argparse.Namespace) -> int:
    try:
        # The file as it is now: unreadable or invalid, nothing is started (as `run`).
        load_routes(args.routes)
        target: Target = (
            GitTarget(args.routes, args.git_remote, args.git_branch)
            if args.git
            else FileTarget(args.routes)
        )
    except (RoutesError, TargetError) as exc:
        print(f"strangler rollout: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    facts = FactSink(path=args.facts) if args.facts else FactSink(sys.stdout)
    prometheus = PrometheusClient(args.prometheus, timeout=args.query_timeout)
    verifier = MirrorVerifier(
        facts,
        legacy_login=args.legacy_login,
        legacy_passcode_file=args.legacy_passcode_file,
        timeout=args.verify_timeout,
    )
    controller = RolloutController(
        target,
        prometheus.query,
        facts,
        dry_run=args.dry_run,
        retries=args.retries,
        verifier=verifier,
    )
    try:
        if args.once:
            try:
                controller.run_pass()
            except RoutesError as exc:
                print(f"strangler rollout: {exc}", file=sys.stderr)
                return EXIT_CONFIG
            except TargetError as exc:
                print(f"strangler rollout: {exc}", file=sys.stderr)
                return EXIT_FAILED
            return EXIT_OK
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread (tests)
                signal.signal(sig, lambda *_: stop.set())
        print(
            f"strangler rollout: {target.describe()}, Prometheus {prometheus.url}, "
            f"a pass every {args.interval:g}s" + (" (dry run)" if args.dry_run else ""),
            file=sys.stderr,
            flush=True,
        )
        controller.run_forever(args.interval, stop)
        return EXIT_OK
    finally:
        facts.close()
