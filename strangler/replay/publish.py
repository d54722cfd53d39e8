"""``strangler replay`` without ``--dry-run``: re-send captured SENDs where the routes say.

Invariants:
- Messages are numbered 0..N-1 in source order (reproducible: ``sources``). The state
  file records ``confirmed``: the length of the longest prefix of them whose every target
  broker answered the SEND's receipt. A rerun with that state skips the prefix, so no
  message in it is ever sent twice.
- A message is confirmed only when each of its targets confirmed it (a mirror: both).
- At most ``window`` messages are unconfirmed at a time. A clean stop (``limit``, the
  ``stop`` event, Ctrl-C, a broker error) first waits for their receipts, so the state is
  exact. After a crash, the unconfirmed window and the last ``save_interval`` of
  confirmations may be sent again on resume (at-least-once for that tail); every copy
  carries the same trace header, so duplicates are recognisable.
- The state file is replaced atomically (temp file + rename) and names the capture by a
  hash of its content: a state belonging to another capture is refused, never applied.
- Routing is the live proxy's (``report.decide_message``): a route in dry-run sends to
  legacy only; Amazon MQ gets ``amazonmq_destination``. The captured headers are kept in
  order except ``receipt`` (replay's own), ``transaction`` (committed transactions are
  replayed as their messages; see ``sources``) and ``content-length`` (recomputed).
- Memory: the unconfirmed window only; the capture is streamed, not loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from ..progress import Progress
from ..routes import AMAZONMQ, LEGACY, RouteTable
from ..stomp import Frame
from ..stomp.resend import encode_send
from ..upstream.client import LoginRefused, PublishError, broker_login, open_broker
from .report import Report, decide_message
from .sources import CapturedMessage

STATE_VERSION: Final = 1
DEFAULT_WINDOW: Final = 100
DEFAULT_TIMEOUT: Final = 30.0
_DROPPED_HEADERS: Final = frozenset({"destination", "receipt", "transaction", "content-length"})
_POLL_SLICE: Final = 0.02  # seconds per broker while waiting on several


class Sender(Protocol):
    """A producer connection to one broker (``upstream.client.BrokerClient``; fakes in tests)."""

    def send(self, raw: bytes) -> None: ...

    def poll(self, timeout: float) -> list[Frame]: ...

    def close(self) -> None: ...


OpenSender = Callable[[str], Sender]  # broker name -> connected sender


# -- state ----------------------------------------------------------------------------------


@dataclass
class ReplayState:
    """The resumable position of one capture's replay."""

    capture: list[str]
    fingerprint: str
    total: int
    confirmed: int = 0
    routes_version: str = ""
    updated: str = ""
    version: int = STATE_VERSION

    @classmethod
    def load(cls, path: str) -> ReplayState | None:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PublishError(f"state file {path}: unreadable: {exc}") from None
        try:
            state = cls(**data)
        except TypeError:
            raise PublishError(f"state file {path}: not a strangler replay state") from None
        if state.version != STATE_VERSION or not isinstance(state.confirmed, int):
            raise PublishError(f"state file {path}: unsupported state version {state.version}")
        return state

    def save(self, path: str) -> None:
        self.updated = datetime.now(UTC).isoformat(timespec="seconds")
        temporary = f"{path}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)


def fingerprint(paths: Sequence[str]) -> str:
    """sha256 over the files' contents, in order (not their names: a capture may move)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


# -- publishing -----------------------------------------------------------------------------


@dataclass
class PublishResult:
    confirmed: int  # the prefix now confirmed (what the state file says)
    total: int
    sent: int  # messages sent in this run
    report: Report
    error: str | None = None
    login_refused: bool = False  # the error is a broker refusing the login (exit 2)
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return self.confirmed >= self.total


def build_send(
    message: CapturedMessage, destination: str, receipt: str, trace_header: str, key: str
) -> bytes:
    """The SEND for a broker: captured headers in order, replay's receipt, a trace id."""
    return encode_send(
        message.headers,
        message.body or b"",
        destination,
        receipt,
        (trace_header, key),
        _DROPPED_HEADERS,
    )


class Publisher:
    """Sends messages in order with receipts, keeping at most ``window`` unconfirmed."""

    def __init__(
        self,
        table: RouteTable,
        open_sender: OpenSender,
        *,
        window: int = DEFAULT_WINDOW,
        rate: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        save_interval: float = 0.5,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.table = table
        self._open_sender = open_sender
        self.window = window
        self.rate = rate
        self.timeout = timeout
        self.stop = stop if stop is not None else threading.Event()
        self.progress = progress
        self.save_interval = save_interval
        self._senders: dict[str, Sender] = {}
        self._failed: set[str] = set()  # brokers that refused or dropped us: no more answers
        self._receipts: dict[str, int] = {}  # receipt id -> message ordinal
        self._missing: dict[int, int] = {}  # ordinal -> receipts still awaited
        self._done: set[int] = set()  # confirmed ordinals beyond the prefix
        self._prefix = 0

    def run(
        self,
        messages: Iterable[CapturedMessage],
        *,
        total: int,
        start: int = 0,
        limit: int | None = None,
        save: Callable[[int], None] = lambda confirmed: None,
    ) -> PublishResult:
        """Send messages ``start``.. (at most ``limit`` of them); ``save`` the position."""
        self._prefix = start
        report = Report(self.table)
        result = PublishResult(start, total, 0, report)
        began = time.monotonic()
        saved_at = began
        try:
            for ordinal, message in enumerate(messages):
                if ordinal < start:
                    continue
                if (limit is not None and result.sent >= limit) or self.stop.is_set():
                    result.interrupted = self.stop.is_set()
                    break
                while len(self._missing) >= self.window:
                    self._pump(self.timeout)
                if self.rate:
                    delay = began + result.sent / self.rate - time.monotonic()
                    if delay > 0:
                        self._pump_for(delay)
                self._send(ordinal, message, report)
                result.sent += 1
                self._pump(0.0)
                now = time.monotonic()
                if now - saved_at >= self.save_interval:
                    save(self._prefix)
                    saved_at = now
                if self.progress is not None:
                    self.progress.update(self._prefix)
            while self._missing:
                self._pump(self.timeout)
        except PublishError as exc:
            result.error = str(exc)
            result.login_refused = isinstance(exc, LoginRefused)
            self._settle()
        except KeyboardInterrupt:
            result.interrupted = True
            self._settle()
        finally:
            self._close()
            result.confirmed = self._prefix
            save(self._prefix)
            if self.progress is not None:
                self.progress.finish(self._prefix)
        return result

    def _send(self, ordinal: int, message: CapturedMessage, report: Report) -> None:
        decision = decide_message(self.table, message)
        # The proxy sends only to legacy for a route (or a routes file) in dry-run.
        targets = (LEGACY,) if decision.dry_run else decision.targets
        # Connect first: a message is awaited only once each of its brokers is reachable.
        senders = [(target, self._sender(target)) for target in targets]
        key = message.key(self.table.trace_header)
        self._missing[ordinal] = len(senders)
        for target, sender in senders:
            receipt = f"strangler-replay-{ordinal}-{target}"
            destination = message.destination
            if target == AMAZONMQ and decision.amazonmq_destination is not None:
                destination = decision.amazonmq_destination
            self._receipts[receipt] = ordinal
            raw = build_send(message, destination, receipt, self.table.trace_header, key)
            try:
                sender.send(raw)
            except PublishError:
                self._failed.add(target)
                raise
        report.add(message)

    def _sender(self, name: str) -> Sender:
        sender = self._senders.get(name)
        if sender is None:
            sender = self._senders[name] = self._open_sender(name)
        return sender

    def _pump(self, timeout: float) -> None:
        """Read answers; with ``timeout`` > 0, wait up to it for at least one receipt."""
        deadline = time.monotonic() + timeout
        while not self._poll_all(0.0) and timeout > 0 and self._missing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waiting = sorted(name for name in self._senders if self._awaits(name))
                raise PublishError(
                    f"no receipt from {', '.join(waiting) or 'the brokers'} "
                    f"within {timeout:g} seconds"
                )
            # One broker: block on it; several: take turns in short slices.
            wait = min(remaining, 1.0 if len(self._senders) == 1 else _POLL_SLICE)
            if self._poll_all(wait):
                return

    def _pump_for(self, seconds: float) -> None:
        """Spend ``seconds`` (rate limit) reading answers instead of sleeping."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if not self._senders:
                time.sleep(remaining)
                return
            self._poll_all(min(remaining, _POLL_SLICE))

    def _poll_all(self, wait: float) -> bool:
        """Poll every broker (each up to ``wait`` s); True when some receipt arrived."""
        if not self._senders:
            time.sleep(wait)  # nothing to read from; never spin
            return False
        progressed = False
        for name, sender in list(self._senders.items()):
            if name in self._failed:
                continue
            try:
                frames = sender.poll(0.0 if progressed else wait)
            except PublishError:
                self._failed.add(name)
                raise
            for frame in frames:
                progressed |= self._on_frame(name, frame)
        return progressed

    def _awaits(self, broker: str) -> bool:
        return any(receipt.endswith(f"-{broker}") for receipt in self._receipts)

    def _on_frame(self, broker: str, frame: Frame) -> bool:
        if frame.command == "ERROR":
            self._failed.add(broker)  # STOMP: the broker closes the connection after ERROR
            detail = frame.get("message") or frame.body.decode("utf-8", "replace")[:200]
            raise PublishError(f"{broker} refused a message: {detail}")
        if frame.command != "RECEIPT":
            return False
        ordinal = self._receipts.pop(frame.get("receipt-id") or "", None)
        if ordinal is None:
            return False
        self._missing[ordinal] -= 1
        if self._missing[ordinal] == 0:
            del self._missing[ordinal]
            self._done.add(ordinal)
            while self._prefix in self._done:
                self._done.discard(self._prefix)
                self._prefix += 1
        return True

    def _settle(self) -> None:
        """After a stop or failure: collect the receipts still on their way (briefly).

        Only from brokers still answering: a failed one's receipts will never come.
        """
        deadline = time.monotonic() + min(self.timeout, 5.0)
        with contextlib.suppress(PublishError, KeyboardInterrupt):
            while time.monotonic() < deadline and any(
                self._awaits(name) for name in self._senders if name not in self._failed
            ):
                self._pump(max(0.0, deadline - time.monotonic()))

    def _close(self) -> None:
        for sender in self._senders.values():
            with contextlib.suppress(Exception):
                sender.close()
        self._senders.clear()


def broker_opener(
    table: RouteTable, capture_login: tuple[str, str] | None, timeout: float
) -> OpenSender:
    """Connect to a routes.yaml broker: its endpoints, TLS/CA and credentials.

    Credentials come from ``credentials`` in routes.yaml (env vars, file or Secrets
    Manager, via ``resolve_credentials``). Legacy has none there usually (producers log in
    themselves): replay then logs in as the captured producer did (its CONNECT's
    login/passcode), else without a login.
    """

    def open_sender(name: str) -> Sender:
        fallback = capture_login if name == LEGACY else None
        return open_broker(table, name, broker_login(table, name, fallback), timeout)

    return open_sender


def describe(result: PublishResult, state_path: str) -> dict[str, Any]:
    return {
        "confirmed": result.confirmed,
        "total": result.total,
        "sent_this_run": result.sent,
        "complete": result.complete,
        "interrupted": result.interrupted,
        "error": result.error,
        "state": state_path,
    }
