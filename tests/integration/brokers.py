"""Thin Python wrapper around scripts/brokers.sh for integration-test fixtures.

The shell script owns the brokers; this module only runs it and reads the state
files it leaves in ``<state>/<name>/`` (broker.pid, port, kind, ca.pem).
No pytest import, so it can be used from fixtures, benchmarks or a REPL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
SCRIPT = REPO_DIR / "scripts" / "brokers.sh"
HOST = "127.0.0.1"

# Must match scripts/brokers.sh.
CREDENTIALS = {
    "plain": ("producer", "producer-secret"),
    "tls": ("strangler", "amazonmq-secret-1"),
}
# Producers' own logins (scripts/brokers.sh adds them to every broker of that kind).
EXTRA_USERS = {
    "plain": {"producer-a": "producer-a-secret", "producer-b": "producer-b-secret"},
    "tls": {
        "amq-producer-a": "amazonmq-producer-a-secret",
        "amq-producer-b": "amazonmq-producer-b-secret",
    },
}
LEGACY = "legacy"
AMAZONMQ = "amazonmq"

SCRIPT_TIMEOUT = 180.0  # start waits up to 60 s per broker; apt-get install may precede it


@dataclass
class BrokerInfo:
    name: str
    kind: str  # "plain" | "tls"
    host: str
    port: int
    ca_file: str | None
    username: str
    password: str
    pid: int

    @property
    def url(self) -> str:
        scheme = "stomp+ssl" if self.kind == "tls" else "stomp"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def host_and_port(self) -> tuple[str, int]:
        return (self.host, self.port)


def state_dir() -> Path:
    raw = os.environ.get("STRANGLER_BROKERS_DIR")
    return Path(raw).resolve() if raw else REPO_DIR / ".brokers"


def _run(*args: str) -> None:
    """Run the script; its logs go to our stderr. Raise with context on failure."""
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(
            f"scripts/brokers.sh {' '.join(args)} failed with exit code {proc.returncode}:\n"
            f"{proc.stderr}{proc.stdout}"
        )


def _read(path: Path) -> str:
    return path.read_text().strip()


def info(name: str) -> BrokerInfo:
    """Describe broker ``name`` from its state files (it need not be running)."""
    d = state_dir() / name
    kind = _read(d / "kind")
    username, password = CREDENTIALS[kind]
    pid_file = d / "broker.pid"
    ca = d / "ca.pem"
    return BrokerInfo(
        name=name,
        kind=kind,
        host=HOST,
        port=int(_read(d / "port")),
        ca_file=str(ca) if kind == "tls" else None,
        username=username,
        password=password,
        pid=int(_read(pid_file)) if pid_file.exists() else 0,
    )


def ensure_standard() -> tuple[BrokerInfo, BrokerInfo]:
    """Start (or reuse) the shared brokers; return (legacy, amazonmq)."""
    _run("start")
    return info(LEGACY), info(AMAZONMQ)


def start_one(name: str, kind: str, port: int) -> BrokerInfo:
    """Start an extra broker ``name`` ("plain" or "tls") on ``port``; wait until it listens."""
    if kind not in CREDENTIALS:
        raise ValueError(f"kind must be 'plain' or 'tls', not {kind!r}")
    _run("start-one", name, kind, str(port))
    started = info(name)
    wait_login(started)
    return started


def start_pair(prefix: str) -> tuple[BrokerInfo, BrokerInfo]:
    """A legacy (plain) and an Amazon MQ stand-in (TLS) of our own, ``<prefix>-legacy`` and
    ``<prefix>-amq`` on free ports, started side by side (each takes seconds). If either
    fails, both are removed and the first failure is raised."""
    wanted = {LEGACY: (f"{prefix}-legacy", "plain"), AMAZONMQ: (f"{prefix}-amq", "tls")}
    started: dict[str, BrokerInfo] = {}
    failures: list[BaseException] = []

    def start(role: str) -> None:
        name, kind = wanted[role]
        try:
            started[role] = start_one(name, kind, free_port())
        except BaseException as exc:  # raised below, on the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(role,)) for role in wanted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        remove_pair(prefix)
        raise failures[0]
    return started[LEGACY], started[AMAZONMQ]


def remove_pair(prefix: str) -> None:
    """Stop the brokers ``start_pair(prefix)`` started and delete their state."""
    for name in (f"{prefix}-legacy", f"{prefix}-amq"):
        with contextlib.suppress(Exception):
            stop(name)
        shutil.rmtree(state_dir() / name, ignore_errors=True)


def wait_login(broker: BrokerInfo, timeout: float = 60.0) -> None:
    """Wait until ``broker`` answers a STOMP CONNECT with CONNECTED.

    A listening port is not enough: right after start-up ActiveMQ's TLS connector
    accepts connections and closes them at login for a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = _login(broker)
        if answer.startswith(b"CONNECTED"):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"broker {broker.name} answered CONNECT with {answer[:80]!r}")
        time.sleep(0.2)


def _login(broker: BrokerInfo) -> bytes:
    """The first bytes ``broker`` answers a CONNECT with (b"" if it closed or failed)."""
    connect = (
        f"CONNECT\naccept-version:1.2\nhost:{broker.host}\nlogin:{broker.username}\n"
        f"passcode:{broker.password}\n\n\0DISCONNECT\n\n\0"
    ).encode()
    try:
        with socket.create_connection(broker.host_and_port, timeout=5) as raw:
            sock: socket.socket = raw
            if broker.ca_file is not None:
                context = ssl.create_default_context(cafile=broker.ca_file)
                sock = context.wrap_socket(raw, server_hostname=broker.host)
            with sock:
                sock.sendall(connect)
                return sock.recv(64)
    except (OSError, ssl.SSLError):
        return b""


def stop(name: str) -> None:
    """Stop broker ``name`` gracefully (SIGTERM, then SIGKILL). No-op if not running."""
    _run("stop", name)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (PID 1 here may not reap orphans)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def pid_is_broker(pid: int, name: str) -> bool:
    """True if ``pid`` is alive and is the JVM scripts/brokers.sh started for ``name``."""
    if not pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"-Dactivemq.base={state_dir() / name}".encode() in argv


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_closed(port: int, timeout: float = 30.0, host: str = HOST) -> None:
    deadline = time.monotonic() + timeout
    while port_open(port, host):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} still accepting connections after {timeout}s")
        time.sleep(0.05)


def kill(name: str, timeout: float = 30.0) -> None:
    """SIGKILL broker ``name`` (simulated crash); return once it is dead and its port closed."""
    b = info(name)
    if pid_is_broker(b.pid, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(b.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while pid_alive(b.pid):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"broker {name} (pid {b.pid}) survived SIGKILL for {timeout}s")
            time.sleep(0.05)
    (state_dir() / name / "broker.pid").unlink(missing_ok=True)
    wait_port_closed(b.port, timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the usual small race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])
