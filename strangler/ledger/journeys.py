"""One message's journey through the proxy, judged against the promise, fact by fact.

A message (one ``message_routed``, one trace id) has up to two *legs*:
- the primary leg, towards the broker responsible for it (``primary``): it ends
  ``confirmed`` (that broker's receipt), ``forwarded`` (legacy, and the producer asked
  for no receipt: there is nothing to confirm), ``fell_back`` (Amazon MQ failed; sent
  to legacy instead, whose receipt then follows when the producer asked for one),
  ``rejected`` (the producer got an ERROR), ``closed`` (the connection closed before a
  confirmation: the producer got no receipt, and resends), or ``aborted`` (its
  transaction was aborted);
- the mirror leg (a ``mirror`` route's copy to Amazon MQ): ``mirrored`` or
  ``mirror_failed``.

Invariants (what ``Journey.apply`` enforces, returning a violation's text):
- every outcome fact answers a leg that was waiting for it: a second confirmation, a
  confirmation by a broker the message was not waiting for, an outcome after the leg
  ended, are violations;
- inside a transaction, Amazon MQ's part can be lost after it confirmed a frame (its
  COMMIT failed, its connection dropped): a ``message_fell_back`` / ``message_rejected``
  (or ``message_mirror_failed``) after that confirmation is the transaction's story,
  not a violation, so a transaction's messages are settled only when it ends;
- ``possibly_stored: true`` on an outcome, and ``message_resent``, mark the message *in
  doubt* on that broker: a copy may be there that the outcome does not count (a
  duplicate the facts explain). An outcome without the field (written by a proxy older
  than it) did not say, and counts as in doubt.
"""

from __future__ import annotations

from typing import Any, Final

Signature = tuple[
    str, str, str, str | None, str, bool, str, str | None, str, bool, tuple[str, ...], bool, bool
]

LEGACY: Final = "legacy"
AMAZONMQ: Final = "amazonmq"

# Primary leg outcomes.
CONFIRMED: Final = "confirmed"
FORWARDED: Final = "forwarded"
FELL_BACK: Final = "fell_back"
REJECTED: Final = "rejected"
CLOSED: Final = "closed"
ABORTED: Final = "aborted"
UNRESOLVED: Final = "unresolved"  # still open when the input ended: lost with the proxy
MISSING: Final = "missing"  # no outcome though its session ended: a violation
# Mirror leg states.
PENDING: Final = "pending"
MIRRORED: Final = "mirrored"
MIRROR_FAILED: Final = "mirror_failed"
MIRROR_MISSING: Final = "mirror_missing"


class Journey:
    """What the facts say so far about one message (kept while it is open only)."""

    __slots__ = (
        "aborted",
        "amazonmq_confirmed",
        "in_doubt",
        "instance",
        "login",
        "mirror",
        "outcome",
        "owner",
        "partial",
        "primary",
        "receipt",
        "resent",
        "routed",
        "trace",
        "tx",
        "tx_open",
        "unconfirmed",
        "waiting",
    )

    def __init__(
        self,
        routed: dict[str, Any],
        instance: str,
        login: str | None,
        owner: Any = None,
    ) -> None:
        # The message_routed fact itself is kept (no copy of its fields): most messages
        # settle within a few facts, and what a report shows of one is read from it.
        self.routed = routed
        self.trace: str = routed["trace_id"]
        self.instance = instance
        self.login = login
        self.owner = owner  # whoever holds it while it is open (the ledger's session)
        targets = routed.get("targets") or (LEGACY,)
        self.primary: str = routed.get("primary") or targets[0]
        self.receipt = routed.get("receipt") is True
        self.tx: str | None = routed.get("transaction")
        self.tx_open = self.tx is not None
        self.aborted = False
        self.partial = False  # its transaction committed on Amazon MQ only
        self.mirror: str | None = PENDING if len(targets) > 1 else None
        self.in_doubt: tuple[str, ...] = ()  # brokers that may hold an unaccounted copy
        self.resent = 0
        self.amazonmq_confirmed = False
        self.unconfirmed = False  # closed while legacy's receipt was due
        if self.primary == AMAZONMQ:
            self.outcome: str | None = None
            self.waiting: str | None = AMAZONMQ
        elif self.receipt:
            self.outcome, self.waiting = None, LEGACY
        else:
            self.outcome, self.waiting = FORWARDED, None

    # What message_routed said.
    @property
    def rule(self) -> str:
        return str(self.routed.get("rule") or "default")

    @property
    def mode(self) -> str:
        return str(self.routed.get("mode") or "")

    @property
    def version(self) -> str:
        return str(self.routed.get("routes_version") or "?")

    @property
    def destination(self) -> str:
        return str(self.routed.get("destination") or "")

    @property
    def ts(self) -> str:
        return str(self.routed.get("ts") or "")

    @property
    def session(self) -> str:
        return str(self.routed.get("session") or "?")

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.routed.get("targets") or (LEGACY,))

    @property
    def producer_trace_id(self) -> str | None:
        value = self.routed.get("producer_trace_id")
        return value if isinstance(value, str) else None

    @property
    def traceparent(self) -> str | None:
        value = self.routed.get("traceparent")
        return value if isinstance(value, str) else None

    @property
    def settled(self) -> bool:
        """Every leg has its outcome (a transaction's messages wait for it to end)."""
        return self.waiting is None and self.mirror != PENDING and not self.tx_open

    def doubt(self, broker: str) -> None:
        if broker not in self.in_doubt:
            self.in_doubt = (*self.in_doubt, broker)

    # -- outcome facts --------------------------------------------------------------------

    def confirmed(self, fact: dict[str, Any]) -> str | None:
        broker = fact.get("broker") or LEGACY
        role = fact.get("role") or (
            "mirror" if broker == AMAZONMQ and self.mirror is not None else "primary"
        )
        if role == "mirror":
            if self.mirror == PENDING:
                self.mirror = MIRRORED
                return None
            if self.mirror is None:
                return f"a mirror copy confirmed by {broker}, but it was routed to {self._where}"
            if self.mirror == MIRROR_FAILED and self.tx is not None:
                return None  # the failure was the transaction's, reported at its end
            return f"its mirror copy confirmed again by {broker} (already {self.mirror})"
        if self.waiting == broker:
            if self.outcome is None:
                self.outcome = CONFIRMED
            self.waiting = None
            if broker == AMAZONMQ:
                self.amazonmq_confirmed = True
            return None
        if self.outcome == CONFIRMED and (self.primary == broker or self.amazonmq_confirmed):
            return f"confirmed twice by {broker}"
        return (
            f"confirmed by {broker}, which it was not waiting for (routed to {self._where}, "
            f"primary {self.primary}, {self._state})"
        )

    def fell_back(self, fact: dict[str, Any]) -> str | None:
        if self.possibly_stored(fact):
            self.doubt(AMAZONMQ)
        if self.waiting == AMAZONMQ or (self._tx_part_lost() and self.outcome == CONFIRMED):
            self.outcome = FELL_BACK
            receipt = fact.get("receipt")
            if receipt is None:  # facts before the field: the frame went with its receipt
                receipt = self.receipt and not self.amazonmq_confirmed
            self.waiting = LEGACY if receipt else None
            return None
        return f"fell back to legacy, but {self._state}"

    def rejected(self, fact: dict[str, Any]) -> str | None:
        broker = fact.get("broker") or AMAZONMQ
        if self.possibly_stored(fact):
            self.doubt(broker)
        if broker == LEGACY and self.waiting == LEGACY:  # legacy's ERROR for the SEND
            self.outcome, self.waiting = REJECTED, None
            return None
        if self.waiting == AMAZONMQ or (self._tx_part_lost() and self.outcome == CONFIRMED):
            self.outcome, self.waiting = REJECTED, None
            return None
        return f"rejected, but {self._state}"

    def mirror_failed(self, fact: dict[str, Any]) -> str | None:
        if self.possibly_stored(fact):
            self.doubt(AMAZONMQ)
        if self.mirror == PENDING or (self.mirror == MIRRORED and self.tx is not None):
            self.mirror = MIRROR_FAILED
            return None
        if self.mirror is None:
            return f"a mirror copy failed, but it was routed to {self._where}"
        return f"its mirror copy failed again (already {self.mirror})"

    def left_unconfirmed(self, fact: dict[str, Any]) -> str | None:
        """The session ended before the broker it waited for confirmed it: the producer
        got no receipt (it resends); the message may be stored there all the same."""
        broker = fact.get("broker") or LEGACY
        if self.waiting != broker:
            return f"unconfirmed by {broker}, but {self._state}"
        if self.outcome is None:
            self.outcome = CLOSED
        self.unconfirmed = True
        self.waiting = None
        self.doubt(broker)
        return None

    def resent_to(self, fact: dict[str, Any]) -> str | None:
        self.resent += 1
        self.doubt(fact.get("broker") or AMAZONMQ)
        return None

    @staticmethod
    def possibly_stored(fact: dict[str, Any]) -> bool:
        """The outcome says the frame may be stored all the same; a proxy older than the
        field did not say, so its outcomes count as in doubt too."""
        return fact.get("possibly_stored", True) is not False

    # -- endings without an outcome fact --------------------------------------------------

    def session_ended(self, reason: str | None) -> str | None:
        """Its session closed (or its proxy stopped) with legs still open: legacy's receipt
        may be cut off by a closing connection (the producer got none); anything else
        owed an outcome fact. Returns the violation, if any."""
        problems = []
        self.tx_open = False
        if self.aborted:  # nothing of it is stored, whatever was still due
            self.waiting = None
            self.mirror = None
            return None
        if self.waiting == LEGACY:
            if reason == "client DISCONNECT" and self.outcome is None:
                # Legacy answers in order: receipts before DISCONNECT's, which was forwarded.
                problems.append("legacy's receipt was due before the client's DISCONNECT")
            if self.outcome is None:
                self.outcome = CLOSED
            self.unconfirmed = True
            self.waiting = None
        elif self.waiting is not None:
            problems.append(f"no outcome from {self.waiting} though its session ended")
            self.outcome, self.waiting = MISSING, None
        if self.mirror == PENDING:
            problems.append("no outcome for its mirror copy though its session ended")
            self.mirror = MIRROR_MISSING
        return "; ".join(problems) or None

    def transaction_ended(self, *, aborted: bool = False, partial: bool = False) -> None:
        """Its transaction committed (on Amazon MQ only: ``partial``) or aborted; legs
        still due may yet be answered."""
        self.tx_open = False
        self.aborted = aborted
        self.partial = partial

    def finish(self) -> None:
        """Settled: an aborted transaction's message is stored nowhere."""
        if self.aborted:
            self.outcome, self.mirror = ABORTED, None

    # -- how it ended --------------------------------------------------------------------

    @property
    def where(self) -> str:
        """The broker(s) that hold the message by the facts: legacy, amazonmq, both, none."""
        outcome = self.outcome
        if outcome in (CONFIRMED, FORWARDED):
            primary_on: str | None = self.primary
        elif outcome == FELL_BACK:
            primary_on = LEGACY
        else:
            primary_on = None
        if self.partial and primary_on == LEGACY:  # legacy's part was never committed
            primary_on = None
        if self.mirror != MIRRORED:
            return primary_on or "none"
        return "both" if primary_on == LEGACY else AMAZONMQ

    def signature(self) -> Signature:
        """What the tallies count it by (messages with equal signatures are counted once,
        with their number): see ``tallies.Kind`` for the fields."""
        routed = self.routed
        return (
            routed.get("rule") or "default",
            routed.get("routes_version") or "?",
            routed.get("mode") or "",
            self.login,
            self.primary,
            self.receipt,
            UNRESOLVED if self.waiting is not None else self.outcome or UNRESOLVED,
            self.mirror,
            "unknown" if self.waiting is not None or self.mirror == PENDING else self.where,
            self.unconfirmed,
            self.in_doubt,
            self.resent > 0,
            self.partial,
        )

    @property
    def may_be_on(self) -> tuple[str, ...]:
        """The brokers an unresolved message may be on: its targets, legacy once it fell
        back, and any broker it is in doubt on."""
        brokers = list(self.targets)
        extra = [LEGACY] if self.outcome == FELL_BACK else []
        for broker in (*extra, *self.in_doubt):
            if broker not in brokers:
                brokers.append(broker)
        return tuple(brokers)

    def _tx_part_lost(self) -> bool:
        return self.amazonmq_confirmed and self.tx is not None

    @property
    def _where(self) -> str:
        return "+".join(self.targets)

    @property
    def _state(self) -> str:
        if self.waiting is not None:
            return f"it was waiting for {self.waiting}"
        return f"it was already {self.outcome}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trace_id": self.trace,
            "route": self.rule,
            "mode": self.mode,
            "routes_version": self.version,
            "destination": self.destination,
            "targets": list(self.targets),
            "primary": self.primary,
            "routed_at": self.ts,
            "instance": self.instance,
            "session": self.session,
            "login": self.login,
        }
        if self.tx is not None:
            out["transaction"] = self.tx
        if self.producer_trace_id is not None:
            out["producer_trace_id"] = self.producer_trace_id
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        return out


SETTLED: Final = "settled"  # ``settles_by``: by its message_routed alone
FOLLOWED: Final = ""  # ``settles_by``: a Journey follows it


def settles_by(routed: dict[str, Any]) -> str:
    """What will settle a message, judged from its ``message_routed``:

    - ``SETTLED``: nothing more (legacy, no receipt asked, no mirror copy, no transaction):
      most legacy traffic, counted at once (``forwarded``);
    - a broker's name: that broker's one confirmation (one target, no transaction, a
      confirmation due: legacy's receipt, or Amazon MQ's, which the proxy always asks
      for). The ledger holds such a *plain* message as its fact alone and makes a
      ``Journey`` of it only when anything but that confirmation comes
      (``plainly_confirmed``);
    - ``FOLLOWED``: a ``Journey`` follows it from the start.
    """
    if routed["transaction"] is not None or len(routed["targets"]) != 1:
        return FOLLOWED
    primary = routed["primary"]
    if primary == AMAZONMQ:
        return AMAZONMQ
    if primary == LEGACY:
        return LEGACY if routed["receipt"] is True else SETTLED
    return FOLLOWED


def forwarded(routed: dict[str, Any], login: str | None) -> Signature:
    """The signature of a message ``settles_by`` says is ``SETTLED``."""
    return (
        routed["rule"],
        routed["routes_version"],
        routed["mode"],
        login,
        LEGACY,
        False,
        FORWARDED,
        None,
        LEGACY,
        False,
        (),
        False,
        False,
    )


def plainly_confirmed(routed: dict[str, Any], login: str | None) -> Signature:
    """The signature of a plain message (``settles_by``) confirmed by its broker."""
    primary = routed["primary"]
    return (
        routed["rule"],
        routed["routes_version"],
        routed["mode"],
        login,
        primary,
        routed["receipt"] is True,
        CONFIRMED,
        None,
        primary,
        False,
        (),
        False,
        False,
    )


# The method that takes each outcome fact (a violation's text, or None).
OUTCOMES: Final = {
    "message_confirmed": Journey.confirmed,
    "message_fell_back": Journey.fell_back,
    "message_rejected": Journey.rejected,
    "message_mirror_failed": Journey.mirror_failed,
    "message_unconfirmed": Journey.left_unconfirmed,
    "message_resent": Journey.resent_to,
}
