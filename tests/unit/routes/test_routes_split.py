"""Split routing: stable buckets, the configured share, sticky keys, edge weights."""

from __future__ import annotations

import random
import subprocess
import sys
from textwrap import dedent

import pytest

from strangler.routes import (
    Mode,
    OnFailure,
    RouteTable,
    decide,
    decide_send,
    parse_routes,
    split_bucket,
)

BROKERS = dedent("""\
    brokers:
      legacy:
        url: stomp://127.0.0.1:61611
      amazonmq:
        url: stomp+ssl://127.0.0.1:61614
    """)


def split_table(weight: float, sticky: bool = False) -> RouteTable:
    sticky_line = "    sticky_header: JMSXGroupID\n" if sticky else ""
    text = (
        BROKERS
        + "routes:\n  - name: s\n    match: {prefix: /queue/}\n    mode: split\n"
        + f"    weight: {weight}\n    on_failure: legacy\n"
        + sticky_line
    )
    return parse_routes(text, "routes.yaml")


def random_keys(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128):032x}" for _ in range(count)]


# Pinned once: if these change, every deployed sticky key moves to the other broker.
KNOWN_BUCKETS = [
    ("", 98.76),
    ("a", 33.43),
    ("hello", 17.41),
    ("JMSXGroupID-42", 36.57),
    ("3f2b8c1e-9d4a-4e7b-8f00-0123456789ab", 61.65),
    ("ünïcødé", 47.29),
]


@pytest.mark.parametrize(("key", "bucket"), KNOWN_BUCKETS)
def test_split_bucket_matches_pinned_vectors(key: str, bucket: float) -> None:
    assert split_bucket(key) == bucket


def test_split_bucket_is_the_same_in_a_fresh_process_with_another_hash_seed() -> None:
    # Guards against anyone "simplifying" to hash(): PYTHONHASHSEED differs per process.
    code = "from strangler.routes import split_bucket; print(split_bucket('hello'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert float(out.stdout) == split_bucket("hello")


def test_split_bucket_is_in_range_with_hundredth_percent_resolution() -> None:
    for key in random_keys(2_000, seed=1):
        bucket = split_bucket(key)
        assert 0.0 <= bucket < 100.0
        assert round(bucket * 100) == pytest.approx(bucket * 100, abs=1e-6)


def test_split_bucket_accepts_lone_surrogates_without_raising() -> None:
    assert 0.0 <= split_bucket("bad\udcff") < 100.0


@pytest.mark.parametrize("weight", [10, 50, 90])
def test_split_share_matches_weight_within_tolerance_over_20k_keys(weight: int) -> None:
    table = split_table(weight)
    keys = random_keys(20_000, seed=weight)
    to_amazonmq = sum(decide(table, "/queue/p", None, k).targets == ("amazonmq",) for k in keys)
    share = 100 * to_amazonmq / len(keys)
    # Binomial sd at 50% over 20k is 0.35 points; 1.5 points is > 4 sd.
    assert share == pytest.approx(weight, abs=1.5)


def test_split_goes_to_amazonmq_exactly_when_bucket_is_below_weight() -> None:
    table = split_table(33.43)  # == split_bucket("a")
    assert decide(table, "/queue/p", None, "a").targets == ("legacy",)  # 33.43 < 33.43 is False
    assert decide(table, "/queue/p", None, "hello").targets == ("amazonmq",)  # 17.41


def test_split_decisions_carry_side_specific_fields() -> None:
    table = split_table(50)
    to_amazonmq = decide(table, "/queue/p", None, "hello")  # 17.41
    to_legacy = decide(table, "/queue/p", None, "")  # 98.76
    assert (to_amazonmq.mode, to_legacy.mode) == (Mode.SPLIT, Mode.SPLIT)
    assert (to_amazonmq.primary, to_amazonmq.amazonmq_destination) == ("amazonmq", "/queue/p")
    assert (to_legacy.primary, to_legacy.amazonmq_destination) == ("legacy", None)
    assert to_amazonmq.on_failure is to_legacy.on_failure is OnFailure.LEGACY


def test_weight_zero_never_sends_to_amazonmq() -> None:
    table = split_table(0)
    assert all(
        decide(table, "/queue/p", None, k).targets == ("legacy",) for k in random_keys(2_000, 2)
    )
    assert decide(table, "/queue/p", None, "").targets == ("legacy",)


def test_weight_100_always_sends_to_amazonmq() -> None:
    table = split_table(100)
    assert all(
        decide(table, "/queue/p", None, k).targets == ("amazonmq",) for k in random_keys(2_000, 3)
    )
    assert decide(table, "/queue/p", None, "").targets == ("amazonmq",)  # bucket 98.76


def test_fractional_weight_is_honoured() -> None:
    table = split_table(0.5)
    keys = random_keys(20_000, seed=4)
    hits = sum(decide(table, "/queue/x", None, k).primary == "amazonmq" for k in keys)
    assert 100 * hits / len(keys) == pytest.approx(0.5, abs=0.2)


def test_sticky_value_overrides_message_key() -> None:
    table = split_table(50, sticky=True)
    # "hello" -> 17.41 (amazonmq), "" -> 98.76 (legacy): the sticky value decides.
    for message_key in random_keys(200, seed=5):
        assert decide(table, "/queue/p", "hello", message_key).targets == ("amazonmq",)
        assert decide(table, "/queue/p", "", message_key).targets == ("legacy",)


def test_same_sticky_value_lands_on_same_broker_across_destinations_and_tables() -> None:
    first, second = split_table(50, sticky=True), split_table(50, sticky=True)
    for group in random_keys(300, seed=6):
        expected = decide(first, "/queue/a", group, "m1").targets
        assert decide(first, "/queue/b", group, "m2").targets == expected
        assert decide(second, "/queue/a", group, "m3").targets == expected


def test_message_key_decides_when_there_is_no_sticky_value() -> None:
    table = split_table(50, sticky=True)
    assert decide(table, "/queue/p", None, "hello").targets == ("amazonmq",)
    assert decide(table, "/queue/p", None, "").targets == ("legacy",)


def test_raising_the_weight_only_moves_keys_from_legacy_to_amazonmq() -> None:
    # The point of bucket < weight: ramping 10 -> 50 never moves a sticky group back.
    low, high = split_table(10), split_table(50)
    for key in random_keys(5_000, seed=7):
        if decide(low, "/queue/p", key, "m").targets == ("amazonmq",):
            assert decide(high, "/queue/p", key, "m").targets == ("amazonmq",)


@pytest.mark.parametrize("sticky", [True, False])
def test_decide_send_reads_the_sticky_header_exactly_as_decide_is_given_it(sticky: bool) -> None:
    table = split_table(50, sticky=sticky)
    asked: list[str] = []
    for i, key in enumerate(random_keys(500, seed=7)):
        headers = {"JMSXGroupID": key} if i % 3 else {}

        def header(name: str, headers: dict[str, str] = headers) -> str | None:
            asked.append(name)
            return headers.get(name)

        expected = decide(
            table, "/queue/a", headers.get("JMSXGroupID") if sticky else None, f"t{i}"
        )
        assert decide_send(table, "/queue/a", header, f"t{i}") is expected
    # Headers are read only for a route that splits by one.
    assert set(asked) == ({"JMSXGroupID"} if sticky else set())
