"""What every ``strangler`` command shares: its exit codes, how it is given routes.yaml and
the argument types of its counts and rates (``positive_number``, ``positive_count``,
``count``).

Exit codes (docs/commands.md has the table with every command's cases):

- 0: done, nothing wrong (valid; no change; every check passed; counts equal; a match).
- 1: the command did its work and found a problem, or could not finish it: an invalid
  routes file for ``validate`` and ``plan`` (checking it is their work), a ``doctor``
  check that failed, a ``verify`` mismatch, a drain whose counts differ or that lost a
  broker, a replay a broker refused, an admin port ``status`` cannot reach, a
  ``rollout --once`` pass that could not run (its git working copy).
- 2: nothing was done: a usage or configuration error. Wrong flags (argparse's own 2),
  an unreadable or invalid routes.yaml for a command that uses it to do something else,
  a missing secret, a login a broker refused, a route that does not allow the command,
  an unreadable input file, a port in use.
- 3: ``plan`` only: both files are valid and routing changes (CI asks a human to look).
- 130: interrupted (Ctrl-C, or SIGTERM for drain and replay); rerun to continue.

routes.yaml: every command that reads one routes file takes ``--routes FILE``, default
``routes.yaml`` in the current folder; ``validate FILE`` (positional) keeps working.
``plan OLD NEW`` compares two files and names both.
"""

from __future__ import annotations

import argparse
from enum import IntEnum
from typing import Final

DEFAULT_ROUTES: Final = "routes.yaml"


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    CONFIG = 2
    CHANGES = 3
    INTERRUPTED = 130


def add_routes_option(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    """``--routes FILE`` (and, for ``validate``, the older positional ``FILE``)."""
    parser.add_argument(
        "--routes",
        metavar="FILE",
        default=None if positional else DEFAULT_ROUTES,
        help=f"the routes file (default ./{DEFAULT_ROUTES})",
    )
    if positional:
        parser.add_argument(
            "routes_file", nargs="?", metavar="FILE", help="the same as --routes FILE"
        )


def routes_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The routes file of a command parsed with ``add_routes_option(positional=True)``."""
    given = getattr(args, "routes_file", None)
    if given is not None and args.routes is not None and given != args.routes:
        parser.error(f"two routes files given: {given} and --routes {args.routes}; pass one")
    path: str = given or args.routes or DEFAULT_ROUTES
    return path


def positive_number(text: str) -> float:
    """An argparse type: a number above 0 (a rate, a timeout)."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def batch_milliseconds(text: str) -> float:
    """An argparse type: milliseconds from 0 to 1000 (how long a batch may wait)."""
    value = float(text)
    if not 0 <= value <= 1000:  # also refuses nan
        raise argparse.ArgumentTypeError("must be from 0 to 1000 (milliseconds)")
    return value


def positive_count(text: str) -> int:
    """An argparse type: a whole number from 1 (a window, a maximum)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def count(text: str) -> int:
    """An argparse type: a whole number from 0 (retries)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value
