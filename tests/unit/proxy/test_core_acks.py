"""When the core lets a read's TCP ACK wait for a reply instead of re-arming TCP_QUICKACK
(``proxy/connection.py``): only when a reply will carry it promptly, or legacy is owed
nothing it could be holding behind an unacknowledged write."""

from __future__ import annotations

from playbook import Play

SEND = "SEND\ndestination:/queue/a\n{extra}\nbody\0"
RECEIPTED = SEND.format(extra="receipt:r1\n")
PLAIN = SEND.format(extra="")
ROUTES = """\
    - {name: moved, match: {prefix: /queue/cut.}, mode: cutover, on_failure: legacy}
    """


def test_a_read_ending_with_a_receipted_frame_lets_its_ack_ride_on_the_receipt() -> None:
    play = Play()
    play.connect()
    play.client(RECEIPTED)
    assert play.core.client_ack_may_wait()
    play.client(PLAIN + RECEIPTED.replace("r1", "r2") + "\n")  # a heart-beat after it
    assert play.core.client_ack_may_wait()
    play.client("SUBSCRIBE\nid:1\ndestination:/queue/b\nreceipt:r3\n\n\0")
    assert play.core.client_ack_may_wait()


def test_a_read_that_no_reply_answers_is_acknowledged_at_once() -> None:
    play = Play()
    play.connect()
    play.client(RECEIPTED.replace("r1", "r0") + PLAIN)  # the receipted frame is not last
    assert not play.core.client_ack_may_wait()
    play.client("\n")  # a heart-beat only
    assert not play.core.client_ack_may_wait()
    play.client(RECEIPTED[:-1])  # the frame's NUL has not come yet
    assert not play.core.client_ack_may_wait()
    play.client(RECEIPTED[-1:])
    assert play.core.client_ack_may_wait()
    play.client(RECEIPTED.replace("r1", "r4") + "SEND\ndestination:/queue/a\n")  # then part
    assert not play.core.client_ack_may_wait()


def test_before_connected_every_client_read_is_acknowledged_at_once() -> None:
    play = Play()
    play.client("CONNECT\naccept-version:1.2\nhost:x\nlogin:p\npasscode:p\nreceipt:c\n\n\0")
    assert not play.core.client_ack_may_wait()
    play.client(RECEIPTED)  # held until legacy answers the login
    assert not play.core.client_ack_may_wait()


def test_frames_held_while_amazonmq_s_window_is_full_are_acknowledged_at_once() -> None:
    play = Play(ROUTES, max_inflight=1)
    play.connect()
    play.client("SEND\ndestination:/queue/cut.a\n\nbody\0")  # fills the window
    assert play.core.state.blocked is not None
    play.client(RECEIPTED)  # held: its RECEIPT waits for Amazon MQ's confirmation
    assert play.core.state.held
    assert not play.core.client_ack_may_wait()


def test_legacy_may_wait_for_its_ack_only_when_it_owes_nothing() -> None:
    play = Play()
    play.connect()
    assert play.core.legacy_ack_may_wait()
    play.client(RECEIPTED + RECEIPTED.replace("r1", "r2"))
    play.legacy("RECEIPT\nreceipt-id:r1\n\n\0")
    assert not play.core.legacy_ack_may_wait()  # r2 may sit behind r1's ACK
    play.legacy("RECEIPT\nreceipt-id:r2\n\n\0")
    assert play.core.legacy_ack_may_wait()


def test_a_consumers_legacy_is_acknowledged_at_once_for_good() -> None:
    play = Play()
    play.connect()
    play.client("SUBSCRIBE\nid:1\ndestination:/queue/b\n\n\0")
    play.legacy("MESSAGE\nsubscription:1\nmessage-id:m1\ndestination:/queue/b\n\nx\0")
    assert not play.core.legacy_ack_may_wait()
    play.client("UNSUBSCRIBE\nid:1\n\n\0")
    play.legacy("\n")
    assert not play.core.legacy_ack_may_wait()


def test_legacy_is_acknowledged_at_once_while_a_transaction_is_open() -> None:
    play = Play()
    play.connect()
    play.client("BEGIN\ntransaction:t1\n\n\0")
    play.legacy("\n")
    assert not play.core.legacy_ack_may_wait()
    play.client("COMMIT\ntransaction:t1\n\n\0")
    play.legacy("\n")
    assert play.core.legacy_ack_may_wait()


def test_the_login_answer_is_acknowledged_at_once() -> None:
    play = Play()
    play.client("CONNECT\naccept-version:1.2\nhost:x\nlogin:p\npasscode:p\n\n\0")
    assert not play.core.legacy_ack_may_wait()
