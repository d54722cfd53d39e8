"""drain and verify without brokers: targets, logins, the journal, SENDs, the comparison."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from strangler.cli import main
from strangler.drain.backlog import Backlog, message_key
from strangler.drain.brokers import TargetError, legacy_login, resolve_target
from strangler.drain.journal import Journal, JournalError, default_path
from strangler.drain.mover import MESSAGE_ONLY_HEADERS, DrainResult
from strangler.drain.verify import compare
from strangler.progress import Progress
from strangler.routes import RouteTable, parse_routes
from strangler.stomp import Frame, FrameParser
from strangler.stomp.resend import encode_send

BROKERS = (
    "brokers:\n"
    "  legacy: {url: stomp://127.0.0.1:61611}\n"
    "  amazonmq:\n"
    "    url: stomp+ssl://127.0.0.1:61614\n"
    "    credentials: {username_env: AMQ_USER, password_env: AMQ_PASSWORD}\n"
)
ROUTES = (
    "routes:\n"
    "  - {name: moved, match: {exact: /queue/moved}, mode: cutover, on_failure: legacy,"
    " target_destination: /queue/moved.v2}\n"
    "  - {name: shadow, match: {exact: /queue/shadow}, mode: mirror,"
    " target_destination: /queue/shadow.copy}\n"
    "  - {name: half, match: {exact: /queue/half}, mode: split, weight: 50, on_failure: legacy}\n"
    "  - {name: all, match: {exact: /queue/all}, mode: split, weight: 100, on_failure: legacy}\n"
    "  - {name: trial, match: {exact: /queue/trial}, mode: cutover, on_failure: legacy,"
    " dry_run: true}\n"
    "  - {name: topics, match: {prefix: /topic/}, mode: cutover, on_failure: legacy}\n"
)


def table(extra: str = "") -> RouteTable:
    return parse_routes(BROKERS.replace("brokers:\n", "brokers:\n" + extra) + ROUTES, "r.yaml")


# -- which destination, where ------------------------------------------------------------------


def test_drain_targets_a_cutover_route_under_its_amazonmq_name() -> None:
    target = resolve_target(table(), "/queue/moved", "drain")
    assert (target.destination, target.amazonmq_destination) == ("/queue/moved", "/queue/moved.v2")
    assert (target.rule, target.mode, target.trace_header) == (
        "moved",
        "cutover",
        "strangler-trace-id",
    )
    assert resolve_target(table(), "/queue/all", "drain").amazonmq_destination == "/queue/all"


@pytest.mark.parametrize(
    ("destination", "reason"),
    [
        ("/queue/shadow", "route shadow sends /queue/shadow as mirror"),
        ("/queue/half", "split 50%"),
        ("/queue/trial", "as dry-run cutover"),
        ("/queue/nobody", "no route matches /queue/nobody in r.yaml"),
        ("/topic/news", "not a queue"),
    ],
)
def test_drain_refuses_a_destination_producers_still_send_to_legacy(
    destination: str, reason: str
) -> None:
    with pytest.raises(TargetError, match=reason):
        resolve_target(table(), destination, "drain")


def test_verify_needs_a_live_mirror() -> None:
    target = resolve_target(table(), "/queue/shadow", "verify")
    assert target.amazonmq_destination == "/queue/shadow.copy"
    for destination in ("/queue/moved", "/queue/half", "/queue/nobody"):
        with pytest.raises(TargetError, match="must be a mirror"):
            resolve_target(table(), destination, "verify")


# -- legacy's login ----------------------------------------------------------------------------


def test_legacy_login_comes_from_the_flag_or_env_and_the_passcode_never_from_argv(
    tmp_path: Path,
) -> None:
    env = {"STRANGLER_LEGACY_LOGIN": "ops", "STRANGLER_LEGACY_PASSCODE": "s3cret"}
    assert legacy_login(table(), None, None, env) == ("ops", "s3cret")
    assert legacy_login(table(), "admin", None, env) == ("admin", "s3cret")
    passcode = tmp_path / "passcode"
    passcode.write_text("from-file\nignored\n")
    assert legacy_login(table(), "admin", str(passcode), env) == ("admin", "from-file")
    with pytest.raises(TargetError, match="STRANGLER_LEGACY_PASSCODE or --legacy-passcode-file"):
        legacy_login(table(), "admin", None, {})
    with pytest.raises(TargetError, match="needs --legacy-login"):
        legacy_login(table(), None, str(passcode), {})
    with pytest.raises(TargetError, match="missing"):
        legacy_login(table(), "admin", str(tmp_path / "missing"), {})
    # Without one, routes.yaml's credentials of legacy, else no login at all.
    assert legacy_login(table(), None, None, {}) is None
    (tmp_path / "legacy.yaml").write_text("username: svc\npassword: pw\n")
    with_file = parse_routes(
        BROKERS.replace(
            "  legacy: {url: stomp://127.0.0.1:61611}\n",
            f"  legacy:\n    url: stomp://127.0.0.1:61611\n"
            f"    credentials: {{file: {tmp_path / 'legacy.yaml'}}}\n",
        )
        + ROUTES,
        "r.yaml",
    )
    assert legacy_login(with_file, None, None, {}) == ("svc", "pw")


@pytest.mark.parametrize("command", ["drain", "verify"])
def test_a_passcode_on_the_command_line_is_refused_without_echoing_it(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "/queue/moved", "--legacy-passcode", "hunter2-secret"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "hunter2-secret" not in err and "STRANGLER_LEGACY_PASSCODE" in err
    # Not an abbreviation of --legacy-passcode-file either (the value would be a path).
    with pytest.raises(SystemExit):
        main([command, "/queue/moved", "--legacy-passcode-f", "x"])
    assert "unrecognized arguments" in capsys.readouterr().err


# -- the journal -------------------------------------------------------------------------------


def test_the_journal_keeps_what_may_be_on_both_brokers_for_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    with Journal(path, "/queue/a") as journal:
        assert journal.earlier == set()
        journal.add(["t1", "t2", "t2"])
        journal.moved("t2")
        assert journal.suspects == {"t1", "t2"}  # t2 was sent twice and acknowledged once
        # The file lists what was added, before any message is sent.
        assert '"t1"' in path.read_text() and '"t2"' in path.read_text()
    # A stop without clean-up: the next run sees both as earlier suspects.
    with Journal(path, "/queue/a") as journal:
        assert journal.earlier == {"t1", "t2"}
        assert journal.is_earlier_suspect("t1")
        journal.add(["t1"])
        journal.moved("t1")  # met again and moved: no longer at risk
        assert journal.suspects == {"t2"}
        journal.queue_empty()  # t2 was not on legacy any more
        journal.save()
    with Journal(path, "/queue/a") as journal:
        assert journal.suspects == set()


def test_one_drain_per_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    with Journal(path, "/queue/a"), pytest.raises(JournalError, match="another drain"):
        Journal(path, "/queue/a").open()
    with Journal(path, "/queue/a"):  # released on close
        pass


def test_a_journal_of_another_queue_or_unreadable_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    with Journal(path, "/queue/a") as journal:
        journal.save()
    with pytest.raises(JournalError, match="belongs to '/queue/a'"):
        Journal(path, "/queue/b").open()
    path.write_text("{not json")
    with pytest.raises(JournalError, match="unreadable"):
        Journal(path, "/queue/a").open()
    # A refused journal does not keep its lock.
    path.unlink()
    with Journal(path, "/queue/a"):
        pass


def test_the_default_journal_is_per_broker_and_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/state")
    one = default_path("stomp://a:61613", "/queue/orders.eu")
    assert str(one).startswith("/state/strangler/drain/orders.eu-") and one.suffix == ".json"
    assert one != default_path("stomp://b:61613", "/queue/orders.eu")
    assert "/" not in default_path("x", "/queue/a/b*c").name


# -- the SEND to Amazon MQ ---------------------------------------------------------------------


def parse(raw: bytes) -> Frame:
    (frame,) = FrameParser(version="1.2").feed(raw)
    assert isinstance(frame, Frame)
    return frame


def test_a_moved_message_keeps_its_headers_but_not_its_delivery() -> None:
    delivered = Frame(
        "MESSAGE",
        (
            ("content-length", "3"),
            ("expires", "0"),
            ("destination", "/queue/moved"),
            ("ack", "ID:ack-1"),
            ("subscription", "strangler-drain"),
            ("priority", "7"),
            ("x:colon", "a\nb"),
            ("message-id", "ID:legacy-1"),
            ("redelivered", "true"),
            ("persistent", "true"),
            ("timestamp", "1700000000000"),
        ),
        b"a\0b",
    )
    key = message_key(delivered, "strangler-trace-id")
    assert key == "ID:legacy-1"  # no trace id: the legacy message-id names it
    raw = encode_send(
        delivered.headers,
        delivered.body,
        "/queue/moved.v2",
        "drain-1",
        ("strangler-trace-id", key),
        drop=MESSAGE_ONLY_HEADERS,
    )
    sent = parse(raw)
    assert sent.command == "SEND" and sent.body == b"a\0b"
    assert sent.headers == (
        ("destination", "/queue/moved.v2"),
        ("receipt", "drain-1"),
        ("strangler-trace-id", "ID:legacy-1"),
        ("expires", "0"),
        ("priority", "7"),
        ("x:colon", "a\nb"),  # escaped on the wire, the same value on Amazon MQ
        ("persistent", "true"),
        ("timestamp", "1700000000000"),
        ("content-length", "3"),  # a BytesMessage stays one
    )
    traced = Frame("MESSAGE", (("strangler-trace-id", "t-1"), ("message-id", "ID:2")), b"hi")
    assert message_key(traced, "strangler-trace-id") == "t-1"
    headers = parse(
        encode_send(
            traced.headers, b"hi", "/q", "r", ("strangler-trace-id", "t-1"), MESSAGE_ONLY_HEADERS
        )
    ).headers
    assert [n for n, _ in headers].count("strangler-trace-id") == 1
    assert "content-length" not in dict(headers)  # a TextMessage stays one


# -- what a browse counts, and the comparison --------------------------------------------------


def test_a_backlog_counts_sizes_ids_and_the_oldest_message() -> None:
    backlog = Backlog("legacy", "/queue/a")
    for headers, body in [
        ((("strangler-trace-id", "t1"), ("timestamp", "2000")), b"abc"),
        ((("strangler-trace-id", "t1"), ("timestamp", "1000"), ("redelivered", "true")), b""),
        ((("message-id", "ID:3"), ("timestamp", "0")), b"z"),
    ]:
        backlog.add(Frame("MESSAGE", headers, body), "strangler-trace-id")
    assert (backlog.count, backlog.bytes, backlog.without_trace, backlog.redelivered) == (
        3,
        4,
        1,
        1,
    )
    assert backlog.oldest_ms == 1000 and backlog.duplicates == {"t1": 2}
    assert backlog.as_dict()["duplicated_ids"] == 1
    counted = Backlog("legacy", "/queue/a", keyed=False)  # a drain's count keeps no ids
    counted.add(Frame("MESSAGE", (("strangler-trace-id", "t1"),), b"abc"), "strangler-trace-id")
    assert (counted.count, counted.bytes, counted.keys) == (1, 3, Counter())


def test_verify_compares_with_legacy_browsed_before_and_after_amazonmq() -> None:
    before = Counter({"a": 1, "b": 1, "c": 1, "lost": 1})
    amazonmq = Counter({"a": 1, "b": 3, "c": 1, "late": 1, "consumed": 1})
    after = Counter({"a": 1, "b": 1, "c": 1, "late": 1})  # `late` arrived meanwhile
    result = compare(before, amazonmq, after)
    assert result.missing == ["lost"]
    assert result.extra == ["consumed"]
    assert result.duplicated == {"b": 2}
    assert not result.matches(allow_extra=True)
    same = compare(Counter({"a": 1}), Counter({"a": 1, "x": 1}), Counter())
    assert not same.matches() and same.matches(allow_extra=True)
    assert compare(Counter(), Counter(), Counter()).matches()


def test_the_count_check_needs_consumed_confirmed_and_moved_equal() -> None:
    assert DrainResult(consumed=5, confirmed=5, moved=5, stopped="empty").ok
    assert DrainResult(consumed=5, confirmed=5, moved=5, stopped="max").ok
    assert not DrainResult(consumed=5, confirmed=5, moved=4, stopped="empty").ok
    assert not DrainResult(consumed=5, confirmed=5, moved=5, stopped="not_empty").ok
    result = DrainResult(moved=10, moving=2.0, elapsed=4.0)
    assert result.rate == 5.0 and result.as_fields()["rate_msg_s"] == 5.0


def test_progress_names_its_counts_and_survives_passing_an_estimated_total() -> None:
    out = io.StringIO()
    progress = Progress(10, out, every=0.0, label="drain /queue/a", noun="moved")
    progress.update(4, force=True, note=", 3 in flight")
    progress.update(12, force=True)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("drain /queue/a: 4/10 moved (40.0%), ")
    assert "msg/s, ETA " in lines[0] and lines[0].endswith(", 3 in flight")
    assert lines[1].startswith("drain /queue/a: 12 moved (counted 10 before), ")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_shows_the_current_rate_and_the_time_left_at_it() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(10_000, out, label="replay", clock=clock)
    assert progress.every == 2.0  # off a terminal: the cadence drain and replay share
    progress.update(0)
    for second in range(1, 21):  # 100 msg/s for 20 s: a line every 2 s
        clock.now += 1
        progress.update(second * 100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "replay: 200/10000 confirmed (2.0%), 100 msg/s, ETA 0:01:38"
    assert lines[-1] == "replay: 2000/10000 confirmed (20.0%), 100 msg/s, ETA 0:01:20"
    count = 2000
    for _ in range(10):  # then 400 msg/s: the rate follows within seconds, not minutes
        clock.now += 1
        count += 400
        progress.update(count)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("replay: 6000/10000 confirmed (60.0%), ")
    rate = int(last.split(", ")[1].removesuffix(" msg/s"))
    # Ten seconds in, the recent rate has moved 63% of the way (1 - 1/e); the average
    # since the start would say 200.
    assert 280 <= rate <= 300, last


def test_progress_eta_uses_the_recent_rate_and_stops_past_the_total() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(1000, out, label="drain /queue/a", noun="moved", clock=clock)
    progress.update(0)
    clock.now += 2
    progress.update(100)  # 50 msg/s: 900 left take 18 s
    clock.now += 2
    progress.update(1200)  # past the estimate
    first, second = out.getvalue().splitlines()
    assert first == "drain /queue/a: 100/1000 moved (10.0%), 50 msg/s, ETA 0:00:18"
    assert second.startswith("drain /queue/a: 1200 moved (counted 1000 before), ")
    assert "ETA" not in second
