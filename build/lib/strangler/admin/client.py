"""``strangler status``: the admin port's /status, as a table an operator keeps open."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any


def fetch_status(address: tuple[str, int], timeout: float = 5.0) -> dict[str, Any]:
    host, port = address
    with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=timeout) as response:
        data: dict[str, Any] = json.load(response)
    return data


_COLUMNS = (
    ("legacy", "legacy"),
    ("amazonmq", "amazonmq"),
    ("fell back", "fallbacks"),
    ("rejected", "rejects"),
    ("mirror fail", "mirror_failures"),
    ("in doubt", "in_doubt"),
)


def _pair(route: dict[str, Any], key: str) -> str:
    return f"{route['last_1m'][key]:.0f} / {route['last_5m'][key]:.0f}"


def render(status: dict[str, Any]) -> str:
    lines = [
        f"routes version {status['routes_version']} from {status['source']}"
        + ("  [DRY RUN]" if status.get("dry_run") else ""),
        "brokers: "
        + (
            ", ".join(f"{k} {'up' if v else 'DOWN'}" for k, v in status["brokers_up"].items())
            or "not contacted yet"
        ),
        "",
        f"{'route':20} {'mode':8}"
        + "".join(f" {title:>11}" for title, _ in _COLUMNS)
        + f" {'unresolved':>10}",
        f"{'':20} {'':8}" + f" {'1m / 5m':>11}" * len(_COLUMNS) + f" {'now':>10}",
    ]
    for route in status["routes"]:
        lines.append(
            f"{route['route'][:20]:20} {route['mode']:8}"
            + "".join(f" {_pair(route, key):>11}" for _, key in _COLUMNS)
            + f" {route.get('unresolved', 0):>10.0f}"
        )
    lines += [
        "",
        "legacy, amazonmq: messages that broker confirmed (legacy: or took, for a SEND without",
        "a receipt); a fallback counts on legacy. in doubt: written to Amazon MQ, never",
        "answered (possibly stored there too). unresolved: outcomes still awaited.",
    ]
    return "\n".join(lines)


def print_status(address: tuple[str, int], *, as_json: bool) -> int:
    try:
        status = fetch_status(address)
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"strangler status: cannot reach the admin port {address[0]}:{address[1]}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(status, indent=2) if as_json else render(status))
    return 0
