"""The Amazon MQ link's receipts: one per write for batchable frames, and a receipt
confirms every frame written before it (the broker handles a connection's frames in
order). The socket is a list of writes here; tests/integration exercise real brokers."""

from __future__ import annotations

import asyncio
import io

from strangler.facts import FactSink
from strangler.routes import parse_routes
from strangler.stomp import Frame, FrameParser, Limits
from strangler.upstream import BrokerHealth, BrokerLink

ROUTES = """\
brokers:
  legacy: {url: stomp://127.0.0.1:1}
  amazonmq: {url: stomp+ssl://127.0.0.1:1}
"""


class Writes:
    """Stands in for the connection's StreamWriter: keeps what was written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def close(self) -> None:
        pass


def receipts_in(data: bytes) -> list[str | None]:
    frames = [e for e in FrameParser(version="1.2").feed(data) if isinstance(e, Frame)]
    return [f.get("receipt") for f in frames]


def run(
    batches: list[list[tuple[str, bool]]], answer: str
) -> tuple[list[list[str | None]], list[tuple[str, str | None]]]:
    """Submit ``batches`` (token, batchable) one event-loop turn each; then the broker
    answers the receipt of token ``answer`` (or sends an ERROR naming it: ``!token``)."""
    config = parse_routes(ROUTES, "r.yaml").brokers["amazonmq"]
    sink = FactSink(io.StringIO(), interval=0.01)
    outcomes: list[tuple[str, str | None]] = []

    async def main() -> list[list[str | None]]:
        link = BrokerLink("amazonmq", config, "1.2", BrokerHealth(sink), limits=Limits())
        writes = Writes()
        link._writer = writes  # type: ignore[assignment]  # the connection, as a list
        link.on_outcome = lambda token, failure, stored: outcomes.append((token, failure))
        for batch in batches:
            for token, batchable in batch:
                link.submit(
                    token,
                    f"SEND\ndestination:/q\ntoken:{token}\n\n{token}\0".encode(),
                    batch=batchable,
                )
            await asyncio.sleep(0)  # the turn ends: one write
        written = [receipts_in(chunk) for chunk in writes.chunks]
        failed = answer.startswith("!")
        token = answer.lstrip("!")
        receipt = next(w.receipt for w in link._pending if w.token == token)
        assert receipt is not None
        link._answered(receipt, "ERROR: refused" if failed else None)
        return written

    written = asyncio.run(main())
    sink.close()
    return written, outcomes


def test_a_write_of_copies_carries_one_receipt_on_its_last_frame() -> None:
    written, outcomes = run([[("a", True), ("b", True), ("c", True)]], "c")
    (receipts,) = written
    assert receipts[:2] == [None, None] and receipts[2] is not None
    assert outcomes == [("a", None), ("b", None), ("c", None)]  # in order, all confirmed


def test_frames_that_need_their_own_receipt_keep_it() -> None:
    written, _ = run([[("a", True), ("p", False), ("b", True)]], "b")
    assert [r is not None for r in written[0]] == [False, True, True]


def test_a_receipt_confirms_every_frame_written_before_it_not_after() -> None:
    written, outcomes = run([[("a", True), ("b", True)], [("c", True)]], "b")
    assert [r is not None for r in written[0] + written[1]] == [False, True, True]
    assert outcomes == [("a", None), ("b", None)]  # c waits for its own receipt


def test_an_error_naming_a_receipt_fails_that_frame_and_confirms_those_before() -> None:
    _, outcomes = run([[("a", False)], [("b", False)]], "!b")
    assert outcomes == [("a", None), ("b", "ERROR: refused")]
