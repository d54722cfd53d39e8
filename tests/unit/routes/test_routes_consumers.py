"""Where a consumer reads from: ``decide_subscribe`` per mode."""

from __future__ import annotations

from textwrap import dedent

from strangler.routes import AMAZONMQ, LEGACY, Mode, decide_subscribe, parse_routes

TABLE = parse_routes(
    dedent("""\
        brokers:
          legacy: {url: stomp://127.0.0.1:61611}
          amazonmq: {url: stomp+ssl://127.0.0.1:61614}
        routes:
          - {name: pinned, match: {prefix: /queue/pinned.}, mode: legacy}
          - {name: copy, match: {prefix: /queue/copy.}, mode: mirror}
          - {name: half, match: {prefix: /queue/half.}, mode: split, weight: 50, on_failure: legacy}
          - {name: moved, match: {prefix: /queue/moved.}, mode: cutover, on_failure: legacy,
             target_destination: /queue/new}
          - {name: news, match: {prefix: /topic/news.}, mode: cutover, on_failure: reject}
          - {name: rehearsal, match: {prefix: /queue/rehearsal.}, mode: cutover,
             on_failure: reject, dry_run: true}
        """),
    "routes.yaml",
)


def test_legacy_mirror_unmatched_and_dry_run_read_legacy_only() -> None:
    for destination in ("/queue/pinned.a", "/queue/copy.a", "/queue/other", "/queue/rehearsal.a"):
        decision = decide_subscribe(TABLE, destination)
        assert decision.sources == (LEGACY,), destination
        assert decision.amazonmq_destination is None
        assert not decision.drain_legacy
    assert decide_subscribe(TABLE, "/queue/moved.a", dry_run=True).sources == (LEGACY,)


def test_split_reads_both_and_keeps_legacy() -> None:
    decision = decide_subscribe(TABLE, "/queue/half.a")
    assert (decision.mode, decision.sources, decision.drain_legacy) == (
        Mode.SPLIT,
        (LEGACY, AMAZONMQ),
        False,
    )
    assert decision.amazonmq_destination == "/queue/half.a"


def test_cutover_queue_reads_both_renamed_and_drains_legacy_but_a_topic_does_not() -> None:
    queue = decide_subscribe(TABLE, "/queue/moved.a")
    assert queue.sources == (LEGACY, AMAZONMQ)
    assert queue.amazonmq_destination == "/queue/new"
    assert queue.drain_legacy and queue.rule == "moved"
    topic = decide_subscribe(TABLE, "/topic/news.a")
    assert topic.sources == (LEGACY, AMAZONMQ) and not topic.drain_legacy
