"""``strangler verify``: do both brokers hold the same messages of a mirrored destination?

Both queues are read without consuming (``backlog.browse``) and compared by message id
(trace id, else legacy message-id), in the order legacy, Amazon MQ, legacy again, so that
traffic flowing while verify runs is not reported:
- missing: on legacy at the first browse and not on Amazon MQ, browsed after it (the
  proxy sends the mirror copy as it sends the original): a lost mirror copy
  (``message_mirror_failed`` in the proxy's facts names why);
- extra: on Amazon MQ and on legacy at neither browse: consumed on legacy already (normal
  while legacy's consumers run, hence ``--allow-extra``), or sent to Amazon MQ alone;
- duplicated: held on both, but more times on Amazon MQ than on legacy (a resent copy).

``compare`` is pure; ``verify`` does the I/O and writes ``verify_finished``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..facts import Fact, FactSink
from ..routes import AMAZONMQ, LEGACY
from .backlog import Backlog
from .brokers import Target

FACT_IDS: Final = 1000  # ids listed per kind in the fact; the counts are always exact


@dataclass(frozen=True, slots=True)
class Comparison:
    missing: list[str]  # on legacy, not on Amazon MQ
    extra: list[str]  # on Amazon MQ, not on legacy
    duplicated: dict[str, int]  # id -> copies on Amazon MQ beyond legacy's

    def matches(self, *, allow_extra: bool = False) -> bool:
        return not self.missing and not self.duplicated and (allow_extra or not self.extra)


def compare(
    legacy_before: Counter[str], amazonmq: Counter[str], legacy_after: Counter[str]
) -> Comparison:
    missing = sorted(key for key in legacy_before if key not in amazonmq)
    extra, duplicated = [], {}
    for key, copies in amazonmq.items():
        on_legacy = max(legacy_before[key], legacy_after[key])
        if on_legacy == 0:
            extra.append(key)
        elif copies > on_legacy:
            duplicated[key] = copies - on_legacy
    return Comparison(missing, sorted(extra), dict(sorted(duplicated.items())))


@dataclass(frozen=True, slots=True)
class Verification:
    target: Target
    legacy: Backlog  # the first browse
    legacy_after: Backlog
    amazonmq: Backlog
    comparison: Comparison
    allow_extra: bool

    @property
    def matches(self) -> bool:
        return self.comparison.matches(allow_extra=self.allow_extra)

    def fact_fields(self) -> dict[str, Any]:
        c = self.comparison
        return {
            **self.target.described,
            "legacy_messages": self.legacy.count,
            "legacy_messages_after": self.legacy_after.count,
            "amazonmq_messages": self.amazonmq.count,
            "missing": len(c.missing),
            "extra": len(c.extra),
            "duplicated": len(c.duplicated),
            "missing_trace_ids": c.missing[:FACT_IDS],
            "extra_trace_ids": c.extra[:FACT_IDS],
            "duplicated_trace_ids": list(c.duplicated)[:FACT_IDS],
            "allow_extra": self.allow_extra,
            "match": self.matches,
        }

    def render(self, examples: int) -> str:
        t, c = self.target, self.comparison
        lines = [
            f"verify {t.destination} (legacy) against {t.amazonmq_destination} (amazonmq), "
            f"route {t.rule} ({t.mode})",
            f"  legacy:   {self.legacy.count} messages "
            f"({self.legacy_after.count} when browsed again after Amazon MQ)",
            f"  amazonmq: {self.amazonmq.count} messages",
        ]
        for label, ids in (
            ("missing on amazonmq", c.missing),
            ("extra on amazonmq", c.extra),
            ("duplicated on amazonmq", list(c.duplicated)),
        ):
            shown = ", ".join(ids[:examples]) + (", ..." if len(ids) > examples else "")
            lines.append(f"  {label}: {len(ids)}" + (f"  ({shown})" if ids else ""))
        if c.extra and self.allow_extra:
            lines.append("  (extra allowed: --allow-extra)")
        lines.append("result: " + ("match" if self.matches else "MISMATCH"))
        return "\n".join(lines)


def verify(
    target: Target,
    read: Callable[[str, str], Backlog],
    facts: FactSink,
    *,
    allow_extra: bool = False,
) -> Verification:
    """Browse legacy, Amazon MQ, legacy again (``read(broker, destination)``); compare."""
    legacy = read(LEGACY, target.destination)
    amazonmq = read(AMAZONMQ, target.amazonmq_destination)
    legacy_after = read(LEGACY, target.destination)
    comparison = compare(legacy.keys, amazonmq.keys, legacy_after.keys)
    result = Verification(target, legacy, legacy_after, amazonmq, comparison, allow_extra)
    facts.emit(Fact.VERIFY_FINISHED, **result.fact_fields())
    return result
