"""The STOMP connection state: legal commands per state and role, required headers per
version, heart-beat and version negotiation, and whose fault an error is."""

from __future__ import annotations

import pytest

from strangler.stomp import Frame
from strangler.stomp.connection import (
    Heartbeat,
    LocalProtocolError,
    RemoteProtocolError,
    Role,
    State,
    StompConnection,
    missing_header,
    negotiate_heartbeat,
    negotiate_version,
    parse_heartbeat,
)


def frame(command: str, **headers: str) -> Frame:
    return Frame(command, tuple(headers.items()))


def connected(role: Role = Role.SERVER, version: str = "1.2") -> StompConnection:
    conn = StompConnection(role)
    conn.receive(frame("CONNECT") if role is Role.SERVER else frame("CONNECTED", version=version))
    conn.connected(version)
    return conn


def test_a_server_side_accepts_only_connect_or_stomp_first() -> None:
    for command in ("CONNECT", "STOMP"):
        StompConnection(Role.SERVER).receive(frame(command))
    with pytest.raises(RemoteProtocolError, match="expected CONNECT or STOMP, got SEND"):
        StompConnection(Role.SERVER).receive(frame("SEND", destination="/q"))


def test_a_client_side_expects_connected_or_error_first_and_error_ends_it() -> None:
    conn = StompConnection(Role.CLIENT)
    conn.receive(frame("ERROR", message="bad login"))
    assert conn.state is State.CLOSED
    with pytest.raises(RemoteProtocolError, match="after the connection ended"):
        conn.receive(frame("RECEIPT", **{"receipt-id": "1"}))


def test_server_frames_from_a_client_and_a_second_connect_are_the_clients_fault() -> None:
    conn = connected()
    with pytest.raises(RemoteProtocolError, match="MESSAGE is not a client frame"):
        conn.receive(frame("MESSAGE"))
    with pytest.raises(RemoteProtocolError, match="CONNECT after the session is established"):
        conn.receive(frame("CONNECT"))


def test_our_own_mistakes_are_local_errors() -> None:
    conn = connected()
    with pytest.raises(LocalProtocolError):
        conn.send(frame("SEND", destination="/q"))  # a server does not send SEND


@pytest.mark.parametrize(
    ("version", "command", "headers", "missing"),
    [
        ("1.2", "SEND", {}, "destination"),
        ("1.0", "SUBSCRIBE", {"destination": "/q"}, None),  # 1.0: id optional
        ("1.1", "SUBSCRIBE", {"destination": "/q"}, "id"),
        ("1.2", "ACK", {"message-id": "m"}, "id"),
        ("1.1", "ACK", {"message-id": "m"}, "subscription"),
        ("1.0", "ACK", {"message-id": "m"}, None),
        ("1.0", "UNSUBSCRIBE", {"destination": "/q"}, None),
        ("1.0", "UNSUBSCRIBE", {}, "id"),
        ("1.2", "BEGIN", {}, "transaction"),
        ("1.2", "MESSAGE", {"destination": "/q", "message-id": "1"}, "subscription"),
    ],
)
def test_required_headers_follow_the_version(
    version: str, command: str, headers: dict[str, str], missing: str | None
) -> None:
    assert missing_header(frame(command, **headers), version) == missing


def test_nothing_but_disconnect_after_disconnect() -> None:
    conn = connected()
    conn.receive(frame("DISCONNECT"))
    assert conn.state is State.DISCONNECTING
    with pytest.raises(RemoteProtocolError, match="after DISCONNECT"):
        conn.receive(frame("SEND", destination="/q"))


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(None, "1.0"), ("1.0,1.1", "1.1"), ("1.2, 1.1", "1.2"), ("2.0", None), ("1.1", "1.1")],
)
def test_version_negotiation_picks_the_highest_shared(
    offered: str | None, chosen: str | None
) -> None:
    assert negotiate_version(offered) == chosen


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        ((10_000, 10_000), (0, 0), Heartbeat(0, 0)),
        ((10_000, 10_000), (5_000, 20_000), Heartbeat(20.0, 10.0)),
        ((0, 4_000), (3_000, 0), Heartbeat(0, 4.0)),
        ((4_000, 0), (0, 3_000), Heartbeat(4.0, 0)),
    ],
)
def test_heartbeats_are_the_larger_of_what_each_side_can_do_and_wants(
    ours: tuple[int, int], theirs: tuple[int, int], expected: Heartbeat
) -> None:
    assert negotiate_heartbeat(ours, theirs) == expected


@pytest.mark.parametrize(
    ("value", "parsed"),
    [(None, (0, 0)), ("1000,2000", (1000, 2000)), ("x", (0, 0)), (" 5 , 6", (5, 6))],
)
def test_a_malformed_heart_beat_header_means_none(
    value: str | None, parsed: tuple[int, int]
) -> None:
    assert parse_heartbeat(value) == parsed
