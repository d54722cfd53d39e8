"""FlowCapture: TCP flows through mitmproxy's own writer and reader, bounded and rotated."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy import tcp
from replay_fixtures import (
    capture,
    connect,
    connected,
    frame,
    producer,
    read_flows,
    send,
    write_routes,
)

from strangler.cli import build_parser
from strangler.replay.capture import FlowCapture
from strangler.replay.commands import open_capture, size
from strangler.replay.sources import MessageSource
from strangler.routes import load_routes
from strangler.stomp import Frame, FrameParser, encode_parts


def test_each_session_is_one_tcp_flow_with_both_directions(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    first = producer([send("/queue/a", b"one"), send("/queue/b", b"two")])
    second = producer([send("/queue/c", b"three")], version="1.1")
    stats = capture(path, [first, second])

    flows = read_flows(path)
    assert stats.flows_written == 2 and stats.dropped_bytes == 0
    assert all(isinstance(flow, tcp.TCPFlow) for flow in flows)
    for flow, chunks in zip(flows, (first, second), strict=True):
        # Byte for byte, but the producer's passcode (see the passcode tests below).
        version = "1.2" if flow is flows[0] else "1.1"
        expected = [(True, connect(version, passcode="")), *chunks[1:]]
        assert [(m.from_client, m.content) for m in flow.messages] == expected
        meta = flow.metadata["strangler"]
        assert meta["part"] == 0 and meta["final"] is True and meta["headers_only"] is False
        assert meta["passcodes_kept"] is False
        assert flow.server_conn.address == ("127.0.0.1", 61611)
    assert flows[0].client_conn.peername == ("127.0.0.1", 40000)
    assert (
        flows[0].metadata["strangler"]["capture_id"] != flows[1].metadata["strangler"]["capture_id"]
    )


def test_nothing_is_written_while_a_session_is_open(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    tap = FlowCapture(path, interval=0.01)
    tap.opened("s1", "127.0.0.1:1234")
    tap.from_client("s1", connect())
    tap.to_client("s1", connected())
    assert tap.flush()
    assert path.stat().st_size == 0  # the tap methods only buffered
    tap.closed("s1")
    assert tap.flush()
    assert path.stat().st_size > 0
    tap.close()


def test_a_long_session_is_written_in_parts_that_replay_joins(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    sends = [send("/queue/long", f"message {i}".encode() * 5) for i in range(60)]
    stream = b"".join(sends)
    # Chunks that cut frames in the middle, so parts end inside a frame.
    chunks = [(True, connect()), (False, connected())] + [
        (True, stream[i : i + 333]) for i in range(0, len(stream), 333)
    ]
    capture(path, [chunks], flush_bytes=2000)

    flows = read_flows(path)
    parts = [flow.metadata["strangler"] for flow in flows]
    assert len(flows) >= 3
    assert [p["part"] for p in parts] == list(range(len(flows)))
    assert [p["final"] for p in parts] == [False] * (len(flows) - 1) + [True]
    assert len({p["capture_id"] for p in parts}) == 1

    source = MessageSource([str(path)])
    bodies = [m.body for m in source]
    assert bodies == [f"message {i}".encode() * 5 for i in range(60)]
    assert source.stats.sessions == 1 and not source.stats.errors


def test_the_memory_bound_cuts_the_rest_of_a_session_and_counts_it(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    tap = FlowCapture(path, max_pending=4096, flush_bytes=1 << 20, keep_passcodes=True)
    tap.opened("s1", "127.0.0.1:1")
    tap.from_client("s1", connect())
    tap.to_client("s1", connected())
    kept = [send("/queue/x", b"a" * 100) for _ in range(10)]
    for data in kept:
        tap.from_client("s1", data)
    lost = [send("/queue/x", b"b" * 1000) for _ in range(10)]
    for data in lost:
        tap.from_client("s1", data)
    small = send("/queue/x", b"c")
    tap.from_client("s1", small)  # would fit, but the session already has a hole: dropped
    tap.closed("s1")
    stats = tap.close()

    assert stats.truncated_sessions == 1
    assert stats.dropped_bytes >= sum(len(d) for d in lost[1:]) + len(small)
    (flow,) = read_flows(path)
    # Every byte is either in the flow or counted as dropped.
    offered = len(connect()) + len(connected()) + sum(map(len, kept + lost)) + len(small)
    assert sum(len(m.content) for m in flow.messages) + stats.dropped_bytes == offered
    assert flow.metadata["strangler"]["truncated"] is True
    assert flow.metadata["strangler"]["dropped_bytes"] == stats.dropped_bytes
    source = MessageSource([str(path)])
    messages = list(source)
    # Everything before the cut, nothing after it, and the cut is on record.
    assert 10 <= len(messages) < 21 and all(m.body != b"c" for m in messages)
    assert source.stats.truncated == 1


def test_headers_only_keeps_frames_and_empties_bodies(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    secret = b"card 4111 1111 1111 1111"
    sends = [
        send("/queue/pay", secret, headers=(("customer", "a:b\\c"), ("content-length", "24"))),
        send("/queue/pay", b"\0binary\0", headers=(("JMSXGroupID", "g1"),)),
    ]
    message = encode_parts(
        "MESSAGE", (("destination", "/queue/in"), ("message-id", "m1")), secret, "1.2"
    )
    session = [*producer(sends)[:2], (False, message), *producer(sends)[2:]]
    capture(path, [session], headers_only=True)

    (flow,) = read_flows(path)
    assert flow.metadata["strangler"]["headers_only"] is True
    client = b"".join(m.content for m in flow.messages if m.from_client)
    server = b"".join(m.content for m in flow.messages if not m.from_client)
    assert secret not in client + server and b"binary" not in client
    assert b"content-length" not in client and b"passcode:\n" in client
    frames = [e for e in FrameParser(version="1.2").feed(client) if isinstance(e, Frame)]
    assert [f.command for f in frames] == ["CONNECT", "SEND", "SEND", "DISCONNECT"]
    assert frames[1].headers == (("destination", "/queue/pay"), ("customer", "a:b\\c"))
    assert all(f.body == b"" for f in frames)

    source = MessageSource([str(path)])
    messages = list(source)
    assert [m.header("customer") for m in messages] == ["a:b\\c", None]
    assert all(m.body is None for m in messages)
    assert source.stats.headers_only and not source.has_bodies


def test_rotation_keeps_one_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    sessions = [producer([send(f"/queue/r{i}", b"x" * 300)]) for i in range(40)]
    stats = capture(path, sessions, max_bytes=4096)

    assert stats.rotations >= 2
    assert path.exists() and (tmp_path / "capture.flows.1").exists()
    assert not (tmp_path / "capture.flows.2").exists()
    assert path.stat().st_size <= 4096 and (tmp_path / "capture.flows.1").stat().st_size <= 4096
    kept = read_flows(tmp_path / "capture.flows.1") + read_flows(path)
    assert 0 < len(kept) < 40
    # The newest sessions survive, in order, and read back as one capture.
    source = MessageSource([str(tmp_path / "capture.flows.1"), str(path)])
    destinations = [m.destination for m in source]
    assert destinations == [f"/queue/r{i}" for i in range(40 - len(kept), 40)]


def test_an_existing_capture_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    capture(path, [producer([send("/queue/a")])])
    capture(path, [producer([send("/queue/b")])])
    assert [m.destination for m in MessageSource([str(path)])] == ["/queue/a", "/queue/b"]


def test_close_writes_sessions_still_open(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    tap = FlowCapture(path)
    tap.opened("s1", "[::1]:5000")
    for from_client, data in producer([send("/queue/open")])[:-1]:
        (tap.from_client if from_client else tap.to_client)("s1", data)
    tap.close()
    tap.from_client("s1", b"late")  # after close: ignored, counted
    (flow,) = read_flows(path)
    assert flow.metadata["strangler"]["final"] is False
    assert flow.client_conn.peername == ("::1", 5000)
    assert [m.destination for m in MessageSource([str(path)])] == ["/queue/open"]


def test_a_session_whose_first_part_was_rotated_away_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One time for every chunk: a flow's size on disk then never depends on how many
    # digits the clock's floats print with (the rotation below falls on a size).
    monkeypatch.setattr("strangler.replay.capture.time.time", lambda: 1_700_000_000.5)
    path = tmp_path / "capture.flows"
    stream = b"".join(send("/queue/z", b"y" * 200) for _ in range(20))
    chunks = [(True, connect()), (False, connected())] + [
        (True, stream[i : i + 500]) for i in range(0, len(stream), 500)
    ]
    # Passcodes kept: every part as large as what was read, so the rotation falls as planned.
    capture(
        path,
        [chunks, producer([send("/queue/later")])],
        flush_bytes=1500,
        max_bytes=3000,
        keep_passcodes=True,
    )
    assert (tmp_path / "capture.flows.1").exists()
    source = MessageSource([str(path)])  # without FILE.1: the long session starts mid-way
    destinations = [m.destination for m in source]
    assert destinations == ["/queue/later"]
    assert any("first part missing" in error for error in source.stats.errors)


def _mitmdump() -> str | None:
    local = Path(sys.executable).parent / "mitmdump"
    return str(local) if local.exists() else shutil.which("mitmdump")


@pytest.mark.skipif(_mitmdump() is None, reason="mitmdump not installed")
def test_mitmdump_reads_the_capture(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    capture(path, [producer([send("/queue/shown", b"visible body")])])
    result = subprocess.run(
        [str(_mitmdump()), "-n", "-r", str(path), "--flow-detail", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "tcp" in result.stdout and "/queue/shown" in result.stdout


def test_run_parses_the_capture_options(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--routes",
            "routes.yaml",
            "--capture",
            str(tmp_path / "c.flows"),
            "--capture-headers-only",
            "--capture-max-bytes",
            "8M",
        ]
    )
    assert args.capture_headers_only and args.capture_max_bytes == 8 * 1024 * 1024
    default = build_parser().parse_args(["run", "--routes", "routes.yaml"])
    assert default.capture is None and default.capture_max_bytes == 256 * 1024 * 1024
    assert size("1024") == 1024 and size("2GiB") == 2 * 1024**3 and size("64k") == 65536
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--routes", "r", "--capture-max-bytes", "lots"])


def test_open_capture_points_flows_at_legacy(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("brokers:\n  legacy: {url: stomp://legacy.internal:61613}\nroutes: []\n")
    table = load_routes(routes)
    args = build_parser().parse_args(
        ["run", "--routes", str(routes), "--capture", str(tmp_path / "c.flows")]
    )
    tap = open_capture(args, table)
    assert tap is not None
    tap.opened("s1", "10.0.0.1:5555")
    tap.from_client("s1", frame("DISCONNECT"))
    tap.closed("s1")
    tap.close()
    (flow,) = read_flows(tmp_path / "c.flows")
    assert flow.server_conn.address == ("legacy.internal", 61613)
    assert flow.client_conn.sockname == ("127.0.0.1", 61613)
    no_capture = build_parser().parse_args(["run", "--routes", str(routes)])
    assert open_capture(no_capture, table) is None


# -- what a capture may hold: passcodes and file mode ---------------------------------------


def test_a_capture_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    # Before: 0644 (world-readable) with the default umask.
    path = tmp_path / "capture.flows"
    capture(path, [producer([send("/queue/a")])], max_bytes=1024)
    capture(path, [producer([send("/queue/b", b"x" * 2000)])], max_bytes=1024)  # rotates
    assert (tmp_path / "capture.flows.1").exists()
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert oct((tmp_path / "capture.flows.1").stat().st_mode & 0o777) == oct(0o600)


def client_bytes(path: Path) -> bytes:
    return b"".join(m.content for flow in read_flows(path) for m in flow.messages if m.from_client)


def test_passcodes_are_emptied_and_every_other_byte_kept(tmp_path: Path) -> None:
    # Before: a capture held every producer's passcode in plain text.
    path = tmp_path / "capture.flows"
    body = b"passcode:in-a-body-is-data\n\0with a NUL"
    sends = [
        send("/queue/a", body, headers=[("content-length", str(len(body)))]),
        b"\r\n\n",  # heart-beats
        encode_parts("STOMP", (("login", "again"), ("passcode", "hunter2")), b"", "1.2"),
    ]
    stream = connect(passcode="s3cret-one") + b"".join(sends) + frame("DISCONNECT")
    # Read in 7-byte pieces: frames (and the passcode itself) cut across reads.
    chunks = [(True, stream[i : i + 7]) for i in range(0, len(stream), 7)]
    capture(path, [[chunks[0], (False, connected()), *chunks[1:]]])
    kept = client_bytes(path)
    assert b"s3cret-one" not in kept and b"hunter2" not in kept
    expected = (
        connect(passcode="")
        + sends[0]
        + sends[1]
        + encode_parts("STOMP", (("login", "again"), ("passcode", "")), b"", "1.2")
        + frame("DISCONNECT")
    )
    assert kept == expected  # a body that says "passcode:" is left alone
    (flow,) = read_flows(path)
    assert "redaction_failed" not in flow.metadata["strangler"]


def test_passcodes_are_kept_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    capture(path, [producer([send("/queue/a")])], keep_passcodes=True)
    assert connect() in client_bytes(path) and b"passcode:secret" in connect()
    assert read_flows(path)[0].metadata["strangler"]["passcodes_kept"] is True


def test_a_stream_that_does_not_parse_still_loses_its_passcode_lines(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    garbage = b"NOT-STOMP\npasscode:leaked\n\n\0" + connect(passcode="after")
    capture(path, [[(True, garbage[:5]), (True, garbage[5:])]])
    kept = client_bytes(path)
    assert b"leaked" not in kept and b"after" not in kept and kept.startswith(b"NOT-STOMP\n")
    assert "unknown command" in read_flows(path)[0].metadata["strangler"]["redaction_failed"]


def test_an_unfinished_login_frame_at_close_loses_its_passcode(tmp_path: Path) -> None:
    path = tmp_path / "capture.flows"
    capture(path, [[(True, b"CONNECT\nlogin:p\npasscode:half-sent")]])
    assert client_bytes(path) == b"CONNECT\nlogin:p\npasscode:"


def test_run_takes_capture_passcodes(tmp_path: Path) -> None:
    routes = write_routes(tmp_path / "routes.yaml", "")
    args = build_parser().parse_args(
        ["run", "--routes", routes, "--capture", str(tmp_path / "c.flows"), "--capture-passcodes"]
    )
    tap = open_capture(args, load_routes(routes))
    assert tap is not None and tap.keep_passcodes
    tap.close()
    args = build_parser().parse_args(
        ["run", "--routes", routes, "--capture", str(tmp_path / "c.flows")]
    )
    tap = open_capture(args, load_routes(routes))
    assert tap is not None and not tap.keep_passcodes
    tap.close()
