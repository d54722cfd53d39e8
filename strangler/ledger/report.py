"""``strangler audit``'s output: a text report for people, a JSON document for machines.

Invariants: both are built from the same ``Book`` and ``InputStats`` and say the same
things; rows are sorted (routes by name then first use of the version, logins by name),
so two audits of the same input print the same report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .journeys import AMAZONMQ, LEGACY, Journey
from .streams import InputStats
from .tallies import Book, Tally, Violation

_OUTCOME_COLUMNS = (
    ("messages", "messages"),
    ("confirmed", "confirmed"),
    ("forwarded", "no receipt"),
    ("fell_back", "fell back"),
    ("rejected", "rejected"),
    ("closed", "closed"),
    ("aborted", "aborted"),
    ("missing", "missing"),
    ("unresolved", "unresolved"),
)
_MIRROR_COLUMNS = (
    ("mirrored", "mirrored"),
    ("mirror_failed", "mirror failed"),
    ("mirror_lost", "mirror lost"),
    ("mirror_missing", "mirror missing"),
)
_WHERE_COLUMNS = (
    ("on_legacy", LEGACY),
    ("on_amazonmq", AMAZONMQ),
    ("on_both", "both"),
    ("on_none", "none"),
    ("on_unknown", "unknown"),
)


def as_json(book: Book, stats: InputStats, filters: dict[str, Any]) -> dict[str, Any]:
    return {
        "promise": "holds" if book.holds else "broken",
        "input": stats.as_dict(),
        "filters": filters,
        "messages": book.messages,
        "violations": {
            "count": book.violation_count,
            "listed": [v.as_dict() for v in book.violations],
        },
        "unresolved": {
            "count": len(book.unresolved),
            "messages": [_unresolved(j) for j in book.unresolved],
        },
        "in_doubt": {
            "count": book.in_doubt_count,
            "messages": [d.as_dict() for d in book.in_doubt],
        },
        "unjudged": [v.as_dict() for v in book.unjudged],
        "routes": [
            {"route": rule, "routes_version": version, "mode": tally.mode, **tally.as_dict()}
            for (rule, version), tally in book.routes.items()
        ],
        "logins": [{"login": login, **tally.as_dict()} for login, tally in book.logins.items()],
        "brokers": [{"broker": name, **tally.as_dict()} for name, tally in book.brokers.items()],
        "routes_versions": [window.as_dict() for window in book.versions.values()],
        "instances": book.instances,
    }


def _unresolved(j: Journey) -> dict[str, Any]:
    return {
        **j.describe(),
        "lost_with_the_proxy": True,
        "waiting_for": [b for b in (j.waiting,) if b is not None]
        + ([AMAZONMQ + " (mirror)"] if j.mirror == "pending" else []),
        "may_be_on": list(j.may_be_on),
        "in_doubt": list(j.in_doubt),
    }


def render(book: Book, stats: InputStats, *, examples: int = 20) -> str:
    lines = [_headline(book, stats), ""]
    if book.routes:
        lines.append("Outcomes per route and routes version (messages routed):")
        lines += _indent(
            _table(
                ("route", "version", "mode", *(label for _, label in _OUTCOME_COLUMNS)),
                [
                    (rule, version, tally.mode, *_numbers(tally, _OUTCOME_COLUMNS))
                    for (rule, version), tally in book.routes.items()
                ],
            )
        )
        mirrored = [
            (k, t) for k, t in book.routes.items() if any(t.get(c) for c, _ in _MIRROR_COLUMNS)
        ]
        if mirrored:
            lines += ["", "Mirror copies to Amazon MQ:"]
            lines += _indent(
                _table(
                    ("route", "version", *(label for _, label in _MIRROR_COLUMNS)),
                    [(r, v, *_numbers(t, _MIRROR_COLUMNS)) for (r, v), t in mirrored],
                )
            )
        lines += ["", "Where the messages are, by the facts:"]
        lines += _indent(
            _table(
                ("route", "version", *(label for _, label in _WHERE_COLUMNS), "in doubt"),
                [
                    (rule, version, *_numbers(t, _WHERE_COLUMNS), str(t.get("in_doubt")))
                    for (rule, version), t in book.routes.items()
                ],
            )
        )
        lines += ["", "Per producer login (the login it gave legacy):"]
        lines += _indent(
            _table(
                ("login", "messages", *(label for _, label in _WHERE_COLUMNS), "rejected"),
                [
                    (
                        login,
                        str(t.get("messages")),
                        *_numbers(t, _WHERE_COLUMNS),
                        str(t.get("rejected")),
                    )
                    for login, t in book.logins.items()
                ],
            )
        )
        lines += ["", "Per broker:"]
        lines += _indent(
            _table(
                (
                    "broker",
                    "holds",
                    "confirmed",
                    "mirrored",
                    "no receipt",
                    "failed",
                    "in doubt",
                    "resent",
                ),
                [
                    (
                        name,
                        *(
                            str(n)
                            for n in (
                                b.held,
                                b.confirmed,
                                b.mirrored,
                                b.forwarded,
                                b.failed,
                                b.in_doubt,
                                b.resent,
                            )
                        ),
                    )
                    for name, b in book.brokers.items()
                ],
            )
        )
    if book.versions:
        lines += ["", "Routes versions in force:"]
        lines += _indent(
            _table(
                ("version", "since", "until", "replicas", "replica-seconds", "messages"),
                [
                    (
                        w.version,
                        w.since,
                        w.until,
                        str(len(w.instances)),
                        f"{w.seconds:.1f}",
                        str(w.messages),
                    )
                    for w in book.versions.values()
                ],
            )
        )
    lines += _unresolved_lines(book, examples)
    if book.in_doubt_count:
        lines += [
            "",
            f"In doubt: {book.in_doubt_count} messages may hold a copy their outcome does not "
            "count (possibly_stored: the frame reached Amazon MQ, no answer came; or "
            "message_resent): duplicates the facts explain",
        ]
        lines += [
            f"  {d.trace_id}  route {d.route}  {d.outcome}"
            + (f", mirror {d.mirror}" if d.mirror else "")
            + f"  maybe also on {'+'.join(d.brokers) or AMAZONMQ}"
            + (f" (resent {d.resent}x)" if d.resent else "")
            for d in book.in_doubt[:examples]
        ]
        if book.in_doubt_count > examples:
            lines.append(f"  ... and {book.in_doubt_count - examples} more (--json lists them)")
    if book.unjudged:
        lines += [
            "",
            f"Unjudged (facts were dropped, so these cannot be told): {len(book.unjudged)}",
        ]
        lines += [_violation_line(v) for v in book.unjudged[:examples]]
    lines += _notes(book, stats)
    if book.violation_count:
        lines += ["", f"Violations of the promise: {book.violation_count}"]
        lines += [_violation_line(v) for v in book.violations[:examples]]
        if book.violation_count > examples:
            lines.append(f"  ... and {book.violation_count - examples} more (--json lists them)")
    lines += ["", "result: " + ("the promise holds" if book.holds else "the promise is BROKEN")]
    return "\n".join(lines)


def _headline(book: Book, stats: InputStats) -> str:
    files = len(stats.files)
    return (
        f"strangler audit: {files} file{'s' if files != 1 else ''}, {stats.replicas} "
        f"replica{'s' if stats.replicas != 1 else ''} ({stats.instances} "
        f"run{'s' if stats.instances != 1 else ''}), {stats.facts:,} facts, "
        f"{book.messages:,} messages; {book.violation_count} violations, "
        f"{len(book.unresolved)} unresolved, {book.in_doubt_count} in doubt"
    )


def _unresolved_lines(book: Book, examples: int) -> list[str]:
    if not book.unresolved:
        return []
    lines = [
        "",
        f"Unresolved: {len(book.unresolved)} messages have no outcome: their proxy wrote no "
        "proxy_stopped and their session never ended. Lost with the proxy (it was killed with "
        "them in memory; a producer that asked for a receipt got none and resends), or the "
        "proxy is still running.",
    ]
    by_session: dict[tuple[str, str], list[Journey]] = {}
    for j in book.unresolved:
        by_session.setdefault((j.instance, j.session), []).append(j)
    shown = 0
    for (instance, session), journeys in by_session.items():
        if shown >= examples:
            break
        login = journeys[0].login or "?"
        lines.append(f"  {instance} session {session} (login {login}): {len(journeys)}")
        for j in journeys[: max(1, examples - shown)]:
            waiting = [b for b in (j.waiting,) if b is not None]
            if j.mirror == "pending":
                waiting.append("amazonmq mirror copy")
            lines.append(
                f"    {j.trace}  {j.rule}  {j.destination}  routed {j.ts}  waiting for "
                f"{', '.join(waiting)}; may be on {'+'.join(j.may_be_on)}"
            )
            shown += 1
    if len(book.unresolved) > shown:
        lines.append(f"  ... and {len(book.unresolved) - shown} more (--json lists them)")
    return lines


def _notes(book: Book, stats: InputStats) -> list[str]:
    notes = []
    if stats.text_lines:
        notes.append(
            f"{stats.text_lines} lines of plain text skipped (not facts), the first at "
            f"{stats.first_text_line}"
        )
    for cut in stats.cut_lines:
        notes.append(f"{cut}: the last line was cut short (a proxy killed while writing it)")
    for inst in book.instances:
        if inst["facts_dropped"]:
            notes.append(f"{inst['instance']}: the proxy dropped {inst['facts_dropped']} facts")
        if inst["internal_errors"]:
            notes.append(
                f"{inst['instance']}: {inst['internal_errors']} internal errors (each session's "
                "pending frames were resolved by on_failure; see internal_error)"
            )
    if book.settled_held > 100_000:
        notes.append(f"{book.settled_held} settled trace ids held out of order")
    return ["", *(f"note: {n}" for n in notes)] if notes else []


def _violation_line(v: Violation) -> str:
    where = f" (route {v.route}, {v.instance} session {v.session})" if v.route else ""
    return f"  {v.where}: {v.trace_id}: {v.problem}{where}"


def _numbers(tally: Tally, columns: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(str(tally.get(key)) for key, _ in columns)


def _indent(lines: list[str]) -> list[str]:
    return [f"  {line}" for line in lines]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text columns: text left-aligned, numbers right-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    numeric = [
        bool(rows) and all(row[i].replace(".", "").isdigit() for row in rows)
        for i in range(len(header))
    ]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [line(header), *(line(row) for row in rows)]
