"""Gates as PromQL over the metrics contract, and what Prometheus' answers mean."""

from __future__ import annotations

from typing import Any

import pytest

from strangler.rollout.gates import Verdict, evaluate_one
from strangler.rollout.prometheus import PrometheusError, one_value
from strangler.rollout.queries import gate_queries
from strangler.routes.rollout import Duration, Gate, GateMetric

FIVE_MINUTES = Duration(300, "5m")


def gate(**kwargs: Any) -> Gate:
    defaults: dict[str, Any] = {
        "name": "g",
        "window": FIVE_MINUTES,
        "min_messages": 100.0,
        "max": 0.01,
    }
    return Gate(**(defaults | kwargs))


ROUTED = 'sum(increase(strangler_messages_routed_total{route="pay"}[5m]))'


def test_the_fallback_ratio_is_fallbacks_over_messages_routed_across_the_fleet() -> None:
    queries = gate_queries(gate(metric=GateMetric.FALLBACK_RATIO), "pay")
    assert queries.value == (
        '(sum(increase(strangler_fallbacks_total{route="pay"}[5m])) or vector(0)) / ' + ROUTED
    )
    assert queries.traffic == ROUTED


def test_p99_reads_amazon_mqs_confirmation_histogram_for_the_route() -> None:
    queries = gate_queries(gate(metric=GateMetric.CONFIRM_P99_SECONDS), "pay")
    selector = '{route="pay",broker="amazonmq"}'
    assert queries.value == (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(strangler_confirm_seconds_bucket{selector}[5m])))"
    )
    assert queries.traffic == f"sum(increase(strangler_confirm_seconds_count{selector}[5m]))"


def test_a_gate_may_measure_another_route_and_a_custom_query_gets_route_and_window() -> None:
    mirror = gate_queries(gate(metric=GateMetric.MIRROR_FAILURE_RATIO, route="orders"), "pay")
    assert 'strangler_mirror_failures_total{route="orders"}[5m]' in mirror.value
    custom = gate_queries(gate(query='max(depth{queue="$route"}[$window])'), "pay")
    assert custom.value == 'max(depth{queue="pay"}[5m])' and custom.traffic == ROUTED


def answers(value: float | None, messages: float | None) -> Any:
    queries = gate_queries(gate(metric=GateMetric.REJECT_RATIO), "pay")
    return {queries.value: value, queries.traffic: messages}.get


@pytest.mark.parametrize(
    ("value", "messages", "verdict"),
    [
        (0.0, 100.0, Verdict.PASS),
        (0.01, 100.0, Verdict.PASS),  # at the threshold: not above it
        (0.02, 100.0, Verdict.BREACH),
        (0.9, 99.0, Verdict.NO_DATA),  # bad, but too few messages to say so
        (None, 500.0, Verdict.NO_DATA),
        (0.0, None, Verdict.NO_DATA),  # no series at all
    ],
)
def test_verdicts(value: float | None, messages: float | None, verdict: Verdict) -> None:
    result = evaluate_one(gate(metric=GateMetric.REJECT_RATIO), "pay", answers(value, messages))
    assert result.verdict is verdict


def test_a_min_gate_breaches_below_its_floor() -> None:
    floor = gate(metric=GateMetric.REJECT_RATIO, max=None, min=0.5)
    queries = gate_queries(floor, "pay")
    low = {queries.value: 0.4, queries.traffic: 1000.0}.get
    assert evaluate_one(floor, "pay", low).verdict is Verdict.BREACH


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {}, "value": [1700000000.0, v]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_one_value_reads_vectors_and_scalars() -> None:
    assert one_value(vector("0.25"), "q") == 0.25
    assert one_value(vector(), "q") is None
    assert one_value(vector("NaN"), "q") is None
    assert one_value(vector("+Inf"), "q") is None
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}
    assert one_value(scalar, "q") == 3.0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (vector("1", "2"), "returned 2 series; a gate needs one number"),
        ({"status": "error", "error": "bad"}, "without success"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "a matrix"),
        (vector("high"), "not a number"),
    ],
)
def test_answers_that_are_not_one_number_are_errors(answer: Any, reason: str) -> None:
    with pytest.raises(PrometheusError, match=reason):
        one_value(answer, "q")


def test_reasons_say_why_a_gate_counts() -> None:
    ratio = gate(name="fallback_ratio", metric=GateMetric.FALLBACK_RATIO, max=0.02)
    queries = gate_queries(ratio, "pay")

    def reason(value: float | None, messages: float) -> str:
        answers = {queries.value: value, queries.traffic: messages}
        return evaluate_one(ratio, "pay", answers.get).summary()

    assert reason(0.098, 512) == "fallback_ratio 0.098 above max 0.02 (512 messages over 5m)"
    assert reason(0.01, 512) == "fallback_ratio 0.01 within max 0.02 (512 messages over 5m)"
    assert reason(0.5, 12) == "fallback_ratio: not enough data (12 of 100 messages over 5m)"
    assert reason(None, 512) == "fallback_ratio: no value (512 messages over 5m)"
