"""Command-line wiring of ``strangler audit``.

Exit codes: 0 the promise holds (unresolved messages of a killed proxy do not break
it: they are listed), 1 it is broken (each violation listed with its trace id and the
file:line that showed it; ``--trace``: no fact names the id, or its message broke the
promise), 2 unreadable input (the file and line) or a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

from .book import Ledger
from .report import as_json, render
from .streams import EachFact, FactConsumer, FactReader, InputError
from .trace import Tracer

EXIT_OK: Final = 0
EXIT_BROKEN: Final = 1
EXIT_INPUT: Final = 2


def timestamp(text: str) -> str:
    """An ISO 8601 time (a date alone is its midnight; no zone is UTC) in the facts' form."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2025-03-01T22:00:00Z, got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")


def add_audit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser(
        "audit",
        allow_abbrev=False,
        help="prove from fact streams where every message went (exit 0 holds, 1 broken)",
        description=(
            "Read the facts of any number of proxies (files, rotated and .gz ones included, "
            "or - for standard input, e.g. `kubectl logs --prefix -l app=NAME | strangler "
            "audit -`) and check the promise per message: every message routed has exactly "
            "the outcomes its route owes, every mirror copy is confirmed or failed, every "
            "possible duplicate is explained, nothing is confirmed twice. Reports outcomes "
            "per route and routes version, producer login and broker; the messages left "
            "unresolved (lost with a proxy that was killed); and when each routes version "
            "was in force."
        ),
    )
    audit.add_argument(
        "files", nargs="+", metavar="FILE", help="facts files (JSON lines, .gz too); - reads stdin"
    )
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument(
        "--trace",
        metavar="ID",
        help="print one message's whole journey: strangler's trace id, a producer's own "
        "trace id, or a W3C trace id",
    )
    audit.add_argument(
        "--since", type=timestamp, metavar="TIME", help="only messages routed at or after TIME"
    )
    audit.add_argument(
        "--until", type=timestamp, metavar="TIME", help="only messages routed before TIME"
    )
    audit.add_argument(
        "--route",
        action="append",
        metavar="NAME",
        help="only messages of this route (repeatable; 'default' is the unrouted)",
    )
    audit.add_argument(
        "--examples",
        type=int,
        default=20,
        metavar="N",
        help="messages listed per kind in the text report (default %(default)s)",
    )
    audit.add_argument(
        "--no-progress", action="store_true", help="no progress line on stderr for long inputs"
    )
    audit.set_defaults(handler=run_audit)


def run_audit(args: argparse.Namespace, stdin: IO[bytes] | None = None) -> int:
    reader = FactReader(args.files, stdin=stdin, progress=None if args.no_progress else sys.stderr)
    tracer = Tracer(args.trace, reader.position) if args.trace else None
    ledger = Ledger(
        routes=frozenset(args.route) if args.route else None,
        since=args.since,
        until=args.until,
        where=lambda: str(reader.position),
        on_settled=tracer.settled if tracer is not None else None,
    )
    consumer: FactConsumer = ledger
    if tracer is not None:

        def feed(fact: dict[str, Any], instance: str) -> None:
            tracer.see(fact, instance)
            ledger.feed(fact, instance)

        consumer = EachFact(feed)
    try:
        reader.read(consumer)
    except InputError as exc:
        print(f"strangler audit: {exc}", file=sys.stderr)
        return EXIT_INPUT
    book = ledger.close()
    if tracer is not None:
        if args.json:
            print(json.dumps(tracer.as_json(book), indent=2))
        else:
            print(tracer.render(book))
        broken = any(v["violations"] for v in tracer.verdicts(book).values())
        return EXIT_OK if tracer.traces and not broken else EXIT_BROKEN
    filters = {"routes": args.route, "since": args.since, "until": args.until}
    if args.json:
        print(json.dumps(as_json(book, reader.stats, filters), indent=2))
    else:
        print(render(book, reader.stats, examples=args.examples))
    return EXIT_OK if book.holds else EXIT_BROKEN
