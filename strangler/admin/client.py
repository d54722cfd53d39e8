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
        f"{'route':24} {'mode':8} {'legacy 1m':>10} {'amazonmq 1m':>12} {'legacy 5m':>10}"
        f" {'amazonmq 5m':>12} {'mirror fail':>11} {'fallbacks':>9} {'rejects':>7}",
    ]
    for route in status["routes"]:
        m1, m5, total = route["last_1m"], route["last_5m"], route["total"]
        lines.append(
            f"{route['route'][:24]:24} {route['mode']:8} {m1['legacy']:>10.0f}"
            f" {m1['amazonmq']:>12.0f} {m5['legacy']:>10.0f} {m5['amazonmq']:>12.0f}"
            f" {total['mirror_failures']:>11.0f} {total['fallbacks']:>9.0f}"
            f" {total['rejects']:>7.0f}"
        )
        if route.get("rollout"):
            lines.append(f"  {describe_rollout(route['rollout'])}")
    return "\n".join(lines)


def describe_rollout(rollout: dict[str, Any]) -> str:
    """``rollout: step 2/5 at 5% (rolling), next 25% at 2025-...Z, gates permitting; last
    gates: fallback_ratio=0.0012``"""
    text = (
        f"rollout: step {rollout['step']}/{rollout['steps_total']} at {rollout['weight']:g}%"
        f" ({rollout['phase']})"
    )
    if rollout["next_weight"] is not None:
        at = rollout["next_step_at"] or "the controller's next pass"
        text += f", next {rollout['next_weight']:g}% at {at}, gates permitting"
    gates = rollout["last_gates"]
    if gates:
        values = ", ".join(f"{k}={'-' if v is None else f'{v:.4g}'}" for k, v in gates.items())
        text += f"; last gates: {values}"
    return text


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
