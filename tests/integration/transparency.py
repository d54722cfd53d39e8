"""Comparing what clients read directly and through the proxy (the transparency harness).

What is compared, per client of a conversation (``conversations.py``):
- the tokens other than MESSAGE frames, in order: every frame (command, the header
  set, body, whether its EOL followed), every standalone EOL (so an EOL the broker
  never sent is a difference), end of input, and waits that ended empty-handed;
- the MESSAGE frames per stream (producer, destination, subscription: ``_stream``), in
  order. How a subscription's MESSAGEs interleave with the connection's RECEIPTs, or
  with another stream's, is the broker's timing, not the protocol's, so that is not
  compared. In split mode a producer's messages go to two brokers, so each stream is
  compared as a multiset;
- the conversation's own checks (e.g. what was left on a queue);
- pieces: the proxy's writes to the client must not cut a frame, or a frame from its
  EOL, which ActiveMQ writes in one piece (``pieces.py``).

What is normalised before comparing (``NORMALISED``), each because it differs per run
whoever serves the client, and what the proxy is allowed to add (``DELIBERATE``, also
listed in docs/transparency.md): nothing else may differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from .conversations import Bed
from .pieces import cuts
from .wire import Closed, Eol, Frame, Missing, Token

# header -> why its value is replaced by a placeholder before comparing
NORMALISED: dict[str, str] = {
    "message-id": "the broker's id for the message: new on every run",
    "ack": "1.2 MESSAGE ack id: the broker's, new on every run",
    "timestamp": "the time the broker took the message",
    "session": "CONNECTED's session id: the broker's, new on every connection",
}
# A RECEIPT right after the same RECEIPT is compared once: ActiveMQ answers a DISCONNECT
# with up to two (one when it removes the connection, one when it shuts it down; the
# second one only if the socket is still open), whoever the client talks to.
REPEATED_RECEIPT = "compared once (ActiveMQ may answer a DISCONNECT twice)"
# Destination names (and headers such as original-destination) hold the run's token.
TOKEN = "<run>"
# header -> why the proxy may add it (removed from the proxied run's MESSAGE frames)
DELIBERATE: dict[str, str] = {
    "strangler-trace-id": "the documented trace header: the id of the message's facts",
}
# header -> why it is removed from MESSAGEs, in both runs: a property of the test bed
TEST_BED: dict[str, str] = {
    "JMSXUserID": "the Amazon MQ stand-in stamps the sender's login (populateJMSXUserID "
    "in scripts/brokers.sh), so a test can tell which login sent a message",
}


@dataclass(frozen=True)
class Seen:
    """A token as compared: frames carry their EOL; headers normalised, as a sorted set."""

    command: str  # a frame's command, or EOL / CLOSED / MISSING
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    eol: bytes = b""

    def show(self) -> str:
        if self.command == "EOL":
            return f"EOL{self.eol!r}"
        if self.command in ("CLOSED", "MISSING"):
            return f"{self.command} {self.body.decode()}".strip()
        headers = ", ".join(f"{k}:{v}" for k, v in self.headers)
        eol = f" +{self.eol!r}" if self.eol else ""
        return f"{self.command}{{{headers}}} {self.body[:60]!r}{eol}"


def seen(tokens: list[Token], run_token: str, *, beating: bool) -> list[Seen]:
    """``tokens`` as compared: trailing EOLs joined to their frame, values normalised;
    standalone EOLs dropped when they are heart-beats (``beating``)."""
    out: list[Seen] = []
    for token in tokens:
        if isinstance(token, Eol):
            if token.trailing and out and out[-1].command not in ("EOL", "CLOSED", "MISSING"):
                out[-1] = replace(out[-1], eol=token.text)
            elif not beating:
                out.append(Seen("EOL", eol=token.text))
        elif isinstance(token, Frame):
            frame = _frame(token, run_token)
            if frame.command == "RECEIPT" and out and replace(out[-1], eol=b"") == frame:
                continue  # see REPEATED_RECEIPT
            out.append(frame)
        elif isinstance(token, Closed):
            out.append(Seen("CLOSED"))
        elif isinstance(token, Missing):
            out.append(Seen("MISSING", body=token.waited_for.encode()))
    return out


def _frame(frame: Frame, run_token: str) -> Seen:
    headers = []
    for name, value in frame.headers:
        if frame.command == "MESSAGE" and (name in DELIBERATE or name in TEST_BED):
            continue
        if name in NORMALISED:
            value = f"<{name}>"
        headers.append((name, value.replace(run_token, TOKEN)))
    return Seen(frame.command, tuple(sorted(headers)), frame.body)


def _stream(message: Seen) -> str:
    """The ordered stream a MESSAGE belongs to: its producer (the body's prefix), the
    destination it was sent to and the subscription that received it. Between streams
    no order is defined (two queues behind one wildcard, two subscriptions)."""
    headers = dict(message.headers)
    producer = message.body.split(b":", 1)[0].decode()
    where = headers.get("destination", "?")
    return f"{producer} to {where} for subscription {headers.get('subscription', '(none)')}"


def _short(data: bytes) -> str:
    return repr(data) if len(data) <= 48 else f"{data[:32]!r}..{data[-12:]!r}"


class Transcript(Protocol):
    """What one client read (a raw ``WireClient``, or a client library's recording)."""

    @property
    def tokens(self) -> list[Token]: ...


class Run(Protocol):
    """One run of a conversation (a ``conversations.Bed``, or a client library's)."""

    @property
    def token(self) -> str: ...

    @property
    def checks(self) -> list[tuple[str, bool]]: ...

    @property
    def measured(self) -> dict[str, str]: ...

    @property
    def beating(self) -> set[str]: ...

    @property
    def transcripts(self) -> Mapping[str, Transcript]: ...


def differences(direct: Run, proxied: Run, *, split: bool) -> list[str]:
    """What a client of ``proxied`` read that differs from ``direct`` (empty: none)."""
    found: list[str] = []
    if direct.checks != proxied.checks:
        found.append(
            f"checks: direct {direct.checks} {direct.measured or ''}, "
            f"through the proxy {proxied.checks} {proxied.measured or ''}"
        )
    for name, client in direct.transcripts.items():
        other = proxied.transcripts.get(name)
        if other is None:
            found.append(f"{name}: never opened through the proxy")
            continue
        beating = name in direct.beating
        d = seen(client.tokens, direct.token, beating=beating)
        p = seen(other.tokens, proxied.token, beating=beating)
        d_rest = [s for s in d if s.command != "MESSAGE"]
        p_rest = [s for s in p if s.command != "MESSAGE"]
        if d_rest != p_rest:
            found.append(_listing(f"{name}: frames and EOLs (MESSAGEs aside)", d_rest, p_rest))
        d_msgs = [s for s in d if s.command == "MESSAGE"]
        p_msgs = [s for s in p if s.command == "MESSAGE"]
        for stream in sorted({_stream(m) for m in d_msgs + p_msgs}):
            dm = [m for m in d_msgs if _stream(m) == stream]
            pm = [m for m in p_msgs if _stream(m) == stream]
            if split:
                dm, pm = sorted(dm, key=repr), sorted(pm, key=repr)
            if dm != pm:
                found.append(_listing(f"{name}: MESSAGEs from {stream}", dm, pm))
    return found


def pieces(proxied: Bed, *, login: bool) -> list[str]:
    """Where the proxy cut a frame it wrote to a raw client of ``proxied`` (``pieces.py``);
    CONNECTED only if ``login`` (the handshake cases judge it; the others leave that one
    defect to them, so that each case shows its own)."""
    found: list[str] = []
    if proxied.writes is None:
        return found
    for name, client in proxied.clients.items():
        if client.via_legacy:
            continue
        data = b"".join(r.data for r in client.reads)
        writes = proxied.writes.writes_to(client.port, len(data))
        for cut in cuts(data, writes, login=login):
            reads = " | ".join(f"{r.segments} segment(s): {_short(r.data)}" for r in client.reads)
            found.append(f"{name}: {cut}; as the client read it: {reads}")
    return found


def _listing(what: str, direct: list[Seen], proxied: list[Seen]) -> str:
    lines = [f"{what} differ:"]
    for i in range(max(len(direct), len(proxied))):
        d = direct[i].show() if i < len(direct) else "-"
        p = proxied[i].show() if i < len(proxied) else "-"
        mark = "  " if d == p else "! "
        lines.append(f"  {mark}[{i}] direct: {d}")
        if d != p:
            lines.append(f"  {mark}[{i}] proxy:  {p}")
    return "\n".join(lines)
