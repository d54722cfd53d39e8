"""A BrokerLink for a session whose login ``client_credentials`` refuses never connects.

No broker is involved: a refused link must fail every frame before opening a socket.
"""

from __future__ import annotations

import asyncio
import io

from strangler.facts import FactSink
from strangler.routes import parse_routes
from strangler.stomp import Limits
from strangler.upstream import BrokerHealth, BrokerLink

ROUTES = """\
brokers:
  legacy: {url: stomp://127.0.0.1:1}
  amazonmq:
    url: stomp+ssl://127.0.0.1:1
    client_credentials:
      unmapped: refuse
      logins: {producer-a: {username_env: A_USER, password_env: A_PASSWORD}}
"""


def test_a_refused_link_fails_each_frame_at_once_and_leaves_health_alone() -> None:
    config = parse_routes(ROUTES, "r.yaml").brokers["amazonmq"]
    out = io.StringIO()
    sink = FactSink(out, interval=0.01)
    health = BrokerHealth(sink)

    async def run() -> list[tuple[str, str | None, bool]]:
        link = BrokerLink(
            "amazonmq", config, "1.2", health, limits=Limits(), login=config.login_for("stranger")
        )
        outcomes: list[tuple[str, str | None, bool]] = []
        link.on_outcome = lambda token, failure, stored: outcomes.append((token, failure, stored))
        for n in range(3):
            link.submit(f"t{n}", b"SEND\n\n\0")
        assert not link.up and link.pending == 0
        await link.close(graceful=True)
        return outcomes

    outcomes = asyncio.run(run())
    sink.close()
    reason = "login 'stranger' has no Amazon MQ credentials (client_credentials.unmapped: refuse)"
    assert outcomes == [(f"t{n}", reason, False) for n in range(3)]
    # Amazon MQ is not down because one producer may not use it: no broker fact, no state.
    assert health.up == {} and out.getvalue() == ""
