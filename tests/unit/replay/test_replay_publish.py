"""Real replay's bookkeeping with fake brokers: routing, receipts, resumable position."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from replay_fixtures import capture, facts_file, producer, send, write_routes

from strangler.cli import main
from strangler.replay import publish
from strangler.replay.publish import Publisher, ReplayState, build_send
from strangler.replay.sources import CapturedMessage
from strangler.routes import RouteTable, load_routes
from strangler.stomp import Frame, FrameParser
from strangler.upstream.client import PublishError

ROUTES = (
    "  - {name: orders, match: {exact: /queue/orders}, mode: mirror}\n"
    "  - {name: bill, match: {exact: /queue/bill}, mode: cutover, on_failure: reject,"
    " target_destination: /queue/bill.v2}\n"
    "  - {name: pay, match: {prefix: /queue/pay.}, mode: split, weight: 50,"
    " sticky_header: customer, on_failure: legacy}\n"
    "  - {name: trial, match: {exact: /queue/trial}, mode: cutover, on_failure: legacy,"
    " dry_run: true}\n"
)


class FakeBroker:
    """Answers every SEND's receipt when polled, unless told to hold or to fail."""

    def __init__(
        self,
        name: str,
        *,
        hold: bool = False,
        fail_at: int | None = None,
        on_send: Callable[[FakeBroker], None] | None = None,
    ) -> None:
        self.name = name
        self.hold = hold
        self.fail_at = fail_at
        self.on_send = on_send
        self.frames: list[Frame] = []
        self.unanswered: list[Frame] = []
        self.most_unanswered = 0
        self.closed = False

    def send(self, raw: bytes) -> None:
        (frame,) = FrameParser(version="1.2").feed(raw)
        assert isinstance(frame, Frame)
        self.frames.append(frame)
        self.unanswered.append(frame)
        self.most_unanswered = max(self.most_unanswered, len(self.unanswered))
        if self.on_send is not None:
            self.on_send(self)

    def poll(self, timeout: float) -> list[Frame]:
        if self.hold:
            time.sleep(min(timeout, 0.01))
            return []
        out = []
        for frame in self.unanswered:
            if self.fail_at is not None and self.frames.index(frame) >= self.fail_at:
                out.append(Frame("ERROR", (("message", "queue full"),)))
                break
            out.append(Frame("RECEIPT", (("receipt-id", frame.get("receipt") or ""),)))
        self.unanswered = []
        return out

    def close(self) -> None:
        self.closed = True


def table(tmp_path: Path) -> RouteTable:
    return load_routes(write_routes(tmp_path / "routes.yaml", ROUTES))


def brokers(**options: dict[str, Any]) -> tuple[dict[str, FakeBroker], Callable[[str], Any]]:
    made: dict[str, FakeBroker] = {}

    def open_sender(name: str) -> FakeBroker:
        made[name] = FakeBroker(name, **options.get(name, {}))
        return made[name]

    return made, open_sender


def messages(n: int, destination: str = "/queue/orders") -> list[CapturedMessage]:
    return [CapturedMessage("flow-1", i + 1, destination, body=f"m{i}".encode()) for i in range(n)]


def test_each_message_goes_where_the_routes_say(tmp_path: Path) -> None:
    made, open_sender = brokers()
    captured = [
        CapturedMessage(
            "f",
            1,
            "/queue/orders",
            (
                ("destination", "/queue/orders"),
                ("customer", "a:b"),
                ("receipt", "theirs"),
                ("transaction", "t1"),
                ("content-length", "3"),
                ("content-type", "text/plain"),
            ),
            b"a\0b",
        ),
        CapturedMessage("f", 2, "/queue/bill", (("strangler-trace-id", "t-2"),), b"bill"),
        CapturedMessage("f", 3, "/queue/trial", (), b"trial"),
        *[
            CapturedMessage("f", 10 + i, "/queue/pay.x", (("customer", f"c{i}"),), b"p")
            for i in range(20)
        ],
    ]
    result = Publisher(table(tmp_path), open_sender).run(captured, total=len(captured))
    assert result.complete and result.error is None and result.sent == 23

    legacy, amazonmq = made["legacy"].frames, made["amazonmq"].frames
    mirrored = legacy[0]
    assert mirrored.headers == (
        ("destination", "/queue/orders"),
        ("receipt", "strangler-replay-0-legacy"),
        ("strangler-trace-id", captured[0].stable_id),
        ("customer", "a:b"),
        ("content-type", "text/plain"),
        ("content-length", "3"),
    )
    assert mirrored.body == b"a\0b"
    assert (
        amazonmq[0].body == b"a\0b" and amazonmq[0].get("receipt") == "strangler-replay-0-amazonmq"
    )
    assert amazonmq[1].get("destination") == "/queue/bill.v2"
    assert amazonmq[1].get("strangler-trace-id") == "t-2"
    assert [f.body for f in legacy].count(b"trial") == 1  # a dry-run route stays on legacy
    pay = [f.get("customer") for f in amazonmq if f.get("destination") == "/queue/pay.x"]
    stay = [f.get("customer") for f in legacy if f.get("destination") == "/queue/pay.x"]
    assert sorted(str(c) for c in pay + stay) == sorted(f"c{i}" for i in range(20)) and pay and stay
    assert result.report.routes["orders"].counts.both == 1
    assert made["legacy"].closed and made["amazonmq"].closed


def test_limit_then_resume_sends_each_message_exactly_once(tmp_path: Path) -> None:
    routes = table(tmp_path)
    saved: list[int] = []
    first, open_first = brokers()
    result = Publisher(routes, open_first, window=3).run(
        messages(20), total=20, limit=7, save=saved.append
    )
    assert (result.confirmed, result.sent, result.complete) == (7, 7, False)
    assert saved[-1] == 7
    second, open_second = brokers()
    result = Publisher(routes, open_second, window=3).run(
        messages(20), total=20, start=saved[-1], save=saved.append
    )
    assert (result.confirmed, result.sent, result.complete) == (20, 13, True)
    for broker in ("legacy", "amazonmq"):
        bodies = [f.body for f in first[broker].frames + second[broker].frames]
        assert bodies == [f"m{i}".encode() for i in range(20)]
        assert max(first[broker].most_unanswered, second[broker].most_unanswered) <= 3


def test_the_position_only_covers_messages_every_target_confirmed(tmp_path: Path) -> None:
    made, open_sender = brokers(amazonmq={"hold": True})
    batch = messages(3, "/queue/pay.x") + messages(3, "/queue/bill") + messages(3, "/queue/x")
    result = Publisher(table(tmp_path), open_sender, timeout=0.2).run(batch, total=9)
    # Every legacy message was confirmed, but the first cutover one never was.
    first_amazonmq = int((made["amazonmq"].frames[0].get("receipt") or "").split("-")[2])
    assert result.confirmed == first_amazonmq < 9
    assert result.error is not None and "no receipt from amazonmq" in result.error


def test_a_broker_error_stops_with_the_confirmed_prefix(tmp_path: Path) -> None:
    _, open_sender = brokers(legacy={"fail_at": 5})
    result = Publisher(table(tmp_path), open_sender, window=2).run(
        messages(12, "/queue/x"), total=12
    )
    assert result.confirmed == 5
    assert result.error == "legacy refused a message: queue full"


def test_a_stop_request_waits_for_the_messages_in_flight(tmp_path: Path) -> None:
    stop = threading.Event()

    def stop_after_ten(broker: FakeBroker) -> None:
        if len(broker.frames) == 10:
            stop.set()

    _, open_sender = brokers(legacy={"on_send": stop_after_ten})
    result = Publisher(table(tmp_path), open_sender, stop=stop).run(
        messages(30, "/queue/x"), total=30
    )
    assert result.interrupted and result.sent == 10 and result.confirmed == 10


def test_rate_limits_messages_per_second(tmp_path: Path) -> None:
    _, open_sender = brokers()
    began = time.monotonic()
    result = Publisher(table(tmp_path), open_sender, rate=50).run(
        messages(11, "/queue/x"), total=11
    )
    assert result.complete
    assert time.monotonic() - began >= 0.19  # 10 intervals of 20 ms after the first


def test_build_send_keeps_a_text_message_a_text_message() -> None:
    plain = CapturedMessage("f", 1, "/queue/t", (("destination", "/queue/t"),), b"hi")
    raw = build_send(plain, "/queue/t", "r1", "strangler-trace-id", "k")
    assert b"content-length" not in raw
    (frame,) = FrameParser(version="1.2").feed(raw)
    assert isinstance(frame, Frame) and frame.body == b"hi"


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    assert ReplayState.load(path) is None
    state = ReplayState(capture=["/a"], fingerprint="f", total=9, confirmed=4)
    state.save(path)
    loaded = ReplayState.load(path)
    assert loaded is not None and loaded.confirmed == 4 and loaded.updated
    Path(path).write_text("{}")
    with pytest.raises(PublishError):
        ReplayState.load(path)


def test_cli_resumes_from_the_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flows = tmp_path / "capture.flows"
    sends = [send("/queue/orders", f"m{i}".encode()) for i in range(10)]
    capture(flows, [producer(sends)], keep_passcodes=True)  # else the login has no passcode
    routes = write_routes(tmp_path / "routes.yaml", ROUTES)
    runs: list[dict[str, FakeBroker]] = []

    def opener(table: RouteTable, login: Any, timeout: float) -> Callable[[str], Any]:
        assert login == ("producer", "secret")  # legacy logs in as the captured producer
        made, open_sender = brokers()
        runs.append(made)
        return open_sender

    monkeypatch.setattr(publish, "broker_opener", opener)
    assert main(["replay", str(flows), "--routes", routes, "--limit", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["replay"]["confirmed"] == 4 and not out["replay"]["complete"]
    state = json.loads((tmp_path / "capture.flows.replay-state.json").read_text())
    assert state["confirmed"] == 4 and state["total"] == 10

    assert main(["replay", str(flows), "--routes", routes]) == 0
    assert "10 of 10 SENDs confirmed (6 sent this run)" in capsys.readouterr().out
    sent = [f.body for run in runs for f in run["legacy"].frames]
    assert sent == [f"m{i}".encode() for i in range(10)]

    assert main(["replay", str(flows), "--routes", routes]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert len(runs) == 2  # no connection at all

    other = tmp_path / "other.flows"
    capture(other, [producer([send("/queue/orders")])])
    state_path = str(tmp_path / "capture.flows.replay-state.json")
    assert main(["replay", str(other), "--routes", routes, "--state", state_path]) == 2
    assert "another capture" in capsys.readouterr().err


def test_cli_refuses_to_send_what_it_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = write_routes(tmp_path / "routes.yaml", ROUTES)
    facts = facts_file(tmp_path / "facts.jsonl", [("/queue/orders", "t1")])
    assert main(["replay", facts, "--routes", routes]) == 2
    assert "no message bodies" in capsys.readouterr().err
    headers_only = tmp_path / "h.flows"
    capture(headers_only, [producer([send("/queue/orders")])], headers_only=True)
    assert main(["replay", str(headers_only), "--routes", routes]) == 2
    assert "--capture-headers-only" in capsys.readouterr().err
    assert main(["replay", facts, "--routes", routes, "--against", routes]) == 2
    assert "--against needs --dry-run" in capsys.readouterr().err
