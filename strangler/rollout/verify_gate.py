"""A verify gate: ``strangler verify`` of a mirrored queue, as a gate of a rollout.

``{verify: /queue/NAME, max: 0, min_messages: N}`` in a plan's gates compares the queue on
legacy and its mirror on Amazon MQ exactly as ``strangler verify --allow-extra`` does
(``strangler.drain.verify``: browse legacy, Amazon MQ, legacy again; nothing consumed),
and writes the same ``verify_finished`` fact with the trace ids.

Verdicts:
- value: the messages legacy holds that Amazon MQ lacks (lost mirror copies); above
  ``max`` (default 0) it is a breach. Messages only on Amazon MQ are normal while legacy's
  consumers run (``--allow-extra``), and a copy held twice is a possible duplicate, which
  ``in_doubt_ratio`` measures: neither breaches this gate.
- not enough data: legacy's queue held fewer than ``min_messages`` messages (only what
  legacy still holds can be compared).
- error (holds the rollout, never a breach nor a pass): the queue is not a mirror's (not
  dry-run) in the file as it is now, a login is missing, or a broker cannot be reached or
  browsed. An unreachable broker is not evidence that a copy was lost, and a step must
  not be taken without the comparison the plan asked for; an Amazon MQ outage that loses
  copies shows in ``mirror_failure_ratio`` and ``fallback_ratio``, which breach.

The connections, logins and discovery are ``strangler verify``'s: legacy's login from
``--legacy-login``/``STRANGLER_LEGACY_LOGIN`` and ``STRANGLER_LEGACY_PASSCODE`` or
``--legacy-passcode-file``, else routes.yaml's; Amazon MQ's from routes.yaml.
"""

from __future__ import annotations

from ..drain.backlog import Backlog, browse
from ..drain.brokers import TargetError, legacy_login, resolve_target, routes_login
from ..drain.verify import verify
from ..facts import FactSink
from ..routes import AMAZONMQ, LEGACY, RouteTable
from ..routes.rollout import Gate
from ..upstream.client import PublishError, open_broker
from .gates import GateResult, Verdict


class MirrorVerifier:
    """Runs verify gates (a ``gates.Verifier``); ``verify_finished`` goes to ``facts``."""

    def __init__(
        self,
        facts: FactSink,
        *,
        legacy_login: str | None = None,
        legacy_passcode_file: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.facts = facts
        self.login = legacy_login
        self.passcode_file = legacy_passcode_file
        self.timeout = timeout

    def __call__(self, gate: Gate, table: RouteTable) -> GateResult:
        queue = gate.verify
        if queue is None:
            raise ValueError(f"gate {gate.name} is not a verify gate")
        try:
            target = resolve_target(table, queue, "verify")
            logins = {
                LEGACY: legacy_login(table, self.login, self.passcode_file),
                AMAZONMQ: routes_login(table, AMAZONMQ),
            }
        except TargetError as exc:
            return GateResult(gate, queue, Verdict.ERROR, error=str(exc))

        def read(broker: str, destination: str) -> Backlog:
            connection = open_broker(table, broker, logins[broker], self.timeout)
            try:
                return browse(connection, destination, target.trace_header, self.timeout)
            finally:
                connection.close()

        try:
            result = verify(target, read, self.facts, allow_extra=True)
        except PublishError as exc:
            return GateResult(gate, queue, Verdict.ERROR, error=str(exc))
        missing = float(len(result.comparison.missing))
        messages = float(result.legacy.count)
        if messages < gate.min_messages:
            return GateResult(gate, queue, Verdict.NO_DATA, missing, messages)
        verdict = Verdict.BREACH if gate.breached_by(missing) else Verdict.PASS
        return GateResult(gate, queue, verdict, missing, messages)
