"""What the facts say about one mirror route's copies: ``strangler verify --proxy-facts``.

Verify compares what the brokers hold; the facts explain the differences it finds:
- a copy *in doubt* (an outcome with ``possibly_stored: true``, or ``message_resent``)
  may be on Amazon MQ more often than on legacy: a duplicate the facts explain;
- a copy that failed (``message_mirror_failed``) is missing for a recorded reason;
- a copy *lost with the proxy*: routed, and no outcome ever written (its proxy was
  killed with the copy in memory; the audit lists it as unresolved).

Invariant: read through the ledger (``book.Ledger``), so verify and audit judge each
message by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO

from .book import Ledger
from .journeys import MIRROR_FAILED, PENDING, Journey
from .streams import FactReader


@dataclass(slots=True)
class CopyFacts:
    files: list[str]
    routed: int = 0  # messages of the route in the facts
    in_doubt: set[str] = field(default_factory=set)
    mirror_failed: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)  # lost with the proxy
    violations: int = 0  # the audit's violations for this route (run `strangler audit`)

    def add(self, j: Journey) -> None:
        if j.in_doubt or j.resent:
            self.in_doubt.add(j.trace)
        if j.mirror == MIRROR_FAILED:
            self.mirror_failed.add(j.trace)
        elif j.mirror == PENDING:
            self.lost.add(j.trace)


def read_copies(paths: list[str], route: str, *, stdin: IO[bytes] | None = None) -> CopyFacts:
    """The copies of ``route``'s messages as the facts in ``paths`` tell (InputError)."""
    reader = FactReader(paths, stdin=stdin)
    copies = CopyFacts(files=list(paths))
    ledger = Ledger(
        routes=frozenset({route}), where=lambda: str(reader.position), on_settled=copies.add
    )
    reader.read(ledger)
    book = ledger.close()
    for j in book.unresolved:
        copies.add(j)
    copies.routed = book.messages
    copies.violations = book.violation_count
    return copies
