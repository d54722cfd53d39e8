"""The benchmark runner: direct vs. proxied, interleaved, repeated; a table and JSON.

    .venv/bin/python -m bench.run              # every scenario, 3 repeats (< 10 min)
    .venv/bin/python -m bench.run --quick      # 1 repeat, smaller counts (< 3 min)
    .venv/bin/python -m bench.run --scenarios S2,M --repeat 5
    .venv/bin/python -m bench.run --soak 1000000
    .venv/bin/python -m bench.run --scenarios S2 --profile   # py-spy the proxy

For each scenario the runner starts the brokers (scripts/brokers.sh start), starts
``strangler run`` as a subprocess on a free port with a generated routes file,
warms both paths up, then runs direct (to the legacy broker) and proxied in turn,
A B A B ..., each on a fresh destination that is drained (and verified) right
after. See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import (
    SHAPES,
    Check,
    ConnStats,
    Endpoint,
    RunStats,
    Shape,
    StompError,
    Tally,
    check_once,
    check_split,
    connect,
    cpu_self,
    drain,
    loop_name,
    percentile,
    prepare,
    run,
    run_connections,
    run_plan,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BROKERS_SH = REPO / "scripts" / "brokers.sh"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Scenarios with an HAProxy arm (TCP to legacy): the peer's ratio in the same run.
HAPROXY_SCENARIOS = ("S1", "S2", "S3", "S4", "M-S2")
# Not S3: its persistent stores hide a header's cost (1.04-1.09x in three runs), and its
# stamped runs took 42 of the 62 s the arm added to a default run.
STAMPED_SCENARIOS = ("S1", "S2", "S4")
# Ratio proxied/direct the proxy should reach in legacy pass-through (bench/README.md).
TARGETS = {"S1": 0.90, "S2": 0.60, "S3": 0.90, "S4": 0.90}
QUICK = {
    "S1": 20_000,
    "S2": 2_000,
    "S3": 500,  # per producer (x16)
    "S4": 1_000,
}
CONNECTIONS = 1000
QUICK_CONNECTIONS = 1000
SOAK_SAMPLE_EVERY = 50_000
# The soak's producer outruns its consumer: it sends SOAK_STEP messages at a time, each
# step once the consumer is at most SOAK_BACKLOG behind (legacy's 256 MB heap holds
# about 90,000 queued 256-byte messages; unbounded, it ran out at ~200,000).
SOAK_STEP = 10_000
SOAK_BACKLOG = 20_000


# -- brokers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Brokers:
    legacy: Endpoint
    amazonmq: Endpoint
    legacy_url: str
    amazonmq_url: str
    legacy_pid: int | None
    amazonmq_pid: int | None = None


def brokers_state_dir() -> Path:
    return Path(os.environ.get("STRANGLER_BROKERS_DIR") or REPO / ".brokers")


def ensure_brokers() -> Brokers:
    """Start the two local brokers if needed and read their addresses."""
    started = subprocess.run(
        ["bash", str(BROKERS_SH), "start"], capture_output=True, text=True, timeout=300
    )
    if started.returncode != 0:
        sys.stderr.write(started.stderr)
        raise SystemExit("bench: scripts/brokers.sh start failed")
    out = subprocess.run(
        ["bash", str(BROKERS_SH), "env"], capture_output=True, text=True, check=True
    ).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            env[key] = value

    def endpoint(name: str, prefix: str, ca: str | None) -> tuple[Endpoint, str]:
        url = env[f"{prefix}_URL"]
        host, _, port = url.split("://", 1)[1].rpartition(":")
        return Endpoint(
            name, host, int(port), env[f"{prefix}_USER"], env[f"{prefix}_PASSWORD"], ca
        ), url

    legacy, legacy_url = endpoint("legacy", "STRANGLER_LEGACY", None)
    amazonmq, amazonmq_url = endpoint(
        "amazonmq", "STRANGLER_AMAZONMQ", env["STRANGLER_AMAZONMQ_CA"]
    )
    state = brokers_state_dir()

    def pid(name: str) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((state / name / "broker.pid").read_text().split()[0])
        return None

    return Brokers(legacy, amazonmq, legacy_url, amazonmq_url, pid("legacy"), pid("amazonmq"))


# Both brokers' KahaDB limit (scripts/brokers.sh: storeUsage 2 gb). Near it, producer
# flow control stalls persistent sends: a default run took 610 s instead of 266 s, and
# one hung in S3's warm-up. Messages that runs failing part-way never drained fill it.
STORE_LIMIT = 2 << 30
STORE_WARN = STORE_LIMIT // 2


def store_warnings(state: Path) -> list[str]:
    """A line for each broker whose message store holds more than half its limit."""
    lines = []
    for name in ("legacy", "amazonmq"):
        store = state / name / "data" / "kahadb"
        if not store.is_dir():
            continue
        used = sum(f.stat().st_size for f in store.iterdir() if f.is_file())
        if used > STORE_WARN:
            lines.append(
                f"bench: {name}'s message store holds {used >> 20} MiB of its "
                f"{STORE_LIMIT >> 20} MiB (messages of failed runs, never drained); near the "
                "limit, persistent scenarios stall and their ratios mean little. Reset: "
                f"scripts/brokers.sh stop; rm -rf {state / name / 'data'}; "
                "scripts/brokers.sh start"
            )
    return lines


# -- /proc -------------------------------------------------------------------------


def proc_cpu(pid: int | None) -> float | None:
    """utime + stime of ``pid`` (all threads), in seconds."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss(pid: int) -> int | None:
    """VmRSS of ``pid`` in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the proxy under test ------------------------------------------------------------------


_PROXY_CMD: list[str] | None = None  # --proxy-cmd


def proxy_command() -> list[str]:
    if _PROXY_CMD:
        return list(_PROXY_CMD)
    exe = REPO / ".venv" / "bin" / "strangler"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("strangler")
    return [found] if found else [sys.executable, "-m", "strangler"]


def routes_yaml(brokers: Brokers, mode: str) -> str:
    text = f"brokers:\n  legacy:\n    url: {brokers.legacy_url}\n"
    if mode != "legacy":
        text += (
            "  amazonmq:\n"
            f"    url: {brokers.amazonmq_url}\n"
            f"    ca_file: {brokers.amazonmq.ca_file}\n"
            "    credentials:\n"
            "      username_env: STRANGLER_AMAZONMQ_USER\n"
            "      password_env: STRANGLER_AMAZONMQ_PASSWORD\n"
            "    heartbeat_ms: 10000\n"
        )
    text += f"routes:\n  - name: bench-{mode}\n    match: {{prefix: /queue/bench.}}\n"
    text += f"    mode: {mode}\n"
    if mode == "split":
        text += "    weight: 50\n    on_failure: legacy\n"
    return text


class _Child:
    """A process between the load generator and legacy, with its CPU and RSS observable."""

    endpoint: Endpoint
    stderr_path: Path
    _process: subprocess.Popen[bytes] | None

    def start(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def _spawn(
        self, cmd: list[str], env: dict[str, str], ready: str | Callable[[], bool], timeout: float
    ) -> None:
        with open(self.stderr_path, "wb") as err:
            self._process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready() if callable(ready) else ready in self.stderr():
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{cmd[0]} did not start: {self.stderr()[-2000:]}")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def cpu(self) -> float | None:
        return proc_cpu(self.pid)

    def rss(self) -> int | None:
        return proc_rss(self.pid)

    def stop(self) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


class Relay(_Child):
    """``bench/relay.py``: the floor, a Python byte relay that does no STOMP work at all."""

    def __init__(self, brokers: Brokers, workdir: Path) -> None:
        self.stderr_path = workdir / f"relay-{uuid.uuid4().hex[:8]}.txt"
        port = free_port()
        self.endpoint = replace(brokers.legacy, name="relay", host="127.0.0.1", port=port)
        self._to = f"{brokers.legacy.host}:{brokers.legacy.port}"
        self._process = None

    def start(self, timeout: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "bench.relay", "--listen", f"127.0.0.1:{self.endpoint.port}"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self._spawn([*cmd, "--to", self._to], env, "relay: listening", timeout)


def haproxy_binary() -> str | None:
    """Debian's haproxy (``apt-get install -y haproxy``), if installed."""
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None,
    )


def haproxy_cfg(listen: int, to: Endpoint) -> str:
    """TCP mode, one thread, loopback: HAProxy as ops would put it before a broker."""
    return (
        "global\n"
        "    nbthread 1\n"
        "    maxconn 4096\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 5s\n"
        "    timeout client 1h\n"
        "    timeout server 1h\n"
        "listen stomp\n"
        f"    bind 127.0.0.1:{listen}\n"
        f"    server legacy {to.host}:{to.port}\n"
    )


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class HAProxy(_Child):
    """HAProxy (TCP, one thread) in front of legacy: the peer a sidecar is judged against."""

    def __init__(self, brokers: Brokers, workdir: Path, binary: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.stderr_path = workdir / f"haproxy-{tag}.txt"
        self.config = workdir / f"haproxy-{tag}.cfg"
        port = free_port()
        self.endpoint = replace(brokers.legacy, name="haproxy", host="127.0.0.1", port=port)
        self.config.write_text(haproxy_cfg(port, brokers.legacy))
        self._binary = binary
        self._process = None

    def start(self, timeout: float = 30.0) -> None:
        # -db: foreground, one process (no master/worker), so /proc/PID is all its CPU.
        cmd = [self._binary, "-db", "-f", str(self.config)]
        self._spawn(cmd, dict(os.environ), lambda: _accepts(self.endpoint.port), timeout)


class Proxy(_Child):
    """``strangler run`` as a subprocess, with its CPU, RSS and facts observable."""

    def __init__(self, brokers: Brokers, mode: str, workdir: Path, label: str) -> None:
        self.mode = mode
        self.dir = workdir / f"{label}-{mode}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.routes = self.dir / "routes.yaml"
        self.routes.write_text(routes_yaml(brokers, mode))
        self.facts = self.dir / "facts.jsonl"
        self.stderr_path = self.dir / "stderr.txt"
        self.port = free_port()
        self.endpoint = replace(brokers.legacy, name="proxy", host="127.0.0.1", port=self.port)
        self._brokers = brokers
        self._facts_offset = 0
        self._process = None

    def start(self, timeout: float = 30.0) -> None:
        cmd = [
            *proxy_command(),
            "run",
            "--routes",
            str(self.routes),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--facts",
            str(self.facts),
        ]
        if _supports_admin():
            # Keep the admin server (the default) but off the fixed port 9090.
            cmd += ["--admin", f"127.0.0.1:{free_port()}"]
        env = dict(os.environ)
        env["STRANGLER_AMAZONMQ_USER"] = self._brokers.amazonmq.login
        env["STRANGLER_AMAZONMQ_PASSWORD"] = self._brokers.amazonmq.passcode
        self.command = cmd
        self._spawn(cmd, env, "strangler: listening on", timeout)

    def new_facts(self) -> Counter[str]:
        """Events by name written since the last call."""
        counts: Counter[str] = Counter()
        try:
            with open(self.facts, "rb") as f:
                f.seek(self._facts_offset)
                data = f.read()
        except OSError:
            return counts
        end = data.rfind(b"\n") + 1
        self._facts_offset += end
        for line in data[:end].splitlines():
            # Lines start with {"event":"NAME", (the sink puts event first).
            start = line.find(b'"event":"')
            if start >= 0:
                start += 9
                counts[line[start : line.find(b'"', start)].decode()] += 1
        return counts


_ADMIN: bool | None = None


def _supports_admin() -> bool:
    global _ADMIN
    if _ADMIN is None:
        out = subprocess.run(
            [*proxy_command(), "run", "--help"], capture_output=True, text=True, timeout=60
        )
        _ADMIN = "--admin" in out.stdout
    return _ADMIN


class Profiler:
    """py-spy record on the proxy while it runs; collapsed stacks + a top list."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self._process = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "250",
                "--nonblocking",
                "--threads",
                "--format",
                "raw",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

    def stop(self) -> None:
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()


def top_functions(collapsed: Path, limit: int = 20) -> list[tuple[str, float, float]]:
    """(function, self %, inclusive %) from py-spy's raw (collapsed) output, idle excluded."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        if not frames:
            continue
        leaf = frames[-1]
        if any(k in leaf for k in ("(selectors.py", "Condition.wait", "Event.wait", "run (uvloop")):
            continue  # waiting, not working
        total += count
        self_time[_short(leaf)] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    if not total:
        return []
    return [
        (name, 100 * n / total, 100 * inclusive[name] / total)
        for name, n in self_time.most_common(limit)
    ]


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    tail = "/".join(path.split("/")[-2:]) if "strangler/" in path else path.split("/")[-1]
    return f"{name} ({tail}:{line})" if where else name


# -- scenarios ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str  # S1..S4, M-S2, M-S1, X-S2, X-S1
    shape: Shape
    mode: str  # the proxy's route mode for the bench destination
    verify: bool
    # Consume while sending, in direct and proxied runs alike. The standard brokers have
    # a 256 MB heap: 60k queued 256 B messages take ~170 MB of it (the broker ran out of
    # heap twice that way), and S4's ~200 MB per run spools to a temp store that fills
    # up after a few runs. A consumer keeps the broker holding only what is in flight.
    drain_live: bool = False

    @property
    def base(self) -> str:
        return self.name.rsplit("-", 1)[-1]


def scenarios(names: Sequence[str], quick: bool, verify: bool) -> list[Scenario]:
    def shape(base: str) -> Shape:
        s = SHAPES[base]
        return replace(s, messages=QUICK[base]) if quick else s

    out: list[Scenario] = []
    for name in names:
        if name in SHAPES:
            checked = verify and name in ("S1", "S2")
            live = name in ("S1", "S4")
            out.append(Scenario(name, shape(name), "legacy", checked, drain_live=live))
        elif name == "M":
            out.append(Scenario("M-S2", shape("S2"), "mirror", verify))
            out.append(Scenario("M-S1", shape("S1"), "mirror", verify, drain_live=True))
        elif name == "X":
            x1 = replace(shape("S1"), split_markers=True)
            out.append(Scenario("X-S2", shape("S2"), "split", verify))
            out.append(Scenario("X-S1", x1, "split", verify, drain_live=True))
    return out


class BrokerDown(RuntimeError):
    """A broker does not answer: stop, rather than time out run after run."""


@dataclass
class Run:
    scenario: str
    target: str  # direct | proxied
    repeat: int
    destination: str
    messages: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    gen_cpu_share: float | None = None  # load generator CPU / wall time
    proxy_cpu_s: float | None = None  # from before the run until drained and idle
    proxy_cpu_per_msg_us: float | None = None
    proxy_rss_before: int | None = None
    proxy_rss_after: int | None = None
    broker_cpu_per_msg_us: float | None = None
    # The Amazon MQ stand-in's CPU, until the copies are drained (mirror and split runs).
    amazonmq_cpu_per_msg_us: float | None = None
    loadavg_1m: float | None = None  # machine load when the run started (noise indicator)
    verify: str = ""
    verified: bool | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Bench:
    brokers: Brokers
    workdir: Path
    repeat: int
    timeout: float
    profile_dir: Path | None
    log: Callable[[str], None]
    floor: bool = True  # a relay arm (bench/relay.py) next to direct and proxied, legacy mode
    haproxy: str | None = None  # the haproxy binary: an arm for S1-S4 and M-S2
    # A direct arm whose SENDs carry the proxy's trace header (STAMPED_SCENARIOS): the
    # broker's cost of that header, which no proxy that stamps messages can avoid.
    stamped: bool = True
    runs: list[Run] = field(default_factory=list)
    conn_runs: list[dict[str, Any]] = field(default_factory=list)
    proxies: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)

    # -- throughput scenarios ------------------------------------------------------

    async def scenario(self, sc: Scenario) -> None:
        proxy = Proxy(self.brokers, sc.mode, self.workdir, sc.name)
        proxy.start()
        info: dict[str, Any] = {
            "mode": sc.mode,
            "command": proxy.command,
            "rss_start": proxy.rss(),
            "cpu_start": proxy.cpu(),
        }
        self.proxies[sc.name] = info
        arms: dict[str, _Child] = {}
        if self.floor and sc.mode == "legacy":
            arms["relay"] = Relay(self.brokers, self.workdir)
        if self.haproxy and sc.name in HAPROXY_SCENARIOS:
            arms["haproxy"] = HAProxy(self.brokers, self.workdir, self.haproxy)
        try:
            await self._warm_up(sc, proxy)
            info["rss_warm"] = proxy.rss()
            for arm in arms.values():
                arm.start()
            targets = ["direct", "proxied", *arms]
            if self.stamped and sc.name in STAMPED_SCENARIOS:
                targets.append("stamped")
            for r in range(self.repeat):
                for target in targets:
                    if not proxy.alive():
                        raise RuntimeError(f"proxy exited: {proxy.stderr()[-2000:]}")
                    if target in arms:
                        result = await self._one(sc, None, r, arms[target], target)
                    elif target == "stamped":
                        result = await self._one(sc, None, r, stamped=True)
                    else:
                        result = await self._one(sc, proxy if target == "proxied" else None, r)
                    self.runs.append(result)
                    self.log(_describe_run(result))
        finally:
            for arm in arms.values():
                arm.stop()
            info["rss_end"] = proxy.rss()
            info["cpu_end"] = proxy.cpu()
            info["returncode"] = proxy.stop()
            info["stderr_tail"] = _interesting_stderr(proxy.stderr())
            info["facts_file_bytes"] = proxy.facts.stat().st_size if proxy.facts.exists() else 0

    async def _warm_up(self, sc: Scenario, proxy: Proxy) -> None:
        """A short run of both paths (JIT, connection setup, caches); not recorded."""
        small = replace(
            sc.shape,
            producers=min(sc.shape.producers, 4),
            messages=min(
                sc.shape.messages,
                300 if sc.shape.receipt_every == 1 else 2000,
                (16 << 20) // sc.shape.size,
            ),
        )
        for ep in (self.brokers.legacy, proxy.endpoint):
            destination = f"/queue/bench.warmup.{uuid.uuid4().hex}"
            with contextlib.suppress(StompError, TimeoutError, OSError):
                await run_plan(ep, prepare(small, destination), timeout=self.timeout)
            brokers = [self.brokers.legacy]
            expected = small.total
            if ep is proxy.endpoint and sc.mode != "legacy":
                brokers.append(self.brokers.amazonmq)
                if sc.mode == "mirror":
                    expected *= 2  # some copies may have been dropped: the idle wait ends it
            await drain(
                brokers, destination, small.total, expected=expected, idle_timeout=1.5, grace=0
            )
        proxy.new_facts()

    async def check_brokers(self, mode: str) -> None:
        """Both brokers must answer CONNECT, or every run would only time out."""
        needed = [self.brokers.legacy]
        if mode != "legacy":
            needed.append(self.brokers.amazonmq)
        for ep in needed:
            try:
                client = await connect(ep, timeout=15.0)
            except (StompError, TimeoutError, OSError) as exc:
                raise BrokerDown(
                    f"{ep} does not answer CONNECT ({type(exc).__name__}: {exc}); "
                    f"see .brokers/{ep.name}/broker.log (OutOfMemoryError? restart it with "
                    f"scripts/brokers.sh stop {ep.name} && scripts/brokers.sh start)"
                ) from exc
            await client.disconnect()

    async def _one(
        self,
        sc: Scenario,
        proxy: Proxy | None,
        r: int,
        arm: _Child | None = None,
        arm_name: str = "",
        *,
        stamped: bool = False,
    ) -> Run:
        """One run: direct (``stamped``: with the proxy's trace header on each SEND),
        through the proxy, or through another ``arm`` (the floor relay, HAProxy), which
        passes bytes to legacy as they are."""
        destination = f"/queue/bench.{sc.name}.{uuid.uuid4().hex}"
        middle: _Child | None = arm or proxy
        target = arm_name if arm else "proxied" if proxy else "stamped" if stamped else "direct"
        result = Run(sc.name, target, r, destination)
        result.loadavg_1m = os.getloadavg()[0]
        plan = prepare(sc.shape, destination, stamped=stamped)
        ep = middle.endpoint if middle else self.brokers.legacy
        cpu0 = middle.cpu() if middle else None
        broker0 = proc_cpu(self.brokers.legacy_pid)
        amazonmq0 = proc_cpu(self.brokers.amazonmq_pid) if sc.mode != "legacy" else None
        if middle:
            result.proxy_rss_before = middle.rss()
        live = await self._live_drains(sc, proxy, destination) if sc.drain_live else None
        profiler = None
        if proxy and self.profile_dir is not None:
            profiler = Profiler(proxy.pid, self.profile_dir / f"{sc.name}-{r}.txt")
        stats: RunStats | None = None
        try:
            stats = await run_plan(ep, plan, timeout=self.timeout)
        except (StompError, TimeoutError, OSError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            if profiler is not None:
                profiler.stop()
        broker1 = proc_cpu(self.brokers.legacy_pid)
        del plan
        if stats is not None:
            result.messages = stats.messages
            result.seconds = stats.seconds
            result.rate = stats.rate
            p50, p99 = stats.percentile(0.5), stats.percentile(0.99)
            result.p50_ms = None if p50 is None else p50 * 1000
            result.p99_ms = None if p99 is None else p99 * 1000
            result.gen_cpu_share = stats.gen_cpu / stats.seconds if stats.seconds else None
            if broker0 is not None and broker1 is not None and stats.messages:
                result.broker_cpu_per_msg_us = (broker1 - broker0) / stats.messages * 1e6
        await self._settle(sc, proxy, result, live)
        amazonmq1 = proc_cpu(self.brokers.amazonmq_pid) if amazonmq0 is not None else None
        if amazonmq0 is not None and amazonmq1 is not None and result.messages:
            result.amazonmq_cpu_per_msg_us = (amazonmq1 - amazonmq0) / result.messages * 1e6
        if middle is not None:
            result.proxy_rss_after = middle.rss()
            cpu1 = middle.cpu()
            if cpu0 is not None and cpu1 is not None:
                result.proxy_cpu_s = cpu1 - cpu0
                if result.messages:
                    result.proxy_cpu_per_msg_us = result.proxy_cpu_s / result.messages * 1e6
        if profiler is not None and profiler.out.exists():
            self.profiles[f"{sc.name}-{r}"] = top_functions(profiler.out)
        return result

    async def _live_drains(
        self, sc: Scenario, proxy: Proxy | None, destination: str
    ) -> dict[str, asyncio.Task[dict[str, Tally]]]:
        """Consumers subscribed before the run starts, on the broker(s) the routes chose."""
        legacy, amazonmq = self.brokers.legacy, self.brokers.amazonmq
        mode = sc.mode if proxy is not None else "legacy"
        ready: list[asyncio.Event] = []

        def start(eps: list[Endpoint], idle: float = 30.0) -> asyncio.Task[dict[str, Tally]]:
            subscribed = asyncio.Event()
            ready.append(subscribed)
            return asyncio.create_task(
                drain(
                    eps,
                    destination,
                    sc.shape.total,
                    idle_timeout=idle,
                    grace=0.2 if sc.verify else 0.0,
                    timeout=self.timeout,
                    subscribed=subscribed,
                )
            )

        tasks = {}
        if mode == "split":
            tasks["split"] = start([legacy, amazonmq])
        else:
            tasks["legacy"] = start([legacy])
        if mode == "mirror":
            # Copies may be dropped by design: the count is unknown, so end on idle.
            tasks["copies"] = start([amazonmq], idle=5.0)
        async with asyncio.timeout(30):
            for event in ready:
                await event.wait()
        return tasks

    async def _settle(
        self,
        sc: Scenario,
        proxy: Proxy | None,
        result: Run,
        live: dict[str, asyncio.Task[dict[str, Tally]]] | None,
    ) -> None:
        """Drain what the run sent (from the broker(s) the routes chose) and check it."""
        total = sc.shape.total
        destination = result.destination
        legacy, amazonmq = self.brokers.legacy, self.brokers.amazonmq
        mode = sc.mode if proxy is not None else "legacy"
        grace = 0.2 if sc.verify else 0.0
        checks: dict[str, Check] = {}
        if mode == "legacy":
            if live is not None:
                tallies = await live["legacy"]
            else:
                tallies = await drain([legacy], destination, total, grace=grace)
            checks["legacy"] = check_once(tallies["legacy"])
        elif mode == "split":
            if live is not None:
                tallies = await live["split"]
            else:
                tallies = await drain([legacy, amazonmq], destination, total, grace=grace)
            checks["split"] = check_split(tallies["legacy"], tallies["amazonmq"])
            result.checks["on_amazonmq"] = tallies["amazonmq"].received
        elif mode == "mirror":
            assert proxy is not None
            if live is not None:
                tallies = await live["legacy"]
            else:
                tallies = await drain([legacy], destination, total, grace=grace)
            checks["legacy"] = check_once(tallies["legacy"])
            await asyncio.sleep(0.3)  # facts are written every 50 ms
            failed_so_far = proxy.new_facts()
            if live is not None:
                copies = await live["copies"]
            else:
                expect = total - failed_so_far["message_mirror_failed"]
                copies = await drain([amazonmq], destination, total, expected=expect, grace=grace)
            checks["amazonmq"] = check_once(copies["amazonmq"])
            result.facts.update(failed_so_far)
        if proxy is not None:
            await asyncio.sleep(0.2)
            result.facts = dict(Counter(result.facts) + proxy.new_facts())
        result.checks.update({k: asdict(v) for k, v in checks.items()})
        result.verify, result.verified = _verdict(mode, checks, result, sc.verify)

    # -- many connections --------------------------------------------------------------

    async def connections(self, count: int) -> None:
        """C: each proxied round gets a fresh proxy, so its idle RSS is a clean baseline."""
        info: dict[str, Any] = {"mode": "legacy", "rounds": []}
        self.proxies["C"] = info
        for r in range(self.repeat):
            for target in ("direct", "proxied"):
                proxy: Proxy | None = None
                if target == "proxied":
                    proxy = Proxy(self.brokers, "legacy", self.workdir, f"C{r}")
                    proxy.start()
                    info["command"] = proxy.command
                    await asyncio.sleep(0.5)
                try:
                    record = await self._connections_once(count, r, proxy)
                finally:
                    if proxy is not None:
                        round_info = {
                            "rss_end": proxy.rss(),
                            "returncode": proxy.stop(),
                            "stderr_tail": _interesting_stderr(proxy.stderr()),
                        }
                        info["rounds"].append(round_info)
                        if round_info["stderr_tail"]:
                            info["stderr_tail"] = round_info["stderr_tail"]
                        if round_info["returncode"] not in (0, None):
                            info["returncode"] = round_info["returncode"]
                self.conn_runs.append(record)
                self.log(_describe_conn(record))

    async def _connections_once(self, count: int, r: int, proxy: Proxy | None) -> dict[str, Any]:
        ep = proxy.endpoint if proxy is not None else self.brokers.legacy
        destination = f"/queue/bench.C.{uuid.uuid4().hex}"
        rss_idle = proxy.rss() if proxy else None
        cpu0 = proxy.cpu() if proxy else None

        def probe() -> dict[str, Any]:
            return {"rss": proxy.rss(), "cpu": proxy.cpu()} if proxy else {}

        stats: ConnStats | None = None
        error = None
        try:
            stats = await run_connections(ep, count, destination, probe=probe, timeout=self.timeout)
        except (StompError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(1.0)  # let both ends notice the closes
        tallies = await drain([self.brokers.legacy], destination, count, grace=0.2)
        check = check_once(tallies["legacy"])
        if stats is not None:
            check.missing -= count - stats.receipts  # only receipted ones must be there
        record: dict[str, Any] = {
            "target": "proxied" if proxy else "direct",
            "repeat": r,
            "wanted": count,
            "error": error,
            "drained": tallies["legacy"].received,
            "verify": check.describe(),
        }
        if stats is not None:
            lat = stats.connect_latencies
            record.update(
                opened=stats.opened,
                connect_s=stats.connect_seconds,
                conn_per_s=stats.rate,
                connect_p50_ms=_ms(percentile(lat, 0.5)),
                connect_p99_ms=_ms(percentile(lat, 0.99)),
                send_s=stats.send_seconds,
                receipts=stats.receipts,
                failures=Counter(stats.failures).most_common(5),
            )
        if proxy is not None:
            rss_open = stats.probe.get("rss") if stats else None
            record.update(
                rss_idle=rss_idle,
                rss_open=rss_open,
                rss_closed=proxy.rss(),
                cpu_s=_sub(proxy.cpu(), cpu0),
                facts=dict(proxy.new_facts()),
            )
            if stats and stats.opened and rss_open and rss_idle:
                record["bytes_per_conn"] = (rss_open - rss_idle) / stats.opened
        return record

    # -- soak ----------------------------------------------------------------------------

    async def soak(self, total: int) -> dict[str, Any]:
        """``total`` messages on one proxied connection; RSS every 50k messages."""
        proxy = Proxy(self.brokers, "legacy", self.workdir, "soak")
        proxy.start()
        destination = f"/queue/bench.soak.{uuid.uuid4().hex}"
        consumed = 0  # what the consumer has received: it paces the producer (SOAK_STEP)
        caught_up = asyncio.Event()
        behind = 0  # the count the consumer must reach before the next step goes

        def received(n: int) -> None:
            nonlocal consumed
            consumed = n
            if n >= behind:
                caught_up.set()

        consumer = asyncio.create_task(
            drain(
                [self.brokers.legacy],
                destination,
                total,
                idle_timeout=30.0,
                timeout=3600,
                on_received=received,
            )
        )
        samples: list[dict[str, Any]] = []
        error = None
        start = time.perf_counter()
        client = await connect(proxy.endpoint)
        samples.append({"messages": 0, "rss": proxy.rss(), "cpu": proxy.cpu(), "t": 0.0})
        try:
            sent = 0
            while sent < total:
                block = min(SOAK_SAMPLE_EVERY, total - sent)
                step_start = sent
                while step_start < sent + block:  # steps of SOAK_STEP, each receipted
                    behind = step_start - SOAK_BACKLOG
                    if consumed < behind:
                        caught_up.clear()
                        async with asyncio.timeout(self.timeout):
                            await caught_up.wait()
                    step = min(SOAK_STEP, sent + block - step_start)
                    shape = Shape(producers=1, messages=step, size=256)
                    (batches,) = prepare(shape, destination, first_seq=step_start)
                    for batch in batches:
                        waits = [client.expect(rid) for rid in batch.receipts]
                        await client.write_all(batch.chunks)
                        async with asyncio.timeout(self.timeout):
                            for fut in waits:
                                await fut
                    step_start += step
                sent += block
                elapsed = time.perf_counter() - start
                sample: dict[str, Any] = {
                    "messages": sent,
                    "rss": proxy.rss(),
                    "cpu": proxy.cpu(),
                    "t": elapsed,
                }
                samples.append(sample)
                self.log(
                    f"soak: {sent:>9,} msgs  proxy RSS {_mb(sample['rss'])} MB  "
                    f"{sent / elapsed:,.0f} msg/s"
                )
        except (StompError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            await client.disconnect()
        tallies = await consumer
        check = check_once(tallies["legacy"])
        facts = proxy.new_facts()
        proxy.stop()
        first = samples[1] if len(samples) > 2 else samples[0]
        last = samples[-1]
        span = last["messages"] - first["messages"]
        growth = (last["rss"] - first["rss"]) / span if span and last["rss"] else None
        return {
            "messages": total,
            "samples": samples,
            "growth_bytes_per_msg": growth,
            "verify": check.describe(),
            "facts": dict(facts),
            "error": error,
            "stderr_tail": _interesting_stderr(proxy.stderr()),
        }


# -- results ------------------------------------------------------------------------------


def _verdict(mode: str, checks: dict[str, Check], result: Run, verify: bool) -> tuple[str, bool]:
    if result.error:
        return f"ERROR ({result.error[:60]})", False
    problems = []
    for name, check in checks.items():
        if name == "amazonmq":
            # Mirror copies may be dropped by design, but never silently: each missing
            # copy needs a message_mirror_failed fact.
            failed = result.facts.get("message_mirror_failed", 0)
            dropped = result.facts.get("facts_dropped", 0)
            if check.duplicates or check.unexpected:
                problems.append(f"amazonmq {check.describe()}")
            elif check.missing != failed and not dropped:
                problems.append(f"amazonmq missing {check.missing} vs {failed} mirror_failed facts")
            continue
        if not check.ok:
            problems.append(f"{name}: {check.describe()}")
    if problems:
        return "; ".join(problems), False
    if not verify:
        drained = sum(c.delivered for n, c in checks.items() if n != "amazonmq")
        return f"drained {drained}", True
    note = ""
    if "amazonmq" in checks:
        note = f" (copies {checks['amazonmq'].delivered})"
    elif "split" in checks:
        note = f" (amq {result.checks.get('on_amazonmq', 0)})"
    return "ok" + note, True


def _interesting_stderr(text: str) -> str:
    lines = [ln for ln in text.splitlines() if "strangler: listening on" not in ln]
    return "\n".join(lines[-40:])


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value / 2**20:.1f}"


def _describe_run(run: Run) -> str:
    text = (
        f"  {run.scenario:<5} {run.target:<7} #{run.repeat}: {run.messages:>6} msgs "
        f"{run.seconds:7.3f}s {run.rate:>9,.0f} msg/s"
    )
    if run.p50_ms is not None and run.messages and run.p99_ms is not None:
        text += f"  p50 {run.p50_ms:.3f} ms p99 {run.p99_ms:.3f} ms"
    if run.proxy_cpu_per_msg_us is not None:
        text += f"  proxy {run.proxy_cpu_per_msg_us:.1f} us/msg"
    return text + f"  [{run.verify}]"


def _describe_conn(rec: dict[str, Any]) -> str:
    text = f"  C     {rec['target']:<7} #{rec['repeat']}: "
    if rec.get("error"):
        text += f"ERROR {rec['error']} "
    if "opened" in rec:
        text += (
            f"{rec['opened']}/{rec['wanted']} open in {rec['connect_s']:.2f}s "
            f"({rec['conn_per_s']:,.0f}/s), {rec['receipts']} receipts in {rec['send_s']:.2f}s"
        )
    if rec.get("bytes_per_conn") is not None:
        text += f", RSS {_mb(rec['rss_idle'])} -> {_mb(rec['rss_open'])} MB"
        text += f" = {rec['bytes_per_conn'] / 1024:.1f} KiB/conn"
    return text + f"  [{rec['verify']}]"


def _median(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def summarize(bench: Bench, order: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in order:
        runs = [r for r in bench.runs if r.scenario == name]
        direct = [r for r in runs if r.target == "direct" and not r.error]
        proxied = [r for r in runs if r.target == "proxied" and not r.error]
        relayed = [r for r in runs if r.target == "relay" and not r.error]
        haproxied = [r for r in runs if r.target == "haproxy" and not r.error]
        stamped = [r for r in runs if r.target == "stamped" and not r.error]
        h = _median([r.rate for r in haproxied])
        s = _median([r.rate for r in stamped])
        d = _median([r.rate for r in direct])
        p = _median([r.rate for r in proxied])
        f = _median([r.rate for r in relayed])
        base = name.rsplit("-", 1)[-1]
        target = TARGETS.get(name) if name == base else None
        info = bench.proxies.get(name, {})
        facts: Counter[str] = Counter()
        for r in runs:
            facts.update(r.facts)
        rows.append(
            {
                "scenario": name,
                "messages": runs[0].messages if runs else 0,
                "direct_median": d,
                "direct_min": min((r.rate for r in direct), default=None),
                "direct_max": max((r.rate for r in direct), default=None),
                "proxied_median": p,
                "proxied_min": min((r.rate for r in proxied), default=None),
                "proxied_max": max((r.rate for r in proxied), default=None),
                "ratio": p / d if p and d else None,
                # The floor: a Python byte relay with no STOMP work (bench/relay.py).
                "relay_median": f,
                "relay_ratio": f / d if f and d else None,
                "relay_p50_ms": _median([r.p50_ms for r in relayed]),
                "relay_cpu_per_msg_us": _median([r.proxy_cpu_per_msg_us for r in relayed]),
                # HAProxy (TCP, one thread): the peer, same destination, same broker.
                "haproxy_median": h,
                "haproxy_ratio": h / d if h and d else None,
                "haproxy_p50_ms": _median([r.p50_ms for r in haproxied]),
                "haproxy_p99_ms": _median([r.p99_ms for r in haproxied]),
                "haproxy_cpu_per_msg_us": _median([r.proxy_cpu_per_msg_us for r in haproxied]),
                # Direct with the proxy's trace header on each SEND: what the header alone
                # costs the broker, and the proxy's ratio to that.
                "stamped_median": s,
                "stamped_ratio": s / d if s and d else None,
                "ratio_to_stamped": p / s if p and s else None,
                "target": target,
                "meets_target": None if target is None or not (p and d) else p / d >= target,
                "direct_p50_ms": _median([r.p50_ms for r in direct]),
                "direct_p99_ms": _median([r.p99_ms for r in direct]),
                "proxied_p50_ms": _median([r.p50_ms for r in proxied]),
                "proxied_p99_ms": _median([r.p99_ms for r in proxied]),
                "proxy_cpu_per_msg_us": _median([r.proxy_cpu_per_msg_us for r in proxied]),
                "broker_cpu_per_msg_us_direct": _median([r.broker_cpu_per_msg_us for r in direct]),
                "broker_cpu_per_msg_us_proxied": _median(
                    [r.broker_cpu_per_msg_us for r in proxied]
                ),
                "amazonmq_cpu_per_msg_us_direct": _median(
                    [r.amazonmq_cpu_per_msg_us for r in direct]
                ),
                "amazonmq_cpu_per_msg_us_proxied": _median(
                    [r.amazonmq_cpu_per_msg_us for r in proxied]
                ),
                "gen_cpu_share": _median([r.gen_cpu_share for r in runs]),
                "rss_start": info.get("rss_start"),
                "rss_end": info.get("rss_end"),
                "verify": "ok"
                if runs and all(r.verified for r in runs)
                else "; ".join(sorted({f"{r.target}: {r.verify}" for r in runs if not r.verified})),
                "verify_detail": sorted({r.verify for r in runs}),
                "errors": [r.error for r in runs if r.error],
                "facts": dict(facts),
            }
        )
    return rows


def _fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _fmt_range(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return "-"
    return f"{lo / 1000:.1f}k-{hi / 1000:.1f}k" if hi >= 10_000 else f"{lo:,.0f}-{hi:,.0f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render(rows: list[dict[str, Any]], conn: list[dict[str, Any]], bench: Bench) -> str:
    out = []
    head = (
        f"{'scenario':<8} {'msgs':>6} {'direct msg/s':>12} {'(min-max)':>13} "
        f"{'proxied msg/s':>13} {'(min-max)':>13} {'ratio':>6} {'target':>7} {'floor':>6} "
        f"{'haproxy':>7} {'stamped':>7} {'CPU us/msg: proxy':>17} {'relay':>6} {'haproxy':>7} "
        f"{'proxy RSS MB':>13}  verify"
    )
    if rows:
        out.append(head)
        out.append("-" * len(head))
    for row in rows:
        target = "" if row["target"] is None else f">={row['target']:.2f}"
        if row["meets_target"] is False:
            target += "!"
        out.append(
            f"{row['scenario']:<8} {row['messages']:>6} {_fmt_rate(row['direct_median']):>12} "
            f"{_fmt_range(row['direct_min'], row['direct_max']):>13} "
            f"{_fmt_rate(row['proxied_median']):>13} "
            f"{_fmt_range(row['proxied_min'], row['proxied_max']):>13} "
            f"{_x(row['ratio']):>6} {target:>7} {_x(row['relay_ratio']):>6} "
            f"{_x(row['haproxy_ratio']):>7} {_x(row['stamped_ratio']):>7} "
            f"{_us(row['proxy_cpu_per_msg_us']):>17} "
            f"{_us(row['relay_cpu_per_msg_us']):>6} {_us(row['haproxy_cpu_per_msg_us']):>7} "
            f"{_mb(row['rss_start']) + '->' + _mb(row['rss_end']):>13}  {row['verify'][:70]}"
        )
    latency = [r for r in rows if r["scenario"].endswith("S2") or r["scenario"] == "S3"]
    if latency:
        out.append("")
        out.append(
            "latency per receipt wait (median of runs), ms p50 / p99:  direct -> proxied "
            "[relay] [haproxy]"
        )
        for row in latency:
            line = (
                f"  {row['scenario']:<6} {_f3(row['direct_p50_ms'])} / {_f3(row['direct_p99_ms'])}"
                f"  ->  {_f3(row['proxied_p50_ms'])} / {_f3(row['proxied_p99_ms'])}"
            )
            if row["relay_p50_ms"] is not None:
                line += f"  [relay {_f3(row['relay_p50_ms'])}]"
            if row["haproxy_p50_ms"] is not None:
                line += f"  [haproxy {_f3(row['haproxy_p50_ms'])} / {_f3(row['haproxy_p99_ms'])}]"
            out.append(line)
    copied = [r for r in rows if r["amazonmq_cpu_per_msg_us_proxied"] is not None]
    if copied:
        out.append("")
        out.append(
            "Amazon MQ broker CPU us/msg (utime+stime of the stand-in until the copies are "
            "drained): proxied [direct, which sends it nothing]"
        )
        for row in copied:
            out.append(
                f"  {row['scenario']:<6} {_f1(row['amazonmq_cpu_per_msg_us_proxied'])}"
                f"  [{_f1(row['amazonmq_cpu_per_msg_us_direct'])}]"
            )
    if any(r["relay_ratio"] is not None or r["haproxy_ratio"] is not None for r in rows):
        out.append("")
        out.append(
            "floor: bench/relay.py, a Python byte relay (uvloop, Protocols), no STOMP work; "
            "haproxy: HAProxy, TCP mode, one thread."
        )
        out.append(
            "Both pass bytes to legacy as they are; ratio to direct in the same run. CPU: "
            "utime+stime of each middle process per message (direct has none)."
        )
    stamped = [r for r in rows if r["stamped_ratio"] is not None]
    if stamped:
        out.append("")
        out.append(
            "stamped: direct, each SEND with the proxy's trace header (what the header alone "
            "costs the broker). proxied / stamped: "
            + ", ".join(f"{r['scenario']} {_x(r['ratio_to_stamped'])}" for r in stamped)
        )
    if conn:
        out.append("")
        out.append(render_connections(conn))
    notes = []
    for row in rows:
        interesting = {
            k: v
            for k, v in row["facts"].items()
            if k
            in (
                "facts_dropped",
                "message_mirror_failed",
                "message_fell_back",
                "message_rejected",
                "client_protocol_error",
                "broker_unavailable",
            )
        }
        if interesting:
            notes.append(f"  {row['scenario']}: facts {interesting}")
        for err in row["errors"]:
            notes.append(f"  {row['scenario']}: run error {err}")
    for name, info in bench.proxies.items():
        if info.get("stderr_tail"):
            notes.append(f"  {name}: proxy stderr:\n    " + info["stderr_tail"][-1500:])
        if info.get("returncode") not in (0, None):
            notes.append(f"  {name}: proxy exit code {info['returncode']} after SIGTERM")
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out)


def _f3(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _f1(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render_connections(conn: list[dict[str, Any]]) -> str:
    def med(target: str, key: str) -> float | None:
        return _median([r.get(key) for r in conn if r["target"] == target])

    d, p = med("direct", "conn_per_s"), med("proxied", "conn_per_s")
    ratio = f"{p / d:.2f}x" if p and d else "-"
    per_conn = med("proxied", "bytes_per_conn")
    wanted = conn[0]["wanted"]
    lines = [
        f"C: {wanted} connections, heart-beat 10000,10000, one receipted SEND each "
        "(median of runs)",
        f"  connect all: direct {_f3(med('direct', 'connect_s'))} s, "
        f"proxied {_f3(med('proxied', 'connect_s'))} s "
        f"(conn/s ratio {ratio}); per connection p50/p99 ms: direct "
        f"{_f3(med('direct', 'connect_p50_ms'))}/{_f3(med('direct', 'connect_p99_ms'))}, proxied "
        f"{_f3(med('proxied', 'connect_p50_ms'))}/{_f3(med('proxied', 'connect_p99_ms'))}",
        f"  receipts: direct {_f3(med('direct', 'send_s'))} s, proxied "
        f"{_f3(med('proxied', 'send_s'))} s for all {wanted}",
        f"  proxy RSS (fresh proxy per round) idle {_mb(med('proxied', 'rss_idle'))} MB -> "
        f"with {wanted} open "
        f"{_mb(med('proxied', 'rss_open'))} MB -> closed {_mb(med('proxied', 'rss_closed'))} MB"
        f"; per connection {'-' if per_conn is None else f'{per_conn / 1024:.1f} KiB'}",
    ]
    bad = [r for r in conn if r.get("error") or r.get("failures") or r["verify"] != "ok"]
    for r in bad:
        lines.append(
            f"  problem ({r['target']} #{r['repeat']}): error={r.get('error')} "
            f"failures={r.get('failures')} verify={r['verify']}"
        )
    return "\n".join(lines)


def render_profiles(profiles: dict[str, list[tuple[str, float, float]]]) -> str:
    out = []
    for name, top in profiles.items():
        out.append(f"py-spy, proxied {name}: self% / inclusive% of busy samples (all threads)")
        for func, own, incl in top[:15]:
            out.append(f"  {own:5.1f}% {incl:5.1f}%  {func}")
    return "\n".join(out)


# -- main -----------------------------------------------------------------------------


ALL = ["S1", "S2", "S3", "S4", "M", "X", "C"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the strangler proxy against a direct legacy broker connection.",
    )
    parser.add_argument("--repeat", type=int, help="direct/proxied pairs per scenario (3)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, smaller counts")
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated subset of {','.join(ALL)} (default: all; with --soak: none)",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="drain only: skip the exactly-once checks' extra waits (faster)",
    )
    parser.add_argument("--connections", type=int, help=f"for C (default {CONNECTIONS})")
    parser.add_argument(
        "--soak",
        type=int,
        metavar="N",
        help="send N messages on one proxied connection, RSS every 50k",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy record the proxy during proxied runs"
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the relay arm (bench/relay.py, the floor) in legacy-mode scenarios",
    )
    parser.add_argument(
        "--no-stamped",
        action="store_true",
        help="skip the stamped arm (direct, each SEND with the proxy's trace header) in "
        "S1, S2 and S4",
    )
    parser.add_argument(
        "--no-haproxy",
        action="store_true",
        help="skip the HAProxy arm (S1-S4, M-S2); it needs Debian's haproxy: "
        "apt-get install -y haproxy",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the proxy work dirs (facts)")
    parser.add_argument(
        "--proxy-cmd",
        metavar="CMD",
        help="run this instead of .venv/bin/strangler (same `run --routes ...` arguments), "
        "e.g. to measure an experimental build",
    )
    parser.add_argument("--json", type=Path, help="results file (default bench/results/TS.json)")
    args = parser.parse_args(argv)

    if args.scenarios:
        names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    else:
        names = [] if args.soak else ALL
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {ALL}")
    repeat = args.repeat or (1 if args.quick else 3)
    if args.proxy_cmd:
        global _PROXY_CMD
        _PROXY_CMD = shlex.split(args.proxy_cmd)
    conns = args.connections or (QUICK_CONNECTIONS if args.quick else CONNECTIONS)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log = _logger()
    t0 = time.monotonic()
    log(f"bench: starting brokers (scripts/brokers.sh start); loop={loop_name()}")
    brokers = ensure_brokers()
    for line in store_warnings(brokers_state_dir()):
        log(line)
    workdir = Path(tempfile.mkdtemp(prefix="strangler-bench-"))
    profile_dir = None
    if args.profile:
        profile_dir = RESULTS / f"profile-{stamp}"
        profile_dir.mkdir(parents=True, exist_ok=True)
    haproxy = None if args.no_haproxy else haproxy_binary()
    if haproxy is None and not args.no_haproxy:
        log("bench: no haproxy on PATH, so no HAProxy arm (apt-get install -y haproxy)")
    bench = Bench(
        brokers,
        workdir,
        repeat,
        args.timeout,
        profile_dir,
        log,
        not args.no_floor,
        haproxy,
        stamped=not args.no_stamped,
    )
    chosen = scenarios(names, args.quick, not args.no_verify)
    soak: dict[str, Any] | None = None
    cpu0 = cpu_self()

    async def go() -> None:
        nonlocal soak
        for sc in chosen:
            log(f"{sc.name}: {sc.shape} via a {sc.mode} route")
            try:
                await bench.check_brokers(sc.mode)
                await bench.scenario(sc)
            except BrokerDown as exc:
                log(f"{sc.name}: STOPPED: {exc}")
                bench.proxies.setdefault(sc.name, {})["failure"] = str(exc)
                return
            except Exception as exc:  # report and go on with the next scenario
                log(f"{sc.name}: FAILED: {type(exc).__name__}: {exc}")
                bench.proxies.setdefault(sc.name, {})["failure"] = f"{type(exc).__name__}: {exc}"
        if "C" in names:
            log(f"C: {conns} connections")
            try:
                await bench.check_brokers("legacy")
                await bench.connections(conns)
            except Exception as exc:
                log(f"C: FAILED: {type(exc).__name__}: {exc}")
                bench.proxies.setdefault("C", {})["failure"] = f"{type(exc).__name__}: {exc}"
        if args.soak:
            log(f"soak: {args.soak:,} messages on one connection")
            await bench.check_brokers("legacy")
            soak = await bench.soak(args.soak)

    try:
        run(go())
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - t0

    order = [sc.name for sc in chosen]
    rows = summarize(bench, order)
    print()
    print(
        f"strangler bench {stamp}: repeat={repeat}{' quick' if args.quick else ''}, "
        f"loop={loop_name()}, {os.cpu_count()} CPUs, {elapsed:.0f}s"
    )
    if rows or bench.conn_runs:
        print(render(rows, bench.conn_runs, bench))
    if bench.profiles:
        print()
        print(render_profiles(bench.profiles))
    if soak is not None:
        print()
        print(render_soak(soak))
    for name, info in bench.proxies.items():
        if info.get("failure"):
            print(f"{name}: FAILED: {info['failure']}")

    results = {
        "timestamp": stamp,
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "repeat": repeat,
        "quick": args.quick,
        "elapsed_s": elapsed,
        "runner_cpu_s": cpu_self() - cpu0,
        "environment": _environment(haproxy),
        "brokers": {"legacy": str(brokers.legacy), "amazonmq": str(brokers.amazonmq)},
        "summary": rows,
        "runs": [asdict(r) for r in bench.runs],
        "connections": bench.conn_runs,
        "proxies": bench.proxies,
        "profiles": bench.profiles,
        "soak": soak,
    }
    path = args.json or RESULTS / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    failed = any(info.get("failure") for info in bench.proxies.values())
    return 1 if failed else 0


def render_soak(soak: dict[str, Any]) -> str:
    lines = [f"soak: {soak['messages']:,} messages, one connection, legacy route"]
    for s in soak["samples"]:
        lines.append(
            f"  {s['messages']:>10,}  RSS {_mb(s['rss']):>7} MB  CPU {s['cpu'] or 0:7.2f} s"
        )
    growth = soak["growth_bytes_per_msg"]
    lines.append(
        "  growth after the first 50k: "
        + ("-" if growth is None else f"{growth:.3f} bytes/message")
        + f"; verify: {soak['verify']}"
        + (f"; error: {soak['error']}" if soak["error"] else "")
    )
    if soak.get("facts", {}).get("facts_dropped"):
        lines.append(f"  facts_dropped: {soak['facts']['facts_dropped']}")
    return "\n".join(lines)


def _environment(haproxy: str | None) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "strangler"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loop": loop_name(),
        "commit": commit,
        "strangler_dirty": bool(dirty),
        "loadavg_end": os.getloadavg(),
        "haproxy": _haproxy_version(haproxy),
        "frame_pump": _frame_pump(),
    }


def _haproxy_version(binary: str | None) -> str | None:
    if binary is None:
        return None
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30).stdout
    return out.splitlines()[0] if out else None


def _frame_pump() -> str:
    """Which frame pump build the proxy under test runs (its --version says)."""
    out = subprocess.run(
        [*proxy_command(), "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    return out.strip()


def _logger() -> Callable[[str], None]:
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return log


if __name__ == "__main__":
    sys.exit(main())
