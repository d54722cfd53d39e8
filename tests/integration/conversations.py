"""The scripted STOMP conversations of the transparency harness.

A conversation is a function of a :class:`Bed`: it opens raw clients (``wire.py``),
writes frames and waits for what it needs before going on (a RECEIPT, so many
MESSAGEs, end of input): never for a time. The same function runs once against
legacy directly and once through a proxy; ``transparency.py`` compares what each
client read.

Clients opened ``via_legacy`` talk to legacy directly in both runs (a backlog that was
there before anyone moved). Message bodies are ``<producer>:<n>``, so a merged stream
(cutover, split) can be compared per producer. Destination names hold the run's token,
so the two runs never see each other's messages.

Invariants: every client a conversation opens is closed by :meth:`Bed.close`, whatever
happened; a conversation never raises because the proxy answered differently (a wait
that ends empty-handed is a ``Missing`` token, and the comparison reports it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .harness import RunningProxy
from .modes import ALL_MODES
from .pieces import WriteLog
from .wire import Closed, Eol, Frame, Token, WireClient

LOGIN = ("producer", "producer-secret")


@dataclass(frozen=True)
class Variant:
    version: str = "1.2"
    ack: str = "auto"
    framing: bytes = b"\n"
    command: str = "CONNECT"  # or STOMP (1.1, 1.2)

    @property
    def label(self) -> str:
        parts = [self.version]
        if self.command != "CONNECT":
            parts.append(self.command)
        if self.framing != b"\n":
            parts.append("crlf")
        if self.ack != "auto":
            parts.append(self.ack)
        return "-".join(parts)


@dataclass
class Bed:
    """One run of a conversation: ``target_port`` is legacy itself or a proxy."""

    target_port: int
    legacy_port: int
    proxy: RunningProxy | None = None  # None: the direct run
    mode: str = "legacy"  # the proxy's mode for the conversation's destinations
    writes: WriteLog | None = None  # the proxy's writes to its clients (pieces.py)
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    clients: dict[str, WireClient] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    measured: dict[str, str] = field(default_factory=dict)
    # clients whose standalone EOLs are heart-beats: where they fall is timing, so they are
    # left out of the comparison (the heartbeats conversation checks their pace itself)
    beating: set[str] = field(default_factory=set)

    def open(
        self,
        name: str,
        version: str = "1.2",
        *,
        via_legacy: bool = False,
        command: str = "CONNECT",
        framing: bytes = b"\n",
        heartbeat: tuple[int, int] = (0, 0),
    ) -> WireClient:
        """A logged-in client (CONNECT written, CONNECTED or ERROR read). With heart-beats
        it promises one every ``heartbeat[0]`` ms and sends one every fifth of that while
        it waits to read (it cannot while another client of the conversation acts)."""
        port = self.legacy_port if via_legacy else self.target_port
        client = WireClient(name, port, framing=framing, heartbeat_ms=heartbeat[0] // 5)
        client.via_legacy = via_legacy
        self.clients[name] = client
        self.versions[name] = version
        headers: list[tuple[str, str]] = []
        if version != "1.0":
            headers += [("accept-version", version), ("host", "localhost")]
        headers += [("login", LOGIN[0]), ("passcode", LOGIN[1])]
        if heartbeat != (0, 0):
            headers.append(("heart-beat", f"{heartbeat[0]},{heartbeat[1]}"))
            self.beating.add(name)
        client.write(command, headers)
        # CONNECTED and the EOL ActiveMQ sends with it, even when a proxy writes them apart:
        # the EOL belongs to the login, not to whatever the client reads next.
        client.expect(
            "CONNECTED and its EOL",
            lambda tokens: (
                any(isinstance(t, Frame) for t in tokens) and isinstance(tokens[-1], Eol | Closed)
            ),
        )
        return client

    def dest(self, name: str, kind: str = "queue") -> str:
        return f"/{kind}/tx.{self.token}.{name}"

    @property
    def transcripts(self) -> dict[str, WireClient]:
        return self.clients

    def check(self, what: str, ok: bool, measured: str = "") -> None:
        """An outcome the conversation judged itself (compared between the runs);
        ``measured`` is shown when the runs disagree."""
        self.checks.append((what, ok))
        if measured:
            self.measured[what] = measured

    def wait_fact(self, event: str, count: int = 1, **match: Any) -> None:
        """Through the proxy: wait for ``count`` facts (a synchronisation point only the
        proxy has)."""
        if self.proxy is not None:
            self.proxy.wait_fact(event, count, **match)

    def amazonmq_side(self, destination: str, subscriptions: int = 1) -> None:
        """Through a proxy that reads Amazon MQ for ``destination`` too: wait until Amazon
        MQ confirmed that side of the subscription. The client's RECEIPT does not say so
        (issue #20.9, which the ``topic`` case pins); other cases wait, to test their own
        point on every run."""
        if self.mode in ("split", "cutover"):
            self.wait_fact(
                "consumer_subscribed", subscriptions, broker="amazonmq", destination=destination
            )

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


# -- frames every conversation writes ---------------------------------------------------


def send(
    client: WireClient,
    destination: str,
    body: str,
    receipt: str | None = None,
    transaction: str | None = None,
) -> None:
    # The split routes read their key from this header: which broker each message goes
    # to is then a function of its body, the same on every run (see modes.py).
    headers = [("destination", destination), ("split-key", body)]
    if transaction is not None:
        headers.append(("transaction", transaction))
    if receipt is not None:
        headers.append(("receipt", receipt))
    client.write("SEND", headers, body.encode())


def subscribe(
    client: WireClient, destination: str, sub_id: str | None, ack: str, receipt: str
) -> bool:
    headers = [("destination", destination), ("ack", ack), ("receipt", receipt)]
    if sub_id is not None:
        headers.insert(0, ("id", sub_id))
    client.write("SUBSCRIBE", headers)
    return client.receipt(receipt)


def ack(
    bed: Bed,
    client: WireClient,
    message: Frame,
    receipt: str | None = None,
    transaction: str | None = None,
) -> None:
    """ACK ``message`` the way the client's version names it."""
    version = bed.versions[client.name]
    headers: list[tuple[str, str]]
    if version == "1.2":
        headers = [("id", message.get("ack") or "")]
    else:
        headers = [("message-id", message.get("message-id") or "")]
        subscription = message.get("subscription")
        if version == "1.1" and subscription is not None:
            headers.append(("subscription", subscription))
    if transaction is not None:
        headers.append(("transaction", transaction))
    if receipt is not None:
        headers.append(("receipt", receipt))
    client.write("ACK", headers)
    if receipt is not None:
        client.receipt(receipt)


def control(client: WireClient, command: str, receipt: str | None = None, **headers: str) -> None:
    """BEGIN, COMMIT, ABORT, UNSUBSCRIBE: headers, an optional receipt waited for."""
    pairs = list(headers.items())
    if receipt is not None:
        pairs.append(("receipt", receipt))
    client.write(command, pairs)
    if receipt is not None:
        client.receipt(receipt)


def disconnect(client: WireClient, receipt: str = "bye") -> None:
    """DISCONNECT with a receipt, then read to end of input (everything the peer wrote)."""
    control(client, "DISCONNECT", receipt)
    client.until_closed()


def produce(
    bed: Bed,
    name: str,
    destination: str,
    bodies: list[str],
    *,
    version: str = "1.2",
    via_legacy: bool = False,
) -> None:
    """A producer that sends ``bodies`` (each with a receipt, all awaited), then leaves."""
    producer = bed.open(name, version, via_legacy=via_legacy)
    for i, body in enumerate(bodies):
        send(producer, destination, body, receipt=f"{name}{i}")
    for i in range(len(bodies)):
        producer.receipt(f"{name}{i}")
    disconnect(producer)


def bodies(messages: list[Frame]) -> list[str]:
    return [m.body.decode() for m in messages]


def leftovers(bed: Bed, destination: str, expected: list[str]) -> None:
    """A new consumer reads what is left on ``destination`` (up to a sentinel sent after
    it subscribed); the check says whether that is exactly ``expected``."""
    reader = bed.open("leftovers")
    subscribe(reader, destination, "left", "auto", "left")
    produce(bed, "sentinel", destination, ["sentinel:end"])
    reader.expect(
        f"sentinel and {len(expected)} leftovers",
        lambda _: (
            "sentinel:end" in bodies(reader.frames("MESSAGE"))
            and len(reader.frames("MESSAGE")) > len(expected)
        ),
    )
    left = [b for b in bodies(reader.frames("MESSAGE")) if not b.startswith("sentinel:")]
    bed.check(f"left on the queue: {sorted(expected)}", sorted(left) == sorted(expected))
    disconnect(reader)


# -- the conversations ----------------------------------------------------------------


def handshake(bed: Bed, v: Variant) -> None:
    """CONNECT (or STOMP) and DISCONNECT: every byte of CONNECTED and RECEIPT, and how
    they arrive (a CONNECTED cut from its EOL hangs clients that poll after CONNECT)."""
    client = bed.open("c", v.version, command=v.command, framing=v.framing)
    disconnect(client)


def queue(bed: Bed, v: Variant) -> None:
    """A backlog on legacy, a consumer with ``v.ack``, a producer through the target;
    acknowledgements by content; what is left afterwards."""
    q = bed.dest("q")
    produce(bed, "b", q, ["b:0", "b:1"], via_legacy=True)
    consumer = bed.open("c", v.version, command=v.command, framing=v.framing)
    subscribe(consumer, q, None if v.version == "1.0" else "s1", v.ack, "sub")
    produce(bed, "p", q, ["p:0", "p:1", "p:2"])
    messages = consumer.messages(5)
    acked: set[str] = set()
    if v.ack == "client" and messages:  # cumulative: the last one covers all
        ack(bed, consumer, messages[-1], receipt="ack")
        acked = set(bodies(messages))
    elif v.ack == "client-individual":
        # by content, in the bodies' order: in split mode the brokers' deliveries
        # interleave by timing (a deliberate difference), the ACKs and receipts must not
        for m in sorted(messages, key=lambda m: m.body):
            if m.body in (b"b:0", b"p:0", b"p:2"):
                ack(bed, consumer, m, receipt=f"ack-{m.body.decode()}")
                acked.add(m.body.decode())
    if v.version == "1.0":
        control(consumer, "UNSUBSCRIBE", "unsub", destination=q)
    else:
        control(consumer, "UNSUBSCRIBE", "unsub", id="s1")
    disconnect(consumer)
    unacked = [] if v.ack == "auto" else sorted(set(bodies(messages)) - acked)
    leftovers(bed, q, unacked)


def idless_subscription(bed: Bed, v: Variant) -> None:
    """STOMP 1.0 SUBSCRIBE without an id (normal in 1.0), ACK by message-id."""
    q = bed.dest("q")
    consumer = bed.open("c", "1.0")
    subscribe(consumer, q, None, v.ack, "sub")
    produce(bed, "p", q, ["p:0", "p:1"], version="1.0")
    messages = consumer.messages(2)
    if v.ack == "client" and messages:
        ack(bed, consumer, messages[-1], receipt="ack")
    control(consumer, "UNSUBSCRIBE", "unsub", destination=q)
    disconnect(consumer)
    leftovers(bed, q, [])


def wildcards(bed: Bed, v: Variant) -> None:
    """Wildcard subscriptions on a queue (``*``) and a topic (``>``): each MESSAGE names
    the destination it was sent to."""
    consumer = bed.open("c", v.version)
    for sub_id, where in (("wq", bed.dest("w.*")), ("wt", bed.dest("w.>", "topic"))):
        subscribe(consumer, where, sub_id, "auto", f"sub-{sub_id}")
        bed.amazonmq_side(where)
    producer = bed.open("p", v.version)
    for i, (kind, name) in enumerate(
        [("queue", "w.a"), ("queue", "w.b"), ("topic", "w.x.y"), ("topic", "w.z")]
    ):
        send(producer, bed.dest(name, kind), f"p:{i}", receipt=f"p{i}")
    for i in range(4):
        producer.receipt(f"p{i}")
    disconnect(producer)
    consumer.messages(4)
    disconnect(consumer)


def topic(bed: Bed, v: Variant) -> None:
    """A topic message published right after the subscriber's RECEIPT reaches it (the
    broker subscribed before it answered). The producer sent before, so its own path to
    the brokers is warm, as a busy producer's is. Through the proxy Amazon MQ is 50 ms
    away (``Case.settings``): a subscription that needs a new connection there takes a
    few round trips, the producer's message one."""
    producer = bed.open("p", v.version)
    send(producer, bed.dest("warm", "topic"), "w:0", receipt="w0")  # nobody reads it: gone
    producer.receipt("w0")
    consumer = bed.open("c", v.version)
    subscribe(consumer, bed.dest("t", "topic"), "t", "auto", "sub")
    send(producer, bed.dest("t", "topic"), "p:0", receipt="p0")
    producer.receipt("p0")
    disconnect(producer)
    consumer.messages(1)
    disconnect(consumer)


def composite(bed: Bed, v: Variant) -> None:
    """ActiveMQ composite destinations: a SEND to two queues, a subscription to two."""
    qa, qb = bed.dest("a"), bed.dest("b")
    consumer = bed.open("c", v.version)
    # ack: auto; ActiveMQ gives both copies of a composite SEND one message-id, and which
    # copy a client-individual ACK then settles is the broker's race, not the protocol.
    subscribe(consumer, f"{qa},{qb}", "k", "auto", "sub")
    bed.amazonmq_side(f"{qa},{qb}")
    producer = bed.open("p", v.version)
    send(producer, f"{qa},{qb}", "p:0", receipt="p0")
    send(producer, qa, "p:1", receipt="p1")
    producer.receipt("p0")
    producer.receipt("p1")
    disconnect(producer)
    consumer.messages(3)
    disconnect(consumer)
    leftovers(bed, qb, [])


def transactions(bed: Bed, v: Variant) -> None:
    """SENDs in an aborted and a committed transaction (COMMIT without a receipt: the
    next frame's receipt is the fence); ACKs in an aborted, then a committed one."""
    q = bed.dest("q")
    ack_mode = "client" if v.version == "1.0" else "client-individual"
    consumer = bed.open("c", v.version)
    subscribe(consumer, q, None if v.version == "1.0" else "t", ack_mode, "sub")
    producer = bed.open("p", v.version)
    control(producer, "BEGIN", transaction="t1")
    send(producer, q, "p:0", transaction="t1")
    send(producer, q, "p:1", transaction="t1")
    control(producer, "ABORT", "abort1", transaction="t1")
    control(producer, "BEGIN", transaction="t2")
    send(producer, q, "p:2", transaction="t2")
    send(producer, q, "p:3", transaction="t2")
    control(producer, "COMMIT", transaction="t2")
    disconnect(producer)
    messages = consumer.messages(2)[:2]
    control(consumer, "BEGIN", transaction="t3")
    for m in messages:
        ack(bed, consumer, m, transaction="t3")
    control(consumer, "ABORT", "abort3", transaction="t3")
    control(consumer, "BEGIN", transaction="t4")
    for m in messages:
        ack(bed, consumer, m, transaction="t4")
    control(consumer, "COMMIT", "commit4", transaction="t4")
    disconnect(consumer)
    leftovers(bed, q, [])


def heartbeats(bed: Bed, v: Variant) -> None:
    """Heart-beats both ways (the client's every second, the server's every 200 ms):
    CONNECTED's heart-beat header, then beats arriving about as often as asked while a
    message goes through."""
    q = bed.dest("q")
    consumer = bed.open("c", v.version, heartbeat=(1000, 200))
    subscribe(consumer, q, "h", "auto", "sub")
    produce(bed, "p", q, ["p:0"])
    consumer.messages(1)
    # The pace while the client reads (beats that came while it did not, during the
    # producer's turn, arrive together): three more beats from now.
    start, before = time.monotonic(), _standalone_eols(consumer.tokens)
    consumer.expect("3 heart-beats", lambda tokens: _standalone_eols(tokens) >= before + 3)
    times = [
        r.at for r in consumer.reads for t in r.tokens if isinstance(t, Eol) and not t.trailing
    ]
    pace = (times[before + 2] - start) / 3 if len(times) >= before + 3 else 0.0
    bed.check("server heart-beats about every 200 ms", 0.1 <= pace <= 0.5, f"{pace * 1000:.0f} ms")
    disconnect(consumer)


def _standalone_eols(tokens: list[Token]) -> int:
    return sum(1 for t in tokens if isinstance(t, Eol) and not t.trailing)


def missing_destination(bed: Bed, v: Variant) -> None:
    """A SEND without a destination: the broker's ERROR (and whether the connection stays)."""
    client = bed.open("c", v.version)
    client.write("SEND", [("receipt", "e")], b"p:0")
    client.expect(
        "ERROR", lambda tokens: any(isinstance(t, Frame) and t.command == "ERROR" for t in tokens)
    )
    if not client.closed:
        disconnect(client)


def drained_backlog(bed: Bed, v: Variant) -> None:
    """Cutover: the proxy checks legacy's backlog (a browse of its own) and drops legacy's
    side; the consumer must read nothing of that."""
    q = bed.dest("q")
    consumer = bed.open("c", v.version)
    subscribe(consumer, q, "dr", "auto", "sub")
    produce(bed, "p", q, ["p:0"])
    consumer.messages(1)
    bed.wait_fact("consumer_drained", subscription="dr")
    disconnect(consumer)


# -- the matrix ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    conversation: Callable[[Bed, Variant], None]
    variant: Variant = Variant()
    modes: tuple[str, ...] = ALL_MODES
    # proxy settings this case needs (a proxy of its own per mode)
    settings: tuple[tuple[str, float], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.conversation.__name__}-{self.variant.label}"


def _cases() -> list[Case]:
    cases = [Case(handshake, Variant(v)) for v in ("1.0", "1.1", "1.2")]
    cases += [Case(handshake, Variant(v, command="STOMP")) for v in ("1.1", "1.2")]
    cases.append(Case(handshake, Variant("1.2", framing=b"\r\n")))
    for version, modes in (
        ("1.0", ("auto", "client")),
        ("1.1", ("auto", "client", "client-individual")),
        ("1.2", ("auto", "client", "client-individual")),
    ):
        cases += [Case(queue, Variant(version, ack=a)) for a in modes]
    cases.append(Case(queue, Variant("1.2", ack="client-individual", framing=b"\r\n")))
    cases.append(Case(queue, Variant("1.1", command="STOMP")))
    cases += [Case(idless_subscription, Variant("1.0", ack=a)) for a in ("auto", "client")]
    cases += [Case(wildcards, Variant(v)) for v in ("1.0", "1.2")]
    cases += [
        Case(topic, Variant(v), settings=(("amazonmq_latency", 0.05),)) for v in ("1.0", "1.2")
    ]
    cases.append(Case(composite))
    cases += [Case(transactions, Variant(v)) for v in ("1.0", "1.1", "1.2")]
    cases += [Case(heartbeats, Variant(v)) for v in ("1.1", "1.2")]
    cases.append(Case(missing_destination))
    cases.append(
        Case(drained_backlog, modes=("cutover",), settings=(("backlog_check_interval", 0.05),))
    )
    return cases


CASES = _cases()
