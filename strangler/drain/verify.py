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

With the proxies' facts (``--proxy-facts``, read through ``strangler.ledger``) each
difference is explained where the facts can: a missing copy by ``message_mirror_failed``
or as *lost with the proxy* (routed, never given an outcome: the proxy was killed with
the copy in memory, which a crash can do to any copy not yet confirmed); a duplicate by
an outcome with ``possibly_stored: true`` or by ``message_resent``. An explained
duplicate is not a mismatch (the copy is there; the facts said it might be twice); a
missing copy always is, explained or not (it is not on Amazon MQ).

``compare`` is pure; ``verify`` does the I/O and writes ``verify_finished``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ..facts import Fact, FactSink
from ..ledger.copies import CopyFacts
from ..routes import AMAZONMQ, LEGACY
from .backlog import Backlog
from .brokers import Target

FACT_IDS: Final = 1000  # ids listed per kind in the fact; the counts are always exact


@dataclass(frozen=True, slots=True)
class Comparison:
    missing: list[str]  # on legacy, not on Amazon MQ
    extra: list[str]  # on Amazon MQ, not on legacy
    duplicated: dict[str, int]  # id -> copies on Amazon MQ beyond legacy's
    # With the proxies' facts: the differences they explain.
    facts: CopyFacts | None = None
    missing_failed: list[str] = field(default_factory=list)  # message_mirror_failed
    missing_lost: list[str] = field(default_factory=list)  # lost with the proxy
    duplicated_in_doubt: list[str] = field(default_factory=list)  # possibly_stored, resent

    @property
    def unexplained_duplicates(self) -> list[str]:
        explained = set(self.duplicated_in_doubt)
        return [key for key in self.duplicated if key not in explained]

    def matches(self, *, allow_extra: bool = False) -> bool:
        return (
            not self.missing and not self.unexplained_duplicates and (allow_extra or not self.extra)
        )


def compare(
    legacy_before: Counter[str],
    amazonmq: Counter[str],
    legacy_after: Counter[str],
    facts: CopyFacts | None = None,
) -> Comparison:
    missing = sorted(key for key in legacy_before if key not in amazonmq)
    extra, duplicated = [], {}
    for key, copies in amazonmq.items():
        on_legacy = max(legacy_before[key], legacy_after[key])
        if on_legacy == 0:
            extra.append(key)
        elif copies > on_legacy:
            duplicated[key] = copies - on_legacy
    duplicated = dict(sorted(duplicated.items()))
    if facts is None:
        return Comparison(missing, sorted(extra), duplicated)
    return Comparison(
        missing,
        sorted(extra),
        duplicated,
        facts,
        missing_failed=[key for key in missing if key in facts.mirror_failed],
        missing_lost=[key for key in missing if key in facts.lost],
        duplicated_in_doubt=[key for key in duplicated if key in facts.in_doubt],
    )


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
            **self._explained_fields(),
        }

    def _explained_fields(self) -> dict[str, Any]:
        c = self.comparison
        if c.facts is None:
            return {}
        return {
            "proxy_facts": c.facts.files,
            "missing_mirror_failed": len(c.missing_failed),
            "missing_lost_with_proxy": len(c.missing_lost),
            "lost_with_proxy_trace_ids": c.missing_lost[:FACT_IDS],
            "duplicated_in_doubt": len(c.duplicated_in_doubt),
            "duplicated_unexplained": len(c.unexplained_duplicates),
            "duplicated_unexplained_trace_ids": c.unexplained_duplicates[:FACT_IDS],
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
        if c.facts is not None:
            lines += self._explained_lines(examples)
        if c.extra and self.allow_extra:
            lines.append("  (extra allowed: --allow-extra)")
        lines.append("result: " + ("match" if self.matches else "MISMATCH"))
        return "\n".join(lines)

    def _explained_lines(self, examples: int) -> list[str]:
        c = self.comparison
        assert c.facts is not None
        f = c.facts
        lines = [
            f"  the proxies' facts ({', '.join(f.files)}): {f.routed} messages of route "
            f"{self.target.rule}; {len(f.mirror_failed)} copies failed "
            f"(message_mirror_failed), {len(f.lost)} lost with the proxy, {len(f.in_doubt)} "
            "in doubt (possibly_stored / message_resent)",
        ]
        unexplained = len(c.missing) - len(c.missing_failed) - len(c.missing_lost)
        if c.missing:
            lines += [
                f"    missing, message_mirror_failed: {len(c.missing_failed)}"
                + _shown(c.missing_failed, examples),
                f"    missing, lost with the proxy (killed with the copy in memory, never "
                f"confirmed): {len(c.missing_lost)}" + _shown(c.missing_lost, examples),
                f"    missing, no fact explains: {unexplained}",
            ]
        if c.duplicated:
            lines += [
                f"    duplicated, explained (in doubt: possibly stored twice): "
                f"{len(c.duplicated_in_doubt)}" + _shown(c.duplicated_in_doubt, examples),
                f"    duplicated, no fact explains: {len(c.unexplained_duplicates)}"
                + _shown(c.unexplained_duplicates, examples),
            ]
        if f.violations:
            lines.append(
                f"    the facts break the promise {f.violations} times for this route: "
                "run `strangler audit` on them"
            )
        return lines


def _shown(ids: list[str], examples: int) -> str:
    if not ids:
        return ""
    return "  (" + ", ".join(ids[:examples]) + (", ..." if len(ids) > examples else "") + ")"


def verify(
    target: Target,
    read: Callable[[str, str], Backlog],
    facts: FactSink,
    *,
    allow_extra: bool = False,
    proxy_facts: CopyFacts | None = None,
) -> Verification:
    """Browse legacy, Amazon MQ, legacy again (``read(broker, destination)``); compare."""
    legacy = read(LEGACY, target.destination)
    amazonmq = read(AMAZONMQ, target.amazonmq_destination)
    legacy_after = read(LEGACY, target.destination)
    comparison = compare(legacy.keys, amazonmq.keys, legacy_after.keys, proxy_facts)
    result = Verification(target, legacy, legacy_after, amazonmq, comparison, allow_extra)
    facts.emit(Fact.VERIFY_FINISHED, **result.fact_fields())
    return result
