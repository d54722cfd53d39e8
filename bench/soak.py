"""The soak: several producers for minutes, a routes change and broker restarts mid-run.

    python -m bench.soak --minutes 10 --producers 8     # the documented soak (~11 min)
    python -m bench.soak --seconds 30 --producers 4     # the short one (the test suite's)

Loopback only, bounded in time and count. It starts two brokers of its own
(``tests/integration/brokers.py``: ``soak-<tag>-legacy`` plain STOMP and
``soak-<tag>-amq`` STOMP+TLS, on free ports) so it can restart them safely, and
``strangler run`` as a subprocess (``bench.run.Proxy``) so its RSS can be sampled.
Then, for the whole run:

- producers (``bench.loadgen`` connections) send persistent 256 B messages with
  a receipt each, at most ``--window`` unconfirmed, at ``--rate`` messages/s each;
  every ``--tx-every``-th producer sends transactions instead (BEGIN, 4 SENDs with
  receipts, COMMIT with a receipt; every 4th ABORTed). On an ERROR, a lost
  connection or silence a producer reconnects and resends what had no receipt
  (a new attempt, a new trace id) or reruns the transaction;
- one consumer per broker takes every soak destination as it arrives (the
  brokers keep little), reconnecting across restarts, and counts each stored
  copy once (a redelivery after a restart has the same message-id);
- at 25% of the run the routes file changes (hot reload: mirror -> cutover on
  one route, a 50% split's ``on_failure`` legacy -> reject on the other), at 45%
  Amazon MQ is SIGKILLed and restarted, at 70% legacy is stopped and restarted.

At the end the producers finish what they have in flight, the proxy stops,
each destination gets a sentinel on both brokers so the consumers know they
have everything, and ``tests/integration/promise.py`` checks every receipted
message (and every committed transaction) is on its responsible broker, every
copy is explained by the facts, and nothing was silently dropped. It prints a
summary (sent, receipted, found, duplicates by explanation, proxy RSS start /
peak / end, the reload) and exits 1 on any loss or unexplained copy, on a failed
step, or when the proxy's RSS grew by more than ``--max-rss-growth-mb`` from the
early run to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # python bench/soak.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import Endpoint, StompClient, StompError, connect, run
from bench.run import Brokers, Proxy, _logger, _mb
from tests.integration import brokers as broker_ctl
from tests.integration.brokers import BrokerInfo
from tests.integration.promise import (
    ABORTED,
    AMAZONMQ,
    CLOSED,
    COMMITTED,
    ERROR,
    LEGACY,
    RECEIPT,
    SILENT,
    Attempt,
    Sent,
    TxAttempt,
    check,
)

TRACE = "strangler-trace-id"
BODY = 256
RECEIPT_TIMEOUT = 30.0  # no answer on an open connection this long: a silent drop
RETRY = 0.3  # a producer's pause before reconnecting
TX_SIZE = 4
TX_ABORT_EVERY = 4
SAMPLE_EVERY = 5.0  # seconds between RSS samples
FINISH_TIMEOUT = 120.0  # producers settle what is in flight within this
ROUTINE = ("message_confirmed", "client_connected", "client_disconnected")


# -- brokers and routes ----------------------------------------------------------------


def _endpoint(b: BrokerInfo, name: str) -> Endpoint:
    return Endpoint(name, b.host, b.port, b.username, b.password, b.ca_file)


def routes_text(prefix: str, legacy: BrokerInfo, amazonmq: BrokerInfo, *, changed: bool) -> str:
    a = "mode: cutover, on_failure: legacy" if changed else "mode: mirror"
    b = "on_failure: reject" if changed else "on_failure: legacy"
    return (
        "brokers:\n"
        f"  legacy:\n    url: {legacy.url}\n"
        "  amazonmq:\n"
        f"    url: {amazonmq.url}\n"
        f"    ca_file: {amazonmq.ca_file}\n"
        "    credentials:\n"
        "      username_env: STRANGLER_AMAZONMQ_USER\n"
        "      password_env: STRANGLER_AMAZONMQ_PASSWORD\n"
        "    heartbeat_ms: 4000\n"
        "routes:\n"
        f"  - {{name: soak-a, match: {{prefix: '{prefix}a.'}}, {a}}}\n"
        f"  - {{name: soak-b, match: {{prefix: '{prefix}b.'}}, mode: split, weight: 50, {b}}}\n"
    )


# -- the proxy's facts, read as they are written ---------------------------------------------


class FactsTail:
    """Reads the proxy's facts file as it grows; keeps what the checks need."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.kept: list[dict[str, Any]] = []  # slimmed: routed facts keep only their targets
        self.counts: Counter[str] = Counter()

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                fact = json.loads(line)
                event = fact["event"]
                self.counts[event] += 1
                if event in ROUTINE:
                    continue
                if event == "message_routed":
                    fact = {
                        "event": event,
                        "trace_id": fact["trace_id"],
                        "targets": fact["targets"],
                        "primary": fact["primary"],
                        "routes_version": fact.get("routes_version"),
                    }
                self.kept.append(fact)

    def seen(self, event: str, after: int = 0, **match: Any) -> bool:
        self.poll()
        return any(
            f["event"] == event and all(f.get(k) == v for k, v in match.items())
            for f in self.kept[after:]
        )

    async def wait(self, event: str, timeout: float, after: int = 0, **match: Any) -> bool:
        deadline = time.monotonic() + timeout
        while not self.seen(event, after, **match):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True


# -- producers ------------------------------------------------------------------------------


def _send_frame(dest: str, trace: str, message: str, tx: str | None = None) -> bytes:
    body = message.encode().ljust(BODY, b".")
    extra = f"transaction:{tx}\n" if tx else ""
    return (
        (
            f"SEND\ndestination:{dest}\nreceipt:{trace}\n{TRACE}:{trace}\npersistent:true\n"
            f"{extra}content-length:{len(body)}\n\n"
        ).encode()
        + body
        + b"\0"
    )


def _write(client: StompClient, data: bytes) -> bool:
    """Write ``data``; False if the connection is gone (its receipts fail on their own)."""
    try:
        client.write(data)
    except (RuntimeError, OSError):  # uvloop: the transport is closed
        return False
    return True


@dataclass
class ProducerBase:
    name: str
    proxy: Endpoint
    dest: str
    rate: float  # messages per second
    window: int
    stop: asyncio.Event
    sent: Sent = field(default_factory=Sent)
    connections: int = 0
    lost: int = 0
    error_frames: int = 0
    finished: bool = False
    _conn_no: int = 0

    async def _connect(self) -> StompClient | None:
        self._conn_no += 1
        try:
            client = await connect(self.proxy, timeout=RECEIPT_TIMEOUT)
        except (StompError, TimeoutError, OSError):
            await asyncio.sleep(RETRY)
            return None
        self.connections += 1
        return client

    def _failed(self, client: StompClient) -> str:
        """The outcome of what was waiting when ``client`` failed; the client is closed."""
        self.lost += 1
        outcome = ERROR if client.error and client.error.startswith("ERROR") else CLOSED
        if outcome == ERROR:
            self.error_frames += 1
        client.close()
        return outcome


class PlainProducer(ProducerBase):
    """SENDs with a receipt each; resends what the connection lost without a receipt."""

    async def run(self, hard_deadline: float) -> None:
        todo: deque[str] = deque()
        tries: Counter[str] = Counter()
        count = 0
        next_new = time.monotonic()
        while time.monotonic() < hard_deadline:
            if self.stop.is_set() and not todo:
                self.finished = True
                return
            client = await self._connect()
            if client is None:
                continue
            inflight: dict[str, tuple[Attempt, asyncio.Future[None], float]] = {}
            outcome: str | None = None
            while outcome is None:
                now = time.monotonic()
                while len(inflight) < self.window:
                    if todo:
                        message = todo.popleft()
                    elif not self.stop.is_set() and now >= next_new:
                        message = f"{self.name}-{count:07d}"
                        count += 1
                        next_new = max(next_new + 1 / self.rate, now - 1.0)
                    else:
                        break
                    tries[message] += 1
                    trace = f"{message}.{tries[message]}"
                    attempt = Attempt(trace, message, self._conn_no)
                    self.sent.attempts.append(attempt)
                    inflight[trace] = (attempt, client.expect(trace.encode()), now)
                    if not _write(client, _send_frame(self.dest, trace, message)):
                        break
                if self.stop.is_set() and not todo and not inflight:
                    await client.disconnect()
                    self.finished = True
                    return
                futures = [f for _, f, _ in inflight.values()]
                wait = 0.5 if self.stop.is_set() else max(0.0, next_new - time.monotonic())
                if futures:
                    await asyncio.wait(
                        futures, timeout=min(wait, 0.5), return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    await asyncio.sleep(min(wait, 0.5))
                failed = False
                for trace, (attempt, fut, _) in list(inflight.items()):
                    if fut.done() and fut.exception() is None:
                        attempt.outcome = RECEIPT
                        del inflight[trace]
                    elif fut.done():
                        failed = True
                failed = failed or client.closed.done()
                oldest = min((t for _, _, t in inflight.values()), default=time.monotonic())
                if failed:
                    outcome = self._failed(client)
                elif time.monotonic() - oldest > RECEIPT_TIMEOUT:
                    outcome = SILENT
                    self.lost += 1
                    client.close()
                elif time.monotonic() >= hard_deadline:
                    outcome = SILENT
                    client.close()
            for attempt, _, _ in inflight.values():
                attempt.outcome = outcome
                todo.append(attempt.message)
            await asyncio.sleep(RETRY)


class TxProducer(ProducerBase):
    """Transactions of TX_SIZE receipted SENDs; every TX_ABORT_EVERY-th is ABORTed."""

    async def run(self, hard_deadline: float) -> None:
        groups = 0
        retry: tuple[str, str] | None = None
        client: StompClient | None = None
        while time.monotonic() < hard_deadline:
            if retry is not None:
                group, plan = retry
            elif self.stop.is_set():
                break
            else:
                await asyncio.sleep(TX_SIZE / self.rate)  # pace: TX_SIZE messages per tx
                group = f"{self.name}-{groups:05d}"
                plan = "abort" if (groups + 1) % TX_ABORT_EVERY == 0 else "commit"
                groups += 1
            if client is None:
                client = await self._connect()
                if client is None:
                    retry = (group, plan)
                    continue
            ok = await self._attempt(client, group, plan)
            if ok:
                retry = None
                continue
            client = None
            retry = (group, plan) if plan == "commit" else None
            await asyncio.sleep(RETRY)
        if client is not None:
            await client.disconnect()
        self.finished = retry is None

    async def _attempt(self, client: StompClient, group: str, plan: str) -> bool:
        n = sum(1 for t in self.sent.transactions if t.group == group) + 1
        tx = TxAttempt(f"{group}.{n}", group, plan, self._conn_no)
        self.sent.transactions.append(tx)
        attempts = []
        try:
            client.write(f"BEGIN\ntransaction:{tx.id}\n\n\0".encode())
            futures = []
            for i in range(TX_SIZE):
                trace = f"{group}.{n}-{i}"
                attempt = Attempt(trace, f"{group}[{i}]", self._conn_no, tx=tx.id)
                attempts.append(attempt)
                tx.traces.append(trace)
                self.sent.attempts.append(attempt)
                futures.append(client.expect(trace.encode()))
                client.write(_send_frame(self.dest, trace, attempt.message, tx.id))
            outcome = await self._await(client, futures)
            for attempt, fut in zip(attempts, futures, strict=True):
                ok = fut.done() and fut.exception() is None
                attempt.outcome = RECEIPT if ok else outcome
            if outcome != RECEIPT:
                tx.outcome = outcome
                return False
            end = f"{tx.id}.end"
            fut = client.expect(end.encode())
            command = "COMMIT" if plan == "commit" else "ABORT"
            client.write(f"{command}\ntransaction:{tx.id}\nreceipt:{end}\n\n\0".encode())
            tx.end_sent = True
            outcome = await self._await(client, [fut])
        except (StompError, OSError, RuntimeError):  # uvloop: write on a closed transport
            outcome = self._failed(client)
            for attempt in attempts:
                if attempt.outcome == "pending":
                    attempt.outcome = outcome
        if outcome != RECEIPT:
            tx.outcome = outcome
            return False
        tx.outcome = COMMITTED if plan == "commit" else ABORTED
        return True

    async def _await(self, client: StompClient, futures: list[asyncio.Future[None]]) -> str:
        done, pending = await asyncio.wait(futures, timeout=RECEIPT_TIMEOUT)
        if any(f.exception() is not None for f in done):
            return self._failed(client)
        if pending:
            self.lost += 1
            client.close()
            return SILENT
        return RECEIPT


# -- consumers ------------------------------------------------------------------------------


@dataclass
class Consumer:
    """Everything that reaches one broker's soak destinations, each stored copy once."""

    broker: str
    endpoint: Endpoint
    pattern: str
    found: Counter[str] = field(default_factory=Counter)
    ids: set[bytes] = field(default_factory=set)
    redelivered: int = 0
    sentinels: set[str] = field(default_factory=set)
    reconnects: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _client: StompClient | None = None

    def on_message(self, head: bytes) -> None:
        headers = dict(line.split(b":", 1) for line in head.split(b"\n")[1:] if b":" in line)
        # Acknowledged once counted: what was not is delivered again after a restart.
        if self._client is not None and b"ack" in headers:
            _write(self._client, b"ACK\nid:" + headers[b"ack"] + b"\n\n\0")
        message_id = headers.get(b"message-id", b"")
        if message_id in self.ids:
            self.redelivered += 1  # the same stored copy, delivered again after a restart
            return
        self.ids.add(message_id)
        trace = headers.get(TRACE.encode(), b"").decode()
        if trace.startswith("sentinel-"):
            self.sentinels.add(trace)
            self.changed.set()
        else:
            self.found[trace] += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                client = await connect(self.endpoint, on_message=self.on_message)
            except (StompError, TimeoutError, OSError):
                await asyncio.sleep(0.5)
                continue
            self._client = client
            subscribe = (
                f"SUBSCRIBE\nid:soak\ndestination:{self.pattern}\nack:client-individual\n"
                "activemq.prefetchSize:1000\n\n\0"
            )
            _write(client, subscribe.encode())
            stopping = asyncio.create_task(stop.wait())
            waiters: list[asyncio.Future[Any]] = [client.closed, stopping]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if stop.is_set():
                await client.disconnect()
                return
            self.reconnects += 1
            await asyncio.sleep(0.5)

    async def wait_sentinels(self, wanted: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not wanted <= self.sentinels:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.changed.wait()
        return True


async def _sentinels(endpoint: Endpoint, dests: list[str], tag: str) -> set[str]:
    """One receipted sentinel per destination, straight to the broker."""
    client = await connect(endpoint)
    names = set()
    try:
        for dest in dests:
            name = f"sentinel-{tag}-{dest.rsplit('.', 1)[-1]}"
            names.add(name)
            fut = client.expect(name.encode())
            client.write(_send_frame(dest, name, name))
            async with asyncio.timeout(30):
                await fut
    finally:
        await client.disconnect()
    return names


# -- the run --------------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    producers: int
    tx_every: int
    rate: float
    window: int
    max_rss_growth_mb: float
    keep: bool


@dataclass
class Soak:
    opts: Options
    log: Callable[[str], None]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    steps: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)

    async def run(self, legacy: BrokerInfo, amazonmq: BrokerInfo, workdir: Path) -> dict[str, Any]:
        opts = self.opts
        prefix = f"/queue/soak.{self.tag}."
        endpoints = Brokers(
            _endpoint(legacy, LEGACY),
            _endpoint(amazonmq, AMAZONMQ),
            legacy.url,
            amazonmq.url,
            legacy.pid,
        )
        proxy = Proxy(endpoints, "mirror", workdir, "soak")
        proxy.routes.write_text(routes_text(prefix, legacy, amazonmq, changed=False))
        proxy.start()
        facts = FactsTail(proxy.facts)
        stop_producers, stop_consumers = asyncio.Event(), asyncio.Event()
        consumers = [
            Consumer(LEGACY, _endpoint(legacy, LEGACY), f"{prefix}>"),
            Consumer(AMAZONMQ, _endpoint(amazonmq, AMAZONMQ), f"{prefix}>"),
        ]
        consumer_tasks = [asyncio.create_task(c.run(stop_consumers)) for c in consumers]
        producers: list[PlainProducer | TxProducer] = []
        for i in range(opts.producers):
            route = "a" if i % 2 == 0 else "b"
            kind = TxProducer if opts.tx_every and (i + 1) % opts.tx_every == 0 else PlainProducer
            name = f"{'t' if kind is TxProducer else 'p'}{i}"
            producers.append(
                kind(
                    name,
                    proxy.endpoint,
                    f"{prefix}{route}.{name}",
                    opts.rate,
                    opts.window,
                    stop_producers,
                )
            )
        started = time.monotonic()
        hard_deadline = started + opts.seconds + FINISH_TIMEOUT
        tasks = [asyncio.create_task(p.run(hard_deadline)) for p in producers]
        sampler = asyncio.create_task(self._sample(proxy, producers, consumers, started))
        self.log(
            f"soak {self.tag}: {opts.producers} producers, {opts.seconds:g} s, proxy pid "
            f"{proxy.pid}, RSS {_mb(proxy.rss())} MB"
        )
        try:
            await self._schedule(started, proxy, facts, legacy, amazonmq, prefix)
            stop_producers.set()
            self.log("stopping producers: settling what is in flight")
            done, pending = await asyncio.wait(tasks, timeout=FINISH_TIMEOUT)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    self.failures.append(f"a producer crashed: {task.exception()!r}")
            unfinished = [p.name for p in producers if not p.finished]
            if unfinished:
                self.failures.append(f"producers did not finish: {unfinished}")
        finally:
            sampler.cancel()
            rss_end = proxy.rss()
            if rss_end is not None:
                self.rss.append((time.monotonic() - started, rss_end))
            code = proxy.stop()
            if code not in (0, None):
                self.failures.append(f"proxy exit code {code} after SIGTERM")
            facts.poll()
        dests = [p.dest for p in producers]
        for consumer in consumers:
            try:
                wanted = await _sentinels(consumer.endpoint, dests, self.tag)
            except (StompError, TimeoutError, OSError) as exc:
                self.failures.append(f"sentinels to {consumer.broker}: {exc!r}")
                continue
            if not await consumer.wait_sentinels(wanted, 120.0):
                self.failures.append(f"{consumer.broker}: not every sentinel arrived")
        stop_consumers.set()
        await asyncio.wait(consumer_tasks, timeout=30)
        return self._verdict(producers, consumers, facts, proxy, time.monotonic() - started)

    async def _schedule(
        self,
        started: float,
        proxy: Proxy,
        facts: FactsTail,
        legacy: BrokerInfo,
        amazonmq: BrokerInfo,
        prefix: str,
    ) -> None:
        total = self.opts.seconds

        async def at(fraction: float) -> None:
            await asyncio.sleep(max(0.0, started + fraction * total - time.monotonic()))
            self._check_proxy(proxy)

        # 1. the routes file changes under load: hot reload
        await at(0.25)
        mark = len(facts.kept)
        new = proxy.routes.with_suffix(".next")
        new.write_text(routes_text(prefix, legacy, amazonmq, changed=True))
        os.replace(new, proxy.routes)
        applied = await facts.wait("routes_applied", 30.0, after=mark)
        self.steps["reload_applied"] = applied
        self.log(f"routes changed (mirror -> cutover, legacy -> reject): applied={applied}")
        if not applied:
            self.failures.append("the routes change was not applied within 30 s")
        # 2. Amazon MQ SIGKILLed under load, then started again
        await at(0.45)
        mark = len(facts.kept)
        t0 = time.monotonic()
        await asyncio.to_thread(broker_ctl.kill, amazonmq.name)
        down = await facts.wait("broker_unavailable", 30.0, after=mark, broker=AMAZONMQ)
        await asyncio.sleep(min(20.0, max(3.0, 0.05 * total)))  # the outage's length
        await asyncio.to_thread(broker_ctl.start_one, amazonmq.name, "tls", amazonmq.port)
        up = await facts.wait("broker_recovered", 60.0, after=mark, broker=AMAZONMQ)
        self.steps["amazonmq_restarted"] = {"seen_down": down, "recovered": up}
        self.log(f"Amazon MQ killed and restarted in {time.monotonic() - t0:.1f} s: {up=}")
        if not (down and up):
            self.failures.append(f"Amazon MQ restart: unavailable seen {down}, recovered {up}")
        # 3. legacy stopped and started again
        await at(0.70)
        mark = len(facts.kept)
        t0 = time.monotonic()
        await asyncio.to_thread(broker_ctl.stop, legacy.name)
        await asyncio.to_thread(broker_ctl.start_one, legacy.name, "plain", legacy.port)
        up = await facts.wait("broker_recovered", 60.0, after=mark, broker=LEGACY)
        self.steps["legacy_restarted"] = {"recovered": up}
        self.log(f"legacy restarted in {time.monotonic() - t0:.1f} s: {up=}")
        if not up:
            self.failures.append("legacy restart: no broker_recovered within 60 s")
        await at(1.0)
        self._check_proxy(proxy)

    def _check_proxy(self, proxy: Proxy) -> None:
        if not proxy.alive():
            raise RuntimeError(f"the proxy exited: {proxy.stderr()[-2000:]}")

    async def _sample(
        self,
        proxy: Proxy,
        producers: list[PlainProducer | TxProducer],
        consumers: list[Consumer],
        started: float,
    ) -> None:
        last_log = 0.0
        while True:
            rss = proxy.rss()
            elapsed = time.monotonic() - started
            if rss is not None:
                self.rss.append((elapsed, rss))
            if elapsed - last_log >= 30.0 or last_log == 0.0:
                last_log = elapsed or 0.001
                receipted = sum(
                    1 for p in producers for a in p.sent.attempts if a.outcome == RECEIPT
                )
                found = sum(sum(c.found.values()) for c in consumers)
                self.log(
                    f"t={elapsed:5.0f}s  proxy RSS {_mb(rss)} MB  SENDs receipted "
                    f"{receipted:,}  copies consumed {found:,}"
                )
            await asyncio.sleep(SAMPLE_EVERY)

    def _verdict(
        self,
        producers: list[PlainProducer | TxProducer],
        consumers: list[Consumer],
        facts: FactsTail,
        proxy: Proxy,
        seconds: float,
    ) -> dict[str, Any]:
        sent = Sent()
        for p in producers:
            sent.extend(p.sent)
        found = {c.broker: c.found for c in consumers}
        verdict = check(sent, found, facts.kept)
        rss = [r for _, r in self.rss]
        total = self.opts.seconds
        early = [r for t, r in self.rss if 0.10 * total <= t <= 0.25 * total]
        late = [r for t, r in self.rss if t >= 0.90 * total]
        baseline = statistics.median(early or rss[:3] or [0])
        end = statistics.median(late or rss[-3:] or [0])
        growth_mb = (end - baseline) / 2**20
        if growth_mb > self.opts.max_rss_growth_mb:
            self.failures.append(
                f"proxy RSS grew {growth_mb:.1f} MB (bound {self.opts.max_rss_growth_mb:g} MB)"
            )
        routed_versions = Counter(
            f.get("routes_version") for f in facts.kept if f["event"] == "message_routed"
        )
        return {
            "tag": self.tag,
            "seconds": round(seconds, 1),
            "options": vars(self.opts),
            "producers": len(producers),
            "transactional_producers": sum(isinstance(p, TxProducer) for p in producers),
            "messages": verdict.messages,
            "attempts": verdict.attempts,
            "receipted": verdict.receipted,
            "found": verdict.on,
            "duplicates": verdict.duplicates,
            "duplicates_explained": dict(verdict.explained),
            "redelivered_same_copy": sum(c.redelivered for c in consumers),
            "transactions": dict(verdict.tx),
            "producer_reconnects": sum(max(0, p.connections - 1) for p in producers),
            "producer_error_frames": sum(p.error_frames for p in producers),
            "consumer_reconnects": sum(c.reconnects for c in consumers),
            "facts": {k: v for k, v in sorted(facts.counts.items())},
            "routes_versions_used": len(routed_versions),
            "steps": self.steps,
            "rss_start": rss[0] if rss else None,
            "rss_baseline": baseline,
            "rss_peak": max(rss) if rss else None,
            "rss_end": end,
            "rss_growth_mb": round(growth_mb, 2),
            "rss_samples": self.rss,
            "lost": verdict.lost,
            "violations": verdict.violations,
            "failures": self.failures,
            "ok": not verdict.violations and not self.failures,
            "proxy_stderr_tail": proxy.stderr()[-2000:],
        }


def render(r: dict[str, Any]) -> str:
    steps = r["steps"]
    dups = ", ".join(f"{k} {v}" for k, v in r["duplicates_explained"].items()) or "none"
    tx = ", ".join(f"{k} {v}" for k, v in sorted(r["transactions"].items())) or "-"
    lines = [
        f"soak {r['tag']}: {r['seconds']:.0f} s, {r['producers']} producers "
        f"({r['transactional_producers']} transactional), loopback",
        f"  sent {r['messages']:,} messages in {r['attempts']:,} SENDs; receipted "
        f"{r['receipted']:,}; found legacy {r['found'][LEGACY]:,}, Amazon MQ "
        f"{r['found'][AMAZONMQ]:,}",
        f"  duplicates {r['duplicates']} (explained: {dups}); the same stored copy delivered "
        f"again after a restart {r['redelivered_same_copy']}",
        f"  transactions: {tx}",
        f"  producers: {r['producer_reconnects']} reconnects, {r['producer_error_frames']} "
        f"ERROR frames; consumers: {r['consumer_reconnects']} reconnects",
        f"  reload applied: {steps.get('reload_applied')}; Amazon MQ restarted: "
        f"{steps.get('amazonmq_restarted')}; legacy restarted: {steps.get('legacy_restarted')}",
        f"  proxy RSS start {_mb(r['rss_start'])} MB, early {_mb(r['rss_baseline'])} MB, "
        f"peak {_mb(r['rss_peak'])} MB, end {_mb(r['rss_end'])} MB "
        f"(growth {r['rss_growth_mb']:+.1f} MB, bound {r['options']['max_rss_growth_mb']:g})",
        "  facts: " + ", ".join(f"{k} {v}" for k, v in r["facts"].items()),
        f"  receipted messages lost: {r['lost']}",
    ]
    for v in r["violations"][:20]:
        lines.append(f"  VIOLATION: {v}")
    for f in r["failures"]:
        lines.append(f"  FAILED: {f}")
    lines.append("  result: " + ("ok" if r["ok"] else "FAILED"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak the proxy: producers, a routes change and broker restarts mid-run.",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="run length (default 10)")
    length.add_argument("--seconds", type=float, help="run length in seconds")
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument(
        "--tx-every", type=int, default=4, help="every N-th producer sends transactions (0: none)"
    )
    parser.add_argument("--rate", type=float, default=25.0, help="messages/s per producer")
    parser.add_argument("--window", type=int, default=10, help="unconfirmed SENDs per producer")
    parser.add_argument("--max-rss-growth-mb", type=float, default=25.0)
    parser.add_argument("--json", type=Path, help="write the result here too")
    parser.add_argument("--keep", action="store_true", help="keep the proxy's facts and stderr")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds else (args.minutes or 10.0) * 60
    if seconds < 20 or args.producers < 1:
        parser.error("the soak needs at least 20 seconds and one producer")
    opts = Options(
        seconds,
        args.producers,
        args.tx_every,
        args.rate,
        args.window,
        args.max_rss_growth_mb,
        args.keep,
    )
    log = _logger()
    soak = Soak(opts, log)
    log(f"soak {soak.tag}: starting two brokers of its own")
    legacy, amazonmq = broker_ctl.start_pair(f"soak-{soak.tag}")
    workdir = Path(tempfile.mkdtemp(prefix="strangler-soak-"))
    try:
        result = run(soak.run(legacy, amazonmq, workdir))
    finally:
        broker_ctl.remove_pair(f"soak-{soak.tag}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
