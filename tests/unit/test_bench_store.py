"""bench.run warns before a run when a broker's message store is half full."""

from __future__ import annotations

from pathlib import Path

from bench.run import STORE_LIMIT, store_warnings


def store(state: Path, name: str, sizes: list[int]) -> None:
    kahadb = state / name / "data" / "kahadb"
    kahadb.mkdir(parents=True)
    for n, size in enumerate(sizes):
        with (kahadb / f"db-{n}.log").open("wb") as f:
            f.truncate(size)  # sparse: the size KahaDB's files report, no disk used


def test_a_store_over_half_its_limit_is_named_with_the_reset(tmp_path: Path) -> None:
    store(tmp_path, "legacy", [32 << 20] * 33)  # 1,056 MiB
    store(tmp_path, "amazonmq", [32 << 20] * 2)
    (lines,) = store_warnings(tmp_path)
    assert "legacy's message store holds 1056 MiB of its 2048 MiB" in lines
    assert f"rm -rf {tmp_path / 'legacy' / 'data'}" in lines


def test_a_store_under_half_or_missing_is_no_warning(tmp_path: Path) -> None:
    store(tmp_path, "legacy", [STORE_LIMIT // 2])
    assert store_warnings(tmp_path) == []
    assert store_warnings(tmp_path / "nothing") == []
