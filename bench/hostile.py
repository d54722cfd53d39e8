"""What hostile clients can make the proxy hold, and whether it gives memory back.

``python -m bench.hostile`` starts the two local brokers and a ``strangler run``, then:

1. ``--unauthenticated`` clients each send ``CONNECT`` and ``--mib`` MiB without a NUL
   (before CONNECTED a frame may be at most 64 KiB: each is refused at once);
2. ``--clients`` logged-in clients each send an unfinished SEND of ``--mib`` MiB (the
   proxy-wide budget, ``--max-buffered``, refuses what exceeds it);
3. all close, and the proxy's RSS is read again.

Prints the proxy's RSS at start, at the peak of each phase and after the closes, and
how many clients got an ERROR. A memory measurement, so a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .run import Proxy, ensure_brokers, proc_rss

_CHUNK = 1 << 20


def _rss_mb(pid: int) -> float:
    return (proc_rss(pid) or 0) / 1e6


def _send_unfinished(sock: socket.socket, head: bytes, mib: int) -> bool:
    """Send ``head`` and ``mib`` MiB of body without a NUL; True if the proxy cut us off."""
    try:
        sock.sendall(head)
        for _ in range(mib):
            sock.sendall(b"x" * _CHUNK)
    except OSError:
        return True
    return False


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    try:
        return sock.recv(4096)
    except OSError:
        return b""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unauthenticated", type=int, default=30)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--mib", type=int, default=15)
    args = parser.parse_args(argv)

    brokers = ensure_brokers()
    with tempfile.TemporaryDirectory() as tmp:
        proxy = Proxy(brokers, "legacy", Path(tmp), "hostile")
        proxy.start()
        pid = proxy.pid
        time.sleep(1.0)  # let start-up allocations settle before the baseline reading
        print(f"proxy RSS at start: {_rss_mb(pid):.1f} MB")

        socks = [
            socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(args.unauthenticated)
        ]
        refused = sum(_send_unfinished(s, b"CONNECT\nlogin:x\n\n", args.mib) for s in socks)
        errors = sum(b"ERROR" in _answer(s) for s in socks)
        print(
            f"{args.unauthenticated} unauthenticated clients x {args.mib} MiB: "
            f"RSS {_rss_mb(pid):.1f} MB, {errors} got an ERROR, {refused} were cut off"
        )
        for sock in socks:
            sock.close()

        login = (
            f"CONNECT\naccept-version:1.2\nhost:x\nlogin:{brokers.legacy.login}\n"
            f"passcode:{brokers.legacy.passcode}\n\n\0"
        ).encode()
        socks = []
        for _ in range(args.clients):
            sock = socket.create_connection(("127.0.0.1", proxy.port))
            sock.sendall(login)
            assert _answer(sock).startswith(b"CONNECTED")
            socks.append(sock)
        peak = 0.0
        for sock in socks:
            _send_unfinished(sock, b"SEND\ndestination:/queue/bench.hostile\n\n", args.mib)
            peak = max(peak, _rss_mb(pid))
        errors = 0
        for sock in socks:
            sock.settimeout(0.2)
            with contextlib.suppress(OSError):
                errors += b"ERROR" in sock.recv(4096)
        print(
            f"{args.clients} logged-in clients x {args.mib} MiB unfinished: peak RSS "
            f"{peak:.1f} MB, {errors} refused by the buffer budget"
        )
        for sock in socks:
            sock.close()
        time.sleep(3.0)  # the closes (and the 2 s linger after an ERROR) take effect
        print(f"proxy RSS after every client closed: {_rss_mb(pid):.1f} MB")
        proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
