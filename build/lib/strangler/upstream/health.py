"""Proxy-wide view of each broker's reachability.

Sessions report what they saw; only a change of state becomes a fact
(``broker_unavailable`` / ``broker_recovered``), so a broker outage seen by
a hundred sessions is one line in the audit trail, not a hundred.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..facts import Fact, FactSink


@dataclass
class BrokerHealth:
    facts: FactSink
    up: dict[str, bool] = field(default_factory=dict)
    last_reason: dict[str, str] = field(default_factory=dict)

    def mark_up(self, broker: str, endpoint: str) -> None:
        if self.up.get(broker) is False:
            self.facts.emit(Fact.BROKER_RECOVERED, broker=broker, endpoint=endpoint)
        self.up[broker] = True

    def mark_down(self, broker: str, reason: str) -> None:
        if self.up.get(broker, True):
            self.facts.emit(Fact.BROKER_UNAVAILABLE, broker=broker, reason=reason)
        self.up[broker] = False
        self.last_reason[broker] = reason
