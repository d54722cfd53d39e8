"""Connection plumbing shared by the fault matrix's producer threads (stomp.py).

A producer thread holds one stomp.py connection at a time, numbered. stomp.py's
events for the current connection (connected, receipt, error, disconnected) land
in ``_state`` under ``cond``, so the producer's own thread waits on events, never
on sleeps. Subclasses write ``_loop`` and may record ERROR frames in
``_record_error`` (which sees every connection's, not only the current one's).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import stomp
from stomp.utils import Frame as StompFrame


class _Listener(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, producer: ProducerThread, conn: int) -> None:
        self.producer = producer
        self.conn = conn

    def on_connected(self, frame: StompFrame) -> None:
        self.producer._on_event(self.conn, "connected", frame)

    def on_receipt(self, frame: StompFrame) -> None:
        self.producer._on_event(self.conn, "receipt", frame)

    def on_error(self, frame: StompFrame) -> None:
        self.producer._on_event(self.conn, "error", frame)

    def on_disconnected(self) -> None:
        self.producer._on_event(self.conn, "disconnected", None)


class ProducerThread(threading.Thread):
    def __init__(
        self,
        name: str,
        address: tuple[str, int],
        login: str,
        passcode: str,
        receipt_timeout: float,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.address = address
        self.login = login
        self.passcode = passcode
        self.receipt_timeout = receipt_timeout
        self.cond = threading.Condition()
        self.aborted = False
        self.done = False
        self.crash: BaseException | None = None
        self.connections = 0  # accepted (CONNECTED) connections
        self.connect_failures = 0
        # the current connection
        self._conn: Any = None
        self._conn_no = 0
        self._state: dict[str, Any] = {}

    @property
    def conn_no(self) -> int:
        return self._conn_no

    # -- events (stomp.py's thread) -----------------------------------------------

    def _record_error(self, conn: int, frame: StompFrame) -> None:
        """An ERROR on connection ``conn`` (called with ``cond`` held)."""

    def _on_event(self, conn: int, kind: str, frame: StompFrame | None) -> None:
        with self.cond:
            if kind == "error" and frame is not None:
                self._record_error(conn, frame)
            if conn == self._conn_no:
                state = self._state
                if kind == "connected":
                    state["connected"] = True
                elif kind == "receipt" and frame is not None:
                    state["receipts"].add(frame.headers.get("receipt-id", ""))
                elif kind == "error":
                    state["error"] = True
                elif kind == "disconnected":
                    state["closed"] = True
            self.cond.notify_all()

    # -- the loop (this thread) ---------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the analysis
            self.crash = exc
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _loop(self) -> None:
        raise NotImplementedError

    def _connect(self) -> bool:
        conn = stomp.Connection12(
            [self.address], reconnect_attempts_max=1, auto_decode=False, heartbeats=(0, 0)
        )
        with self.cond:
            self._conn_no += 1
            number = self._conn_no
            self._state = {"connected": False, "receipts": set(), "error": False, "closed": False}
        conn.set_listener("producer", _Listener(self, number))
        try:
            conn.connect(self.login, self.passcode, wait=False)
        except Exception:  # stomp.py: connection refused and the like
            with self.cond:
                self.connect_failures += 1
            return False
        with self.cond:
            state = self._state
            self.cond.wait_for(
                lambda: state["connected"] or state["error"] or state["closed"] or self.aborted,
                self.receipt_timeout,
            )
            ok = state["connected"] and not (state["error"] or state["closed"])
            if ok:
                self.connections += 1
            else:
                self.connect_failures += 1
        if not ok:
            drop_socket(conn)
            return False
        self._conn = conn
        return True

    def _disconnect(self) -> None:
        """DISCONNECT (the proxy settles Amazon MQ first) and wait until it is done."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        state = self._state
        with contextlib.suppress(Exception):
            conn.disconnect()
        with self.cond:
            self.cond.wait_for(lambda: state["closed"], 40.0)
        drop_socket(conn)

    def _drop(self) -> None:
        """Abandon the current connection without a DISCONNECT."""
        conn, self._conn = self._conn, None
        if conn is not None:
            drop_socket(conn)


def drop_socket(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.transport.disconnect_socket()
