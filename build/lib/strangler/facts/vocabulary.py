"""The closed vocabulary of facts.

A fact is named for what happened, in the past tense, and is data: the
event name plus flat JSON fields. New names are added here, never invented at
a call site, so the audit trail (and replay, which reads it) has a fixed shape.
"""

from __future__ import annotations

from enum import StrEnum


class Fact(StrEnum):
    PROXY_STARTED = "proxy_started"
    PROXY_STOPPED = "proxy_stopped"
    ROUTES_LOADED = "routes_loaded"
    ROUTES_APPLIED = "routes_applied"
    ROUTES_REJECTED = "routes_rejected"
    CLIENT_CONNECTED = "client_connected"
    CLIENT_REFUSED = "client_refused"
    CLIENT_DISCONNECTED = "client_disconnected"
    CLIENT_PROTOCOL_ERROR = "client_protocol_error"
    MESSAGE_ROUTED = "message_routed"
    MESSAGE_CONFIRMED = "message_confirmed"
    MESSAGE_MIRROR_FAILED = "message_mirror_failed"
    MESSAGE_FELL_BACK = "message_fell_back"
    MESSAGE_RESENT = "message_resent"
    MESSAGE_REJECTED = "message_rejected"
    BROKER_UNAVAILABLE = "broker_unavailable"
    BROKER_RECOVERED = "broker_recovered"
    TRANSACTION_COMMITTED = "transaction_committed"
    TRANSACTION_ABORTED = "transaction_aborted"
    TRANSACTION_PARTIAL_COMMIT = "transaction_partial_commit"
    FACTS_DROPPED = "facts_dropped"
    CONSUMER_SUBSCRIBED = "consumer_subscribed"
    CONSUMER_SUBSCRIPTION_LOST = "consumer_subscription_lost"
    CONSUMER_DRAINED = "consumer_drained"
    CONSUMER_ACK_FAILED = "consumer_ack_failed"
    MESSAGE_DELIVERED = "message_delivered"
    # `strangler drain` / `strangler verify` (strangler/drain/), not the proxy.
    DRAIN_PLANNED = "drain_planned"  # --dry-run: the backlog that would move
    DRAIN_STARTED = "drain_started"
    DRAIN_MESSAGE_MOVED = "drain_message_moved"  # Amazon MQ confirmed it, then legacy took the ACK
    DRAIN_DUPLICATE_POSSIBLE = "drain_duplicate_possible"  # an earlier drain may have sent it
    DRAIN_FINISHED = "drain_finished"  # the final count check
    VERIFY_FINISHED = "verify_finished"
