"""Routes reload: bad files are refused, never waited on; the watcher sees only the routes file.

Real files and the real watcher (watchfiles); the facts are read from the sink's listener.
Files are saved as editors and ConfigMaps do (a rename into place), so each save is one
change on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import pytest

from strangler.facts import Fact, FactSink
from strangler.proxy import reloader as reloader_module
from strangler.proxy.context import ProxyContext, ProxySettings, RoutesHolder
from strangler.proxy.reloader import RoutesReloader
from strangler.routes import load_routes
from strangler.routes.loader import MAX_ROUTES_BYTES

WAIT = 10.0


def routes_text(version: int) -> str:
    return (
        "brokers:\n"
        '  legacy: {url: "stomp://127.0.0.1:61611"}\n'
        "routes:\n"
        "  - {name: pinned, match: {exact: /queue/a}, mode: legacy}\n"
        f"# version {version}\n"
    )


def save(path: Path, text: str) -> None:
    """Write beside, then rename into place (what editors and kubelet do)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Facts:
    """Every fact emitted, in order, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def __call__(self, fact: str, fields: Mapping[str, Any]) -> None:
        self.seen.append((str(fact), dict(fields)))
        self._changed.set()

    def named(self, fact: Fact, **match: Any) -> list[dict[str, Any]]:
        return [
            fields
            for name, fields in self.seen
            if name == fact and all(fields.get(k) == v for k, v in match.items())
        ]

    async def wait_for(self, fact: Fact, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """The first ``fact`` whose fields include ``match``; {} when none came in ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (found := self.named(fact, **match)):
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                return {}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return found[0]


class Bed:
    """A routes file in a folder, a proxy context on it, and its reloader."""

    def __init__(self, folder: Path, path: Path) -> None:
        self.folder = folder
        self.path = path
        self.facts = Facts()
        self.sink = FactSink(io.StringIO())
        self.sink.listeners.append(self.facts)
        self.ctx = ProxyContext(ProxySettings(), RoutesHolder(load_routes(path)), self.sink)
        self.reloader = RoutesReloader(self.ctx, path)

    async def until_watching(self, change: Callable[[int], None]) -> None:
        """Make changes (versions 1000, 1001, ...) until the watcher applies one: it watches."""
        for version in range(1000, 1100):
            change(version)
            expected = load_routes(self.path).version
            if await self.facts.wait_for(Fact.ROUTES_APPLIED, 0.5, routes_version=expected):
                return
        raise AssertionError("the watcher never applied a change")


def run(
    main: Callable[[Bed], Coroutine[Any, Any, None]], folder: Path, path: Path | None = None
) -> None:
    """``main(bed)`` on a fresh event loop, with routes version 0 unless ``path`` exists."""
    path = path or folder / "routes.yaml"
    if not path.exists():
        path.write_text(routes_text(0))

    async def session() -> None:
        bed = Bed(folder, path)
        try:
            await asyncio.wait_for(main(bed), 60)
        finally:
            await bed.reloader.stop()
            bed.sink.close()

    asyncio.run(session())


# -- one reload ---------------------------------------------------------------------------


def test_a_reload_of_the_same_content_writes_routes_unchanged(tmp_path: Path) -> None:
    # Before: SIGHUP with an unchanged file wrote nothing at all.
    async def main(bed: Bed) -> None:
        assert await bed.reloader.reload("SIGHUP") is False
        version = bed.ctx.routes.table.version
        assert bed.facts.seen == [
            ("routes_unchanged", {"trigger": "SIGHUP", "routes_version": version})
        ]

    run(main, tmp_path)


def test_a_changed_file_is_applied_and_a_bad_one_rejected(tmp_path: Path) -> None:
    async def main(bed: Bed) -> None:
        save(bed.path, routes_text(1))
        assert await bed.reloader.reload("SIGHUP") is True
        applied = bed.facts.named(Fact.ROUTES_APPLIED)
        assert applied[0]["routes_version"] == bed.ctx.routes.table.version
        save(bed.path, "routes: [\n")
        assert await bed.reloader.reload("SIGHUP") is False
        rejected = bed.facts.named(Fact.ROUTES_REJECTED)[0]
        assert (rejected["file"], rejected["kept_version"]) == (
            str(bed.path),
            applied[0]["routes_version"],
        )

    run(main, tmp_path)


def special_files(folder: Path) -> dict[str, tuple[Callable[[Path], None], str]]:
    def fifo(path: Path) -> None:
        os.mkfifo(path)

    def dev_zero(path: Path) -> None:
        path.symlink_to("/dev/zero")

    def directory(path: Path) -> None:
        path.mkdir()

    def huge(path: Path) -> None:
        with open(path, "wb") as f:
            f.truncate(8 << 30)  # sparse: 8 GiB that cost no disk

    return {
        "fifo": (fifo, "not a regular file (a FIFO)"),
        "dev_zero": (dev_zero, "not a regular file (a character device)"),
        "directory": (directory, "not a regular file (a directory)"),
        "huge": (huge, f"larger than {MAX_ROUTES_BYTES} bytes ({8 << 30} bytes)"),
    }


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "huge"])
def test_a_special_file_in_place_of_routes_is_rejected_and_sighup_keeps_working(
    tmp_path: Path, kind: str
) -> None:
    # Before: a FIFO blocked the reloader forever (every later SIGHUP waited behind it);
    # /dev/zero or a huge file was read until memory ran out.
    make, reason = special_files(tmp_path)[kind]

    async def main(bed: Bed) -> None:
        version = bed.ctx.routes.table.version
        bed.path.unlink()
        make(bed.path)
        assert await asyncio.wait_for(bed.reloader.reload("SIGHUP"), 5) is False
        assert bed.facts.named(Fact.ROUTES_REJECTED) == [
            {
                "trigger": "SIGHUP",
                "file": str(bed.path),
                "line": None,
                "reason": f"cannot read routes file: {reason}",
                "kept_version": version,
            }
        ]
        if bed.path.is_dir():
            bed.path.rmdir()
        save(bed.path, routes_text(2))
        assert await asyncio.wait_for(bed.reloader.reload("SIGHUP"), 5) is True

    run(main, tmp_path)


def test_an_unexpected_exception_in_a_reload_is_a_rejection_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: object) -> None:
        raise RuntimeError("boom")

    async def main(bed: Bed) -> None:
        monkeypatch.setattr(reloader_module, "load_routes", broken)
        assert await bed.reloader.reload("SIGHUP") is False
        assert bed.facts.named(Fact.ROUTES_REJECTED)[0]["reason"] == (
            "unexpected error: RuntimeError: boom"
        )

    run(main, tmp_path)


# -- the watcher --------------------------------------------------------------------------


def test_the_watcher_applies_a_saved_file(tmp_path: Path) -> None:
    async def main(bed: Bed) -> None:
        bed.reloader.start_watching()
        await bed.until_watching(lambda version: save(bed.path, routes_text(version)))
        save(bed.path, routes_text(1))
        applied = await bed.facts.wait_for(
            Fact.ROUTES_APPLIED, routes_version=load_routes(bed.path).version
        )
        assert applied["trigger"] == "file changed"

    run(main, tmp_path)


def test_writes_beside_the_routes_file_never_trigger_a_reload(tmp_path: Path) -> None:
    # Before: the whole folder was watched (recursively): facts or captures written next to
    # routes.yaml reloaded it every ~100 ms, and a bad save was rejected again each time.
    busy = threading.Event()
    enough = threading.Event()
    (tmp_path / "captures").mkdir()

    def write_beside() -> None:
        count = 0
        with open(tmp_path / "facts.jsonl", "a") as facts:
            while not busy.is_set():
                facts.write('{"event": "message_routed"}\n')
                facts.flush()
                (tmp_path / "captures" / f"flow{count % 10}").write_bytes(b"x" * count)
                (tmp_path / "capture.flows").write_bytes(b"y" * count)
                count += 1
                if count == 50:
                    enough.set()
                busy.wait(0.01)  # a steady stream of writes, as a busy proxy makes

    async def main(bed: Bed) -> None:
        bed.reloader.start_watching()
        await bed.until_watching(lambda version: save(bed.path, routes_text(version)))
        writer = threading.Thread(target=write_beside)
        writer.start()
        try:
            save(bed.path, "routes: [\n")
            assert await bed.facts.wait_for(Fact.ROUTES_REJECTED)
            await asyncio.to_thread(enough.wait, WAIT)  # at least half a second of writes
            save(bed.path, routes_text(1))
            version = load_routes(bed.path).version
            assert await bed.facts.wait_for(Fact.ROUTES_APPLIED, routes_version=version)
        finally:
            busy.set()
            writer.join()
        assert len(bed.facts.named(Fact.ROUTES_REJECTED)) == 1
        assert bed.facts.named(Fact.ROUTES_UNCHANGED) == []

    run(main, tmp_path)


def test_a_configmap_symlink_swap_is_applied(tmp_path: Path) -> None:
    # A ConfigMap volume: routes.yaml -> ..data/routes.yaml, ..data -> ..<timestamp>/; an
    # update writes a new timestamped folder and renames a new ..data symlink over the old.
    swaps = iter(range(10_000))

    def swap(text: str) -> None:
        n = next(swaps)
        folder = tmp_path / f"..2024_06_01_12_00_00.{n}"
        folder.mkdir()
        (folder / "routes.yaml").write_text(text)
        (tmp_path / "..data_tmp").symlink_to(folder.name)
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    swap(routes_text(0))
    (tmp_path / "routes.yaml").symlink_to("..data/routes.yaml")

    async def main(bed: Bed) -> None:
        bed.reloader.start_watching()
        await bed.until_watching(lambda version: swap(routes_text(version)))
        swap(routes_text(1))
        applied = await bed.facts.wait_for(
            Fact.ROUTES_APPLIED, routes_version=load_routes(bed.path).version
        )
        assert applied["trigger"] == "file changed"

    run(main, tmp_path)


def test_the_watcher_survives_watchfiles_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchfiles

    real = watchfiles.awatch
    calls = []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise OSError("inotify watch limit reached")
        return real(*args, **kwargs)

    monkeypatch.setattr(watchfiles, "awatch", failing_once)
    monkeypatch.setattr(reloader_module, "_RETRY_FIRST", 0.01)

    async def main(bed: Bed) -> None:
        bed.reloader.start_watching()
        error = await bed.facts.wait_for(Fact.INTERNAL_ERROR)
        assert error == {
            "reason": "OSError: inotify watch limit reached",
            "session": None,
            "where": "routes watcher",
        }
        await bed.until_watching(lambda version: save(bed.path, routes_text(version)))

    run(main, tmp_path)
