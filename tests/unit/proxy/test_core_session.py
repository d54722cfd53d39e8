"""The session's life without sockets: login through legacy, what the client sees of
legacy's stream, DISCONNECT, closes, refusals, limits."""

from __future__ import annotations

from playbook import Play, frames, of, only, submitted, to_client, to_legacy

from strangler.proxy.core.commands import (
    CloseAmazonMQ,
    CloseClient,
    CloseLegacy,
    DropAmazonMQ,
    OpenLegacy,
    PauseClient,
    ResumeClient,
    SessionEnded,
    StartTimer,
    ToClient,
)

ROUTES = """\
    - {name: moved, match: {prefix: /queue/cut.}, mode: cutover, on_failure: legacy}
    - {name: copied, match: {prefix: /queue/mirror.}, mode: mirror}
    """


def test_connect_goes_to_legacy_with_the_clients_login_and_waits_for_its_answer() -> None:
    play = Play(ROUTES)
    out = play.client("CONNECT\naccept-version:1.2\nhost:x\nlogin: producer-a\t\npasscode:p\n\n\0")
    assert out == [PauseClient(), OpenLegacy()]
    assert play.core.state.login == "producer-a"  # as legacy authenticated it
    opened = play.record(play.core.legacy_opened())
    assert to_legacy(opened).startswith(b"CONNECT\naccept-version:1.2")


def test_connected_and_its_eol_reach_the_client_in_one_write() -> None:
    play = Play(ROUTES)
    out = play.connect()
    (write,) = [c.data for c in of(out, ToClient)]
    assert write.startswith(b"CONNECTED\n") and write.endswith(b"\0\n")
    assert ResumeClient() in out
    assert play.facts.named("client_connected", login="producer", version="1.2")


def test_frames_sent_behind_connect_wait_for_connected_then_go_in_order() -> None:
    play = Play(ROUTES)
    play.client(
        "CONNECT\naccept-version:1.2\nlogin:producer\npasscode:p\n\n\0"
        "SEND\ndestination:/queue/plain\n\nearly\0"
    )
    play.record(play.core.legacy_opened())
    out = play.legacy("CONNECTED\nversion:1.2\n\n\0\n")
    assert frames(to_legacy(out))[0].body == b"early"


def test_a_refused_login_is_forwarded_and_the_session_ends() -> None:
    play = Play(ROUTES)
    play.client("CONNECT\naccept-version:1.2\nlogin:x\npasscode:bad\n\n\0")
    play.record(play.core.legacy_opened())
    out = play.legacy("ERROR\nmessage:User name [x] or password is invalid.\n\n\0\n")
    assert frames(to_client(out))[0].command == "ERROR"
    assert only(out, CloseClient).after_error
    assert CloseLegacy() in out and SessionEnded() in out
    assert play.facts.named("client_refused")


def test_legacy_unavailable_answers_an_error() -> None:
    play = Play(ROUTES)
    play.client("CONNECT\naccept-version:1.2\nlogin:x\npasscode:p\n\n\0")
    out = play.record(play.core.legacy_failed("connection refused"))
    (error,) = frames(to_client(out))
    assert error.get("message") == "legacy broker unavailable"
    assert SessionEnded() in out


def test_a_first_frame_other_than_connect_is_an_error() -> None:
    play = Play(ROUTES)
    out = play.client("SEND\ndestination:/queue/x\n\n\0")
    (error,) = frames(to_client(out))
    assert "expected CONNECT or STOMP" in (error.get("message") or "")


def test_a_proxy_receipt_is_swallowed_with_its_eol_even_across_reads() -> None:
    play = Play(ROUTES)
    play.connect()
    play.client("BEGIN\ntransaction:t\n\n\0SEND\ndestination:/queue/cut.a\ntransaction:t\n\nx\0")
    sent = submitted(play.log)
    for item in sent:
        play.outcome(item.token)
    commit = play.client("COMMIT\ntransaction:t\n\n\0")
    (control,) = submitted(commit)
    forwarded = play.outcome(control.token)
    (legacy_commit,) = frames(to_legacy(forwarded))
    receipt = legacy_commit.get("receipt")
    assert receipt and receipt.startswith("strangler-legacy-")
    # Legacy's answer ends one read; its EOL opens the next, with a MESSAGE behind it.
    assert to_client(play.legacy(f"RECEIPT\nreceipt-id:{receipt}\n\n\0")) == b""
    message = "MESSAGE\ndestination:/queue/x\nmessage-id:1\nsubscription:0\n\nm\0\n"
    assert to_client(play.legacy("\n" + message)) == message.encode()
    assert play.facts.named("transaction_committed", transaction="t")


def test_a_client_that_closes_without_disconnect_closes_legacy_at_once() -> None:
    play = Play(ROUTES)
    play.connect()
    play.client("SUBSCRIBE\nid:0\ndestination:/queue/plain\n\n\0")
    out = play.record(play.core.client_closed())
    assert CloseLegacy() in out and SessionEnded() in out
    assert play.facts.named("client_disconnected")


def test_a_closing_client_still_gets_its_fire_and_forget_frames_delivered() -> None:
    play = Play(ROUTES)
    play.connect(version="1.2")
    play.client("SEND\ndestination:/queue/cut.a\n\nlast\0")
    (sent,) = submitted(play.log)
    out = play.record(play.core.client_closed())
    assert CloseLegacy() not in out  # a fallback may still need legacy
    fell = play.outcome(sent.token, "refused", False)
    assert frames(to_legacy(fell))[0].body == b"last"
    assert CloseLegacy() in fell and SessionEnded() in fell


def test_a_closed_client_with_receipts_owed_waits_for_legacy_then_closes() -> None:
    play = Play(ROUTES)
    play.connect()
    play.client("SEND\ndestination:/queue/plain\nreceipt:r1\n\nx\0")
    out = play.record(play.core.client_closed())
    assert CloseLegacy() not in out and StartTimer("settle", 30.0) in out
    answered = play.legacy("RECEIPT\nreceipt-id:r1\n\n\0\n")
    assert CloseLegacy() in answered
    assert play.facts.named("message_confirmed", broker="legacy")


def test_disconnect_waits_for_amazonmq_primaries_but_not_for_mirror_copies() -> None:
    play = Play(ROUTES)
    play.connect()
    copy = submitted(play.client("SEND\ndestination:/queue/mirror.a\n\nm\0"))[0]
    out = play.client("DISCONNECT\nreceipt:bye\n\n\0")
    assert frames(to_legacy(out))[0].command == "DISCONNECT"  # the copy does not hold it
    play2 = Play(ROUTES)
    play2.connect()
    primary = submitted(play2.client("SEND\ndestination:/queue/cut.a\n\np\0"))[0]
    held = play2.client("DISCONNECT\nreceipt:bye\n\n\0")
    assert to_legacy(held) == b"" and PauseClient() in held
    fell = play2.outcome(primary.token, "refused", False)
    sent = frames(to_legacy(fell))
    assert [f.command for f in sent] == ["SEND", "DISCONNECT"]  # the fallback first
    # The copy of the first session settles after legacy is done with it.
    closed = play.legacy("RECEIPT\nreceipt-id:bye\n\n\0\n")
    assert b"receipt-id:bye" in to_client(closed)
    gone = play.record(play.core.legacy_closed("closed"))
    assert SessionEnded() not in gone  # the copy is still pending
    ended = play.outcome(copy.token)
    assert CloseAmazonMQ(graceful=True) in ended and SessionEnded() in ended


def test_a_closing_session_gives_up_on_a_silent_amazonmq_after_the_settle_time() -> None:
    play = Play(ROUTES, drain_timeout=3.0)
    play.connect()
    copy = submitted(play.client("SEND\ndestination:/queue/mirror.a\n\nm\0"))[0]
    play.record(play.core.client_closed())
    out = play.timer("settle")
    assert of(out, DropAmazonMQ)
    ended = play.outcome(copy.token, "session closed before amazonmq confirmed", True)
    assert play.facts.named("message_mirror_failed")[0]["possibly_stored"] is True
    assert SessionEnded() in ended


def test_legacy_error_reaches_the_client_and_the_session_lives_until_legacy_closes() -> None:
    play = Play(ROUTES)
    play.connect()
    out = play.legacy("ERROR\nmessage:boom\nreceipt-id:r1\n\n\0\n")
    (error,) = frames(to_client(out))
    assert error.get("message") == "boom"
    assert not of(out, CloseClient)  # ActiveMQ keeps the connection after a non-fatal one
    assert to_legacy(play.client("SEND\ndestination:/queue/plain\n\nx\0"))
    gone = play.record(play.core.legacy_closed("closed"))  # a fatal one: legacy closes
    assert CloseClient(after_error=True) in gone and SessionEnded() in gone


def test_a_frame_missing_a_required_header_is_legacys_to_refuse() -> None:
    play = Play(ROUTES)
    play.connect()
    out = play.client("SEND\nreceipt:e\n\nno destination\0")
    (frame,) = frames(to_legacy(out))
    assert frame.command == "SEND" and frame.get("receipt") == "e"
    assert to_client(out) == b"" and not of(out, CloseClient)


def test_legacy_closing_ends_the_client_session() -> None:
    play = Play(ROUTES)
    play.connect()
    out = play.record(play.core.legacy_closed("reset"))
    assert CloseClient(after_error=False) in out and SessionEnded() in out
    assert play.facts.named("client_disconnected", reason="legacy closed the connection")


def test_a_second_connect_and_server_frames_from_the_client_are_errors() -> None:
    for frame in ("CONNECT\naccept-version:1.2\n\n\0", "MESSAGE\ndestination:/q\n\n\0"):
        play = Play(ROUTES)
        play.connect()
        (error,) = frames(to_client(play.client(frame)))
        assert error.command == "ERROR"


def test_the_handshake_must_finish_in_time() -> None:
    play = Play(ROUTES, handshake_timeout=5.0)
    assert StartTimer("handshake", 5.0) in play.log
    out = play.timer("handshake")
    assert CloseClient(after_error=False) in out and SessionEnded() in out
