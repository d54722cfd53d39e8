"""Client receipts in the order the client's frames were handled, whoever answers them.

A broker answers a connection's frames in order, so a client may take a RECEIPT as
saying every earlier frame was handled. Through the proxy two brokers answer: legacy's
RECEIPT for a later frame can come before Amazon MQ confirms an earlier one (a split
route), and a SUBSCRIBE that opens a side on each broker is answered by legacy before
Amazon MQ has the subscription (a message sent right after it would miss Amazon MQ's
side). So while a receipt that Amazon MQ (or both brokers) must answer is owed, every
client receipt is released in frame order, each once all its brokers answered.

Invariants:
- idle (nothing owed) costs one check per legacy RECEIPT: receipts pass as legacy wrote
  them; a receipt noted while idle is older than everything owed later, so it passes too;
- an owed receipt leaves once every broker it waits for answered and every receipt owed
  before it left; a dropped one (its message was rejected: the client gets an ERROR
  instead) stops holding the others.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Owed:
    receipt: str
    waiting: set[str]  # the brokers that have not answered yet
    frame: bytes | None = None  # the RECEIPT the client gets (without its EOL)


class ReceiptOrder:
    __slots__ = ("_by_legacy", "_ids", "_owed", "_seq")

    def __init__(self) -> None:
        self._owed: OrderedDict[int, _Owed] = OrderedDict()
        self._by_legacy: dict[str, int] = {}  # receipt id legacy will answer -> its place
        self._ids: set[str] = set()  # the receipt ids owed
        self._seq = 0

    @property
    def active(self) -> bool:
        return bool(self._owed)

    def expect(self, receipt: str, *brokers: str) -> int:
        """A client receipt ``brokers`` must answer (legacy first among them answers with
        its own RECEIPT); its place in the order."""
        self._seq += 1
        self._owed[self._seq] = _Owed(receipt, set(brokers))
        self._ids.add(receipt)
        if "legacy" in brokers:
            self._by_legacy[receipt] = self._seq
        return self._seq

    def note_legacy(self, receipt: str | None) -> None:
        """A frame legacy alone answers: ordered only behind what is owed now."""
        if receipt is not None and self._owed and receipt not in self._ids:
            self.expect(receipt, "legacy")

    def from_legacy(self, receipt: str, frame: bytes) -> list[bytes] | None:
        """Legacy's RECEIPT ``frame`` (without EOL): None when the client gets it as it
        is, now; else the receipts to give the client now, in order (maybe none)."""
        seq = self._by_legacy.pop(receipt, None)
        if seq is None:
            return None
        owed = self._owed.get(seq)
        if owed is None:
            return None
        owed.waiting.discard("legacy")
        owed.frame = frame
        return self._release()

    def answered(self, seq: int, broker: str, frame: bytes | None = None) -> list[bytes]:
        """``broker`` answered the receipt at ``seq`` (``frame``: the RECEIPT the proxy
        makes for it); the receipts to give the client now, in order."""
        owed = self._owed.get(seq)
        if owed is None:
            return []
        owed.waiting.discard(broker)
        if frame is not None and owed.frame is None:
            owed.frame = frame
        return self._release()

    def to_legacy(self, seq: int) -> None:
        """The message at ``seq`` fell back: legacy answers its receipt now."""
        owed = self._owed.get(seq)
        if owed is not None:
            owed.waiting = {"legacy"}
            self._by_legacy[owed.receipt] = seq

    def drop(self, seq: int) -> list[bytes]:
        """No receipt will come for ``seq`` (its message was refused)."""
        owed = self._owed.pop(seq, None)
        if owed is not None:
            self._by_legacy.pop(owed.receipt, None)
            self._ids.discard(owed.receipt)
        return self._release()

    def _release(self) -> list[bytes]:
        out: list[bytes] = []
        owed = self._owed
        while owed:
            seq, first = next(iter(owed.items()))
            if first.waiting:
                break
            del owed[seq]
            self._ids.discard(first.receipt)
            if first.frame is not None:
                out.append(first.frame)
        return out
