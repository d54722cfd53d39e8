"""stomp.py connections used the way applications use them, and the conversation they hold.

Two styles, each with stomp.py's 1.0, 1.1 and 1.2 connection classes:
- ``listener``: the application acts in its callbacks, on stomp.py's receiver thread
  (it ACKs a message in ``on_message``, as it arrives);
- ``polling``: the application registers stomp.py's own ``TestListener`` and pulls
  messages in a receive loop of its own (``message_list`` under its
  ``message_condition``), ACKing from its own thread.

Every connection also carries a recording listener, registered first: what stomp.py
told the application, in order, as ``wire`` tokens (frames with the headers stomp.py
parsed, a heart-beat as an EOL, the end of the connection, a heart-beat timeout as a
missing beat), so that ``transparency.differences`` compares them as it compares raw
clients. Nothing here waits for a time: every wait is for a receipt, messages or the
end of the connection, bounded by ``wire.STEP_WAIT``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import stomp
from stomp.utils import Frame as StompFrame

from .conversations import LOGIN
from .wire import STEP_WAIT, Closed, Eol, Frame, Missing, Token

CONNECTIONS = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}
STYLES = ("listener", "polling")


def _token(command: str, frame: StompFrame) -> Frame:
    body = frame.body if isinstance(frame.body, bytes) else str(frame.body).encode()
    return Frame(command, tuple(frame.headers.items()), body)


class Recording(stomp.ConnectionListener):  # type: ignore[misc]
    """What stomp.py told the application, as tokens."""

    def __init__(self) -> None:
        self.tokens: list[Token] = []
        self._changed = threading.Condition()

    def _add(self, token: Token) -> None:
        with self._changed:
            self.tokens.append(token)
            self._changed.notify_all()

    def on_connected(self, frame: StompFrame) -> None:
        self._add(_token("CONNECTED", frame))

    def on_message(self, frame: StompFrame) -> None:
        self._add(_token("MESSAGE", frame))

    def on_receipt(self, frame: StompFrame) -> None:
        self._add(_token("RECEIPT", frame))

    def on_error(self, frame: StompFrame) -> None:
        self._add(_token("ERROR", frame))

    def on_heartbeat(self) -> None:
        self._add(Eol(b"\n", False))

    def on_heartbeat_timeout(self) -> None:
        self._add(Missing("a heart-beat from the server (stomp.py timed out)"))

    def on_disconnected(self) -> None:
        self._add(Closed())

    def wait(self, what: str, done: Callable[[list[Token]], bool]) -> bool:
        with self._changed:
            if self._changed.wait_for(lambda: done(self.tokens), STEP_WAIT):
                return True
            self.tokens.append(Missing(what))
            return False

    def missing(self, what: str) -> None:
        self._add(Missing(what))

    def receipt(self, receipt_id: str) -> bool:
        return self.wait(
            f"RECEIPT {receipt_id}",
            lambda tokens: any(
                isinstance(t, Frame)
                and t.command == "RECEIPT"
                and t.get("receipt-id") == receipt_id
                for t in tokens
            ),
        )


class App:
    """An application's stomp.py connection (``style``: listener or polling)."""

    def __init__(
        self,
        name: str,
        port: int,
        version: str,
        style: str,
        *,
        heartbeats: tuple[int, int] = (0, 0),
        ack_each: bool = False,
    ) -> None:
        kwargs: dict[str, Any] = {"auto_decode": False}
        if version != "1.0":
            kwargs["heartbeats"] = heartbeats
        self.name = name
        self.version = version
        self.style = style
        self.conn: Any = CONNECTIONS[version]([("127.0.0.1", port)], **kwargs)
        self.recording = Recording()
        self.conn.set_listener("recording", self.recording)
        self.acked: list[str] = []  # receipt ids of the ACKs sent
        self._acks = 0
        self._ack_lock = threading.Lock()
        self.polled: Any = None
        if style == "polling":
            self.polled = stomp.listener.TestListener(print_to_log=True)
            self.conn.set_listener("app", self.polled)
        elif ack_each:
            self.conn.set_listener("app", _AckOnArrival(self))
        self.conn.connect(LOGIN[0], LOGIN[1], wait=True)

    @property
    def tokens(self) -> list[Token]:
        return self.recording.tokens

    def ack(self, headers: dict[str, str]) -> None:
        """ACK the message with these headers the way this version names it (a receipt
        with each, awaited at the end: ``wait_acks``)."""
        with self._ack_lock:
            receipt = f"ack{self._acks}"
            self._acks += 1
            self.acked.append(receipt)
        if self.version == "1.2":
            self.conn.ack(headers.get("ack", ""), receipt=receipt)
        elif self.version == "1.1":
            self.conn.ack(headers["message-id"], headers.get("subscription"), receipt=receipt)
        else:
            self.conn.ack(headers["message-id"], receipt=receipt)

    def take(self, count: int) -> int:
        """Messages until ``count`` arrived; the polling style ACKs each here, from its loop
        (the listener style ACKed each on arrival). How many arrived."""
        if self.style == "listener":
            self.recording.wait(
                f"{count} MESSAGE frames",
                lambda tokens: (
                    sum(isinstance(t, Frame) and t.command == "MESSAGE" for t in tokens) >= count
                ),
            )
            return sum(1 for t in self.tokens if isinstance(t, Frame) and t.command == "MESSAGE")
        taken = 0
        deadline = time.monotonic() + STEP_WAIT
        condition = self.polled.message_condition
        while taken < count:
            with condition:
                while len(self.polled.message_list) <= taken:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.recording.missing(f"{count} MESSAGE frames (polled)")
                        return taken
                    condition.wait(left)
            headers, _ = self.polled.message_list[taken]
            self.ack(headers)
            taken += 1
        return taken

    def wait_acks(self) -> None:
        for receipt in list(self.acked):
            self.recording.receipt(receipt)

    def disconnect(self) -> None:
        self.conn.disconnect(receipt="bye")
        self.recording.wait("end of the connection", lambda tokens: Closed() in tokens)


class _AckOnArrival(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, app: App) -> None:
        self._app = app

    def on_message(self, frame: StompFrame) -> None:
        self._app.ack(dict(frame.headers))


@dataclass
class LibraryRun:
    """One run of the library conversation (the ``transparency.Run`` shape)."""

    port: int  # legacy, or a proxy
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    apps: dict[str, App] = field(default_factory=dict)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    measured: dict[str, str] = field(default_factory=dict)
    beating: set[str] = field(default_factory=set)

    @property
    def transcripts(self) -> dict[str, App]:
        return self.apps

    def app(self, name: str, version: str, style: str, **options: Any) -> App:
        app = App(name, self.port, version, style, **options)
        self.apps[name] = app
        if options.get("heartbeats", (0, 0)) != (0, 0) and version != "1.0":
            self.beating.add(name)
        return app

    def dest(self, name: str) -> str:
        return f"/queue/tx.{self.token}.{name}"

    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))

    def close(self) -> None:
        for app in self.apps.values():
            if app.conn.is_connected():
                app.conn.disconnect()


def conversation(run: LibraryRun, version: str, style: str) -> None:
    """A consumer (heart-beats on in the listener style, off in the polling one) and a
    producer: three SENDs with receipts, a transaction aborted and one committed; the
    consumer ACKs every message (client-individual; client in 1.0, whose subscription
    has no id); then what is left on the queue."""
    q = run.dest("q")
    beats = (400, 400) if style == "listener" else (0, 0)
    consumer = run.app("c", version, style, heartbeats=beats, ack_each=True)
    ack_mode = "client" if version == "1.0" else "client-individual"
    consumer.conn.subscribe(
        q, id=None if version == "1.0" else "s", ack=ack_mode, headers={"receipt": "sub"}
    )
    consumer.recording.receipt("sub")
    producer = run.app("p", version, "listener")
    for i in range(3):
        producer.conn.send(
            q, f"p:{i}".encode(), headers={"receipt": f"p{i}", "split-key": f"p:{i}"}
        )
    for i in range(3):
        producer.recording.receipt(f"p{i}")
    for tx, body, end in (("t1", "p:3", "abort"), ("t2", "p:4", "commit")):
        producer.conn.begin(tx)
        producer.conn.send(q, body.encode(), transaction=tx, headers={"split-key": body})
        getattr(producer.conn, end)(tx, headers={"receipt": f"{end}-{tx}"})
        producer.recording.receipt(f"{end}-{tx}")
    producer.disconnect()
    consumer.take(4)
    consumer.wait_acks()
    if version == "1.0":
        consumer.conn.unsubscribe(destination=q, headers={"receipt": "unsub"})
    else:
        consumer.conn.unsubscribe(id="s", headers={"receipt": "unsub"})
    consumer.recording.receipt("unsub")
    consumer.disconnect()
    left = run.app("left", "1.2", "listener")
    left.conn.subscribe(q, id="left", ack="auto", headers={"receipt": "left"})
    left.recording.receipt("left")
    sentinel = run.app("sentinel", "1.2", "listener")
    sentinel.conn.send(q, b"sentinel:end", headers={"receipt": "s0", "split-key": "sentinel:end"})
    sentinel.recording.receipt("s0")
    sentinel.disconnect()
    left.take(1)
    bodies = [t.body for t in left.tokens if isinstance(t, Frame) and t.command == "MESSAGE"]
    run.check("nothing left on the queue but the sentinel", bodies == [b"sentinel:end"])
    left.disconnect()
