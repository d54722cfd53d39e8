"""Command-line wiring of ``strangler rollout``.

Facts go to stdout (or ``--facts FILE``), as with ``strangler run``; one line per
decision for people goes to stderr.

Exit codes: 0 the pass(es) ran (whatever they decided), 1 the routes file could not be
read or written, or a git working copy is not usable, 2 a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any, Final

from ..facts import FactSink
from ..routes import RoutesError
from ..routes.rollout import parse_duration
from .controller import RolloutController
from .prometheus import PrometheusClient
from .targets import FileTarget, GitTarget, Target, TargetError

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1


def _seconds(text: str) -> float:
    duration = parse_duration(text)
    if duration is None or duration.seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 500ms, 30s or 1m, got {text!r}")
    return duration.seconds


def add_rollout_command(commands: Any) -> None:
    rollout = commands.add_parser(
        "rollout",
        help="step split routes' weights up as their rollout plans say, gated by Prometheus",
        description=(
            "One controller for the fleet: every --interval it measures each rolling "
            "route's gates in Prometheus and advances, holds or rolls back its weight by "
            "writing the routes file the proxies watch (or committing and pushing it, "
            "with --git). It keeps no state of its own: restart it at any time."
        ),
    )
    rollout.add_argument("--routes", required=True, help="the routes.yaml the proxies load")
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
        type=int,
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
    rollout.set_defaults(handler=run_rollout)


def run_rollout(args: argparse.Namespace) -> int:
    try:
        target: Target = (
            GitTarget(args.routes, args.git_remote, args.git_branch)
            if args.git
            else FileTarget(args.routes)
        )
    except TargetError as exc:
        print(f"strangler rollout: {exc}", file=sys.stderr)
        return EXIT_FAILED
    facts = FactSink(path=args.facts) if args.facts else FactSink(sys.stdout)
    prometheus = PrometheusClient(args.prometheus, timeout=args.query_timeout)
    controller = RolloutController(
        target, prometheus.query, facts, dry_run=args.dry_run, retries=args.retries
    )
    try:
        if args.once:
            try:
                controller.run_pass()
            except (RoutesError, TargetError) as exc:
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
