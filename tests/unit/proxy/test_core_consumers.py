"""Consumers across two brokers, without sockets: merged subscriptions, ACK routing,
id-less 1.0 subscriptions, renames undone, legacy's side drained."""

from __future__ import annotations

from playbook import Play, frames, of, submitted, subscribed, to_client, to_legacy

from strangler.proxy.core.commands import UnsubscribeAmazonMQ

ROUTES = """\
    - {name: moved, match: {prefix: /queue/cut.}, mode: cutover, on_failure: legacy}
    - {name: renamed, match: {exact: /queue/old}, mode: cutover, on_failure: legacy,
       target_destination: /queue/new}
    """


def message(destination: str, sub: str | None, message_id: str, body: str = "m") -> str:
    line = f"subscription:{sub}\n" if sub is not None else ""
    return f"MESSAGE\ndestination:{destination}\n{line}message-id:{message_id}\n\n{body}\0"


def test_a_cutover_subscription_reads_both_brokers_under_the_clients_id() -> None:
    play = Play(ROUTES)
    play.connect()
    out = play.client("SUBSCRIBE\nid:7\ndestination:/queue/cut.a\nack:client-individual\n\n\0")
    assert frames(to_legacy(out))[0].get("id") == "7"
    (amq,) = subscribed(out)
    assert amq.sub_id == "7" and frames(amq.data)[0].get("destination") == "/queue/cut.a"
    delivered = play.amazonmq_message(message("/queue/cut.a", "7", "a1"))
    assert to_client(delivered) == (message("/queue/cut.a", "7", "a1") + "\n").encode()
    legacy = play.legacy(message("/queue/cut.a", "7", "l1") + "\n")
    assert b"message-id:l1" in to_client(legacy)
    acked = play.client("ACK\nid:a1\nreceipt:k\n\n\0")
    assert to_legacy(acked) == b""
    (ack,) = submitted(acked)
    assert frames(ack.data)[0].get("id") == "a1"
    assert b"receipt-id:k" in to_client(play.outcome(ack.token))
    to_old = play.client("ACK\nid:l1\n\n\0")
    assert frames(to_legacy(to_old))[0].get("id") == "l1"


def test_an_idless_1_0_subscription_gets_our_id_on_both_and_the_client_never_sees_it() -> None:
    play = Play(ROUTES)
    play.connect(version="1.0")
    out = play.client("SUBSCRIBE\ndestination:/queue/cut.a\n\n\0")
    ours = frames(to_legacy(out), "1.0")[0].get("id")
    assert ours and ours.startswith("strangler-sub-")
    (amq,) = subscribed(out)
    assert amq.sub_id == ours
    for got in (
        play.legacy(message("/queue/cut.a", ours, "l1") + "\n"),
        play.amazonmq_message(message("/queue/cut.a", ours, "a1")),
    ):
        (frame,) = frames(to_client(got), "1.0")
        assert frame.get("subscription") is None  # as the broker sends an id-less one
    gone = play.client("UNSUBSCRIBE\ndestination:/queue/cut.a\n\n\0")
    assert frames(to_legacy(gone), "1.0")[0].get("id") == ours
    assert [u.sub_id for u in of(gone, UnsubscribeAmazonMQ)] == [ours]


def test_only_the_routes_own_rename_is_undone_on_amazonmq_messages() -> None:
    play = Play(ROUTES)
    play.connect()
    out = play.client("SUBSCRIBE\nid:r\ndestination:/queue/old\n\n\0")
    (amq,) = subscribed(out)
    assert frames(amq.data)[0].get("destination") == "/queue/new"
    (frame,) = frames(to_client(play.amazonmq_message(message("/queue/new", "r", "a1"))))
    assert frame.get("destination") == "/queue/old"


def test_a_wildcard_subscription_reads_both_and_keeps_each_messages_destination() -> None:
    play = Play(ROUTES)
    play.connect()
    out = play.client("SUBSCRIBE\nid:w\ndestination:/queue/cut.*\n\n\0")
    (amq,) = subscribed(out)
    assert frames(amq.data)[0].get("destination") == "/queue/cut.*"
    for name in ("/queue/cut.x", "/queue/cut.y"):
        (frame,) = frames(to_client(play.amazonmq_message(message(name, "w", name))))
        assert frame.get("destination") == name


def test_a_plain_subscription_is_a_pass_through() -> None:
    play = Play(ROUTES)
    play.connect()
    out = play.client("SUBSCRIBE\nid:p\ndestination:/queue/plain\n\n\0")
    assert subscribed(out) == []
    text = message("/queue/plain", "p", "l1") + "\n"
    assert to_client(play.legacy(text)) == text.encode()
    assert to_legacy(play.client("ACK\nid:l1\n\n\0")) == b"ACK\nid:l1\n\n\0"


def test_legacys_side_of_a_cutover_queue_is_dropped_once_its_backlog_is_empty() -> None:
    play = Play(ROUTES, backlog_check_interval=1.0)
    play.connect()
    play.client("SUBSCRIBE\nid:d\ndestination:/queue/cut.a\n\n\0")
    play.now += 2.0
    browse = play.timer("backlog")
    (sub,) = frames(to_legacy(browse))
    assert sub.get("browser") == "true"
    browse_id = sub.get("id")
    end = (
        f"MESSAGE\nsubscription:{browse_id}\nbrowser:end\nmessage-id:0\n"
        "destination:/queue/cut.a\n\n\0\n"
    )
    out = play.legacy(end)
    assert to_client(out) == b""  # the proxy's own browse, EOL and all
    unsubscribed = [f.get("id") for f in frames(to_legacy(out))]
    assert unsubscribed == [browse_id, "d"]
    assert play.facts.named("consumer_drained", subscription="d")
    refilled = play.record(play.core.legacy_refilled("moved"))
    assert frames(to_legacy(refilled))[0].get("id") == "d"


def test_an_ack_in_an_aborted_transaction_can_be_made_again_to_the_same_broker() -> None:
    # #20.8: the aborted ACK was forgotten; the next ACK of that message went to legacy,
    # which refused it, and Amazon MQ redelivered the message.
    play = Play(ROUTES)
    play.connect()
    play.client("SUBSCRIBE\nid:7\ndestination:/queue/cut.a\nack:client-individual\n\n\0")
    play.amazonmq_message(message("/queue/cut.a", "7", "a1"))
    play.client("BEGIN\ntransaction:t\n\n\0")
    acked = play.client("ACK\nid:a1\ntransaction:t\n\n\0")
    assert [frames(s.data)[0].command for s in submitted(acked)] == ["BEGIN", "ACK"]
    play.client("ABORT\ntransaction:t\n\n\0")
    again = play.client("ACK\nid:a1\n\n\0")
    assert to_legacy(again) == b""
    (ack,) = submitted(again)
    assert frames(ack.data)[0].get("id") == "a1" and frames(ack.data)[0].get("transaction") is None


def test_a_subscribe_receipt_waits_until_amazonmq_has_the_subscription() -> None:
    # #20.9: legacy's RECEIPT came before Amazon MQ had the subscription: a message sent
    # right after it (a topic's) missed Amazon MQ's side.
    play = Play(ROUTES)
    play.connect()
    play.client("SUBSCRIBE\nid:7\ndestination:/queue/cut.a\nreceipt:s\n\n\0")
    assert to_client(play.legacy("RECEIPT\nreceipt-id:s\n\n\0\n")) == b""
    out = play.record(play.core.amazonmq_subscribed("7", None))
    assert to_client(out) == b"RECEIPT\nreceipt-id:s\n\n\0\n"
