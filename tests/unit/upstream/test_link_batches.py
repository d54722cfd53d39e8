"""The Amazon MQ link's receipts: batchable frames are held back to go out together with
one receipt on the last (or with the next frame that needs its own), and a receipt
confirms every frame written before it (the broker handles a connection's frames in
order). The socket is a list of writes here; tests/integration exercise real brokers."""

from __future__ import annotations

import asyncio
import io

from strangler.facts import FactSink
from strangler.routes import parse_routes
from strangler.stomp import Frame, FrameParser, Limits
from strangler.upstream import BrokerHealth, BrokerLink
from strangler.upstream.link import MAX_BATCH

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
    """Submit ``batches`` (token, batchable) one event-loop turn each; the frame held
    back at the end is released (as its timer would); then the broker answers the
    receipt of token ``answer`` (or sends an ERROR naming it: ``!token``)."""
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
                link.submit(token, frame(token), batch=batchable)
            await asyncio.sleep(0)  # the turn ends: one write
        link._release()
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


def frame(token: str) -> bytes:
    return f"SEND\ndestination:/q\ntoken:{token}\n\n{token}\0".encode()


def tokens_in(data: bytes) -> list[str | None]:
    frames = [e for e in FrameParser(version="1.2").feed(data) if isinstance(e, Frame)]
    return [f.get("token") for f in frames]


def test_copies_are_held_back_and_go_out_together_with_one_receipt() -> None:
    written, outcomes = run([[("a", True), ("b", True)], [("c", True)]], "c")
    assert len(written) == 1  # nothing written until the release
    assert written[0][:2] == [None, None] and written[0][2] is not None
    assert outcomes == [("a", None), ("b", None), ("c", None)]  # in order, all confirmed


def test_frames_that_need_their_own_receipt_keep_it_and_take_the_held_ones_along() -> None:
    written, _ = run([[("a", True), ("p", False), ("b", True)]], "b")
    assert [[r is not None for r in w] for w in written] == [[False, True, True]]


def test_a_receipt_confirms_every_frame_written_before_it_not_after() -> None:
    written, outcomes = run([[("a", True), ("b", True)], [("p", False)], [("c", True)]], "p")
    assert [[r is not None for r in w] for w in written] == [[False, False, True], [True]]
    assert outcomes == [("a", None), ("b", None), ("p", None)]  # c waits for its own receipt


def test_an_error_naming_a_receipt_fails_that_frame_and_confirms_those_before() -> None:
    _, outcomes = run([[("a", False)], [("b", False)]], "!b")
    assert outcomes == [("a", None), ("b", "ERROR: refused")]


def new_link(sink: FactSink, delay: float = 60.0) -> tuple[BrokerLink, Writes]:
    config = parse_routes(ROUTES, "r.yaml").brokers["amazonmq"]
    link = BrokerLink(
        "amazonmq", config, "1.2", BrokerHealth(sink), limits=Limits(), batch_delay=delay
    )
    writes = Writes()
    link._writer = writes  # type: ignore[assignment]
    return link, writes


def stream(delay: float, copies: int) -> list[bytes]:
    """One copy submitted per event-loop turn; the writes made."""
    sink = FactSink(io.StringIO(), interval=0.01)

    async def main() -> list[bytes]:
        link, writes = new_link(sink, delay)
        for n in range(copies):
            link.submit(str(n), frame(str(n)), batch=True)
            await asyncio.sleep(0)
        return writes.chunks

    chunks = asyncio.run(main())
    sink.close()
    return chunks


def test_a_stream_of_copies_goes_out_max_batch_at_a_time() -> None:
    chunks = stream(60.0, 3 * MAX_BATCH)
    assert [tokens_in(c) for c in chunks] == [
        [str(n) for n in range(k * MAX_BATCH, (k + 1) * MAX_BATCH)] for k in range(3)
    ]
    for chunk in chunks:  # a receipt on the last of each batch only
        assert [r is not None for r in receipts_in(chunk)] == [False] * (MAX_BATCH - 1) + [True]


def test_with_no_delay_each_turns_copies_go_out_at_once() -> None:
    chunks = stream(0, 3)
    assert [tokens_in(c) for c in chunks] == [["0"], ["1"], ["2"]]
    assert all(receipts_in(c)[0] is not None for c in chunks)


def test_held_copies_are_written_with_a_receipt_once_the_delay_passes() -> None:
    sink = FactSink(io.StringIO(), interval=0.01)

    async def main() -> tuple[list[bytes], float]:
        link, writes = new_link(sink, delay=0.05)
        written = asyncio.Event()
        write = writes.write

        def noting(data: bytes) -> None:
            write(data)
            written.set()

        writes.write = noting  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        start = loop.time()
        link.submit("a", frame("a"), batch=True)
        link.submit("b", frame("b"), batch=True)
        await asyncio.wait_for(written.wait(), 5)
        return writes.chunks, loop.time() - start

    chunks, waited = asyncio.run(main())
    sink.close()
    assert [tokens_in(c) for c in chunks] == [["a", "b"]]
    assert [r is not None for r in receipts_in(chunks[0])] == [False, True]
    assert waited >= 0.04  # held for the delay, not written at the end of the turn


def test_after_an_error_naming_no_receipt_each_frame_resent_asks_its_own() -> None:
    sink = FactSink(io.StringIO(), interval=0.01)
    outcomes: list[tuple[str, str | None, bool]] = []

    async def main() -> tuple[list[bytes], list[bytes], BrokerLink]:
        link, first = new_link(sink)
        link.on_outcome = lambda token, failure, stored: outcomes.append((token, failure, stored))
        again = Writes()
        connected = asyncio.Event()

        async def connect() -> None:  # the next endpoint accepts at once
            reader = asyncio.StreamReader()
            link._connected(reader, again, FrameParser(), (0, 0), "ep")  # type: ignore[arg-type]
            connected.set()

        link._connect = connect  # type: ignore[method-assign]
        for token in "abc":
            link.submit(token, frame(token), batch=True)
        await asyncio.sleep(0)
        link._release()  # a, b and c written, a receipt on c
        link._lost_by_error = True  # the broker's ERROR named no receipt
        link._lose_connection("ERROR: refused")
        await connected.wait()
        await asyncio.sleep(0)  # the resend's turn ends: one write, nothing held
        return first.chunks, again.chunks, link

    before, chunks, link = asyncio.run(main())
    sink.close()
    assert [receipts_in(c)[:2] for c in before] == [[None, None]]
    assert [tokens_in(c) for c in chunks] == [["a", "b", "c"]]
    receipts = receipts_in(chunks[0])
    assert None not in receipts and len(set(receipts)) == 3  # the refused one is found
    # The broker refuses b by its receipt: a is confirmed, b failed, c waits.
    link._answered(str(receipts[0]).encode(), None)
    link._answered(str(receipts[1]).encode(), "ERROR: refused")
    assert outcomes == [("a", None, False), ("b", "ERROR: refused", False)]
    link._answered(str(receipts[2]).encode(), None)
    assert link._careful is None  # every resent frame answered: batching again


def test_a_held_frame_lost_with_the_connection_was_not_written() -> None:
    sink = FactSink(io.StringIO(), interval=0.01)
    outcomes: list[tuple[str, str | None, bool]] = []

    async def main() -> None:
        link, _ = new_link(sink)
        link.on_outcome = lambda token, failure, stored: outcomes.append((token, failure, stored))
        link.submit("a", frame("a"), batch=True, resendable=False)
        await asyncio.sleep(0)
        link._release()  # a written
        link.submit("b", frame("b"), batch=True, resendable=False)
        await asyncio.sleep(0)  # b held
        link.drop("hung")

    asyncio.run(main())
    sink.close()
    assert outcomes == [("a", "hung", True), ("b", "hung", False)]
