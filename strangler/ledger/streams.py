"""Reading fact streams: files (plain or gzip, rotated sets) and standard input.

A *replica* is one proxy's stream of facts; an *instance* is one run of it (a replica
restarted by its supervisor starts a new instance, whose session ids begin at ``s1``
again). Facts are handed on with the instance they belong to, in the order the replica
wrote them.

Invariants:
- Rotated files of one replica (``facts.jsonl``, ``facts.jsonl.1``, ``facts.jsonl.2.gz``,
  ``facts.jsonl-20250101.gz``) are one stream, read oldest first (by the time of their
  first fact), whatever order they were named in; a file named twice is read once.
  Different replicas are independent: their order does not matter.
- A new instance begins at ``routes_loaded`` or ``proxy_started`` (``strangler run``
  writes both at start-up, in that order; they begin one instance, not two).
- ``kubectl logs --prefix`` lines (``[pod/NAME/CONTAINER] {...}``) name their replica,
  so one standard input can carry a whole fleet.
- Input that cannot be trusted stops the read with ``InputError`` naming file and line:
  a line that starts like JSON and is not a JSON object with an ``event``. Two kinds of
  line are skipped and counted instead: plain text (what a log collector mixes in, such
  as the proxy's own ``strangler: listening on ...`` on stderr), and a file's last line
  cut short without its newline (a proxy killed while writing it).
- Nothing is kept per line: memory does not grow with the input.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final, Protocol, TextIO, cast

import orjson

STDIN: Final = "-"
_GZIP_MAGIC: Final = b"\x1f\x8b"
# facts.jsonl.1, facts.jsonl.2.gz, facts.jsonl-20250101, facts.jsonl-20250101-1700000000.gz
_ROTATED: Final = re.compile(r"(?:\.\d{1,6}|[-.]\d{8}(?:[-.]?\d{2,10})?)?(?:\.gz)?$")
_NEW_INSTANCE: Final = frozenset({"routes_loaded", "proxy_started"})
_PROGRESS_EVERY: Final = 2.0  # seconds between progress lines (0.5 on a terminal)


class InputError(Exception):
    """Input that cannot be read as facts; the message names the file and line."""


@dataclass(slots=True)
class InputStats:
    files: list[str] = field(default_factory=list)
    replicas: int = 0
    instances: int = 0
    lines: int = 0
    facts: int = 0
    bytes: int = 0
    text_lines: int = 0  # plain text between the facts (skipped)
    first_text_line: str | None = None  # "file:line" of the first one
    cut_lines: list[str] = field(default_factory=list)  # "file:line" of cut last lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "replicas": self.replicas,
            "instances": self.instances,
            "lines": self.lines,
            "facts": self.facts,
            "bytes": self.bytes,
            "text_lines_skipped": self.text_lines,
            "first_text_line": self.first_text_line,
            "cut_lines": self.cut_lines,
        }


def replica_name(path: str) -> str:
    """The stream a file belongs to: its path without a rotation suffix."""
    folder, base = os.path.split(path)
    stripped = _ROTATED.sub("", base) or base
    return os.path.join(folder, stripped)


class Position:
    """Where the reader is: the file and line of the fact being handled."""

    __slots__ = ("file", "line")

    def __init__(self) -> None:
        self.file = ""
        self.line = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


OnFact = Callable[[dict[str, Any], str], None]  # (fact, instance)


class FactConsumer(Protocol):
    """What ``FactReader.read`` hands facts to: ``enter`` before the facts of another
    instance, then each fact to ``handlers[event]`` (one call a fact, no dispatch layer
    between), or to ``other`` when no handler takes its event."""

    @property
    def handlers(self) -> Mapping[str, Callable[[dict[str, Any]], None]]: ...

    def enter(self, instance: str, fact: dict[str, Any]) -> None: ...

    def other(self, fact: dict[str, Any]) -> None: ...


class EachFact:
    """A ``FactConsumer`` calling ``on_fact(fact, instance)`` for every fact."""

    def __init__(self, on_fact: OnFact) -> None:
        self._on_fact = on_fact
        self._instance = ""
        self.handlers: Mapping[str, Callable[[dict[str, Any]], None]] = {}

    def enter(self, instance: str, fact: dict[str, Any]) -> None:
        self._instance = instance

    def other(self, fact: dict[str, Any]) -> None:
        self._on_fact(fact, self._instance)


class FactReader:
    """Reads ``paths`` (``-`` for standard input) into a ``FactConsumer``."""

    def __init__(
        self,
        paths: Iterable[str],
        *,
        stdin: IO[bytes] | None = None,
        progress: TextIO | None = None,
    ) -> None:
        self.paths = list(paths)
        self._stdin = stdin
        self.position = Position()
        self.stats = InputStats()
        self._epochs: dict[str, int] = {}  # replica -> instances begun
        self._fresh: dict[str, bool] = {}  # replica -> nothing but start-up facts yet
        self._progress = _Progress(progress) if progress else None

    def read(self, consumer: FactConsumer) -> None:
        streams = self._streams()
        if self._progress is not None:
            self._progress.files = sum(len(files) for _, files in streams)
        for replica, files in streams:
            for path in files:
                self.stats.files.append(path)
                self._read_file(path, replica, consumer)
        self.stats.replicas = len(self._epochs)
        self.stats.instances = sum(max(1, n) for n in self._epochs.values())
        if self._progress is not None:
            self._progress.finish(self.stats)

    # -- which files, in which order -------------------------------------------------------

    def _streams(self) -> list[tuple[str, list[str]]]:
        groups: dict[str, list[str]] = {}
        seen: set[str] = set()
        for path in self.paths:
            if path == STDIN:
                groups.setdefault(STDIN, []).append(STDIN)
                continue
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            groups.setdefault(replica_name(path), []).append(path)
        ordered = []
        for replica, files in groups.items():
            if replica != STDIN and len(files) > 1:
                files.sort(key=_first_stamp)
            ordered.append((replica, files))
        return ordered

    # -- one file ---------------------------------------------------------------------------

    def _read_file(self, path: str, replica: str, consumer: FactConsumer) -> None:
        position = self.position
        position.file = path if path != STDIN else "<stdin>"
        position.line = 0
        try:
            stream = self._open(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
        stats = self.stats
        progress = self._progress
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        new_instance = _NEW_INSTANCE
        instance: str | None = None  # the replica's current instance, once a fact is seen
        fresh = False  # the instance has seen start-up facts only
        number = facts = 0
        already = stats.facts
        handlers, other = consumer.handlers, consumer.other
        try:
            with stream:
                for line in stream:  # the hot loop: one orjson call and one handler a fact
                    number += 1
                    if line[0] != 0x7B:  # not "{"
                        facts += self._odd_line(line, number, consumer)
                        continue
                    try:
                        fact = loads(line)
                        event = fact["event"]
                    except decode_error as exc:
                        self._unparsable(line, number, exc)
                        continue
                    except (KeyError, TypeError, IndexError):
                        raise InputError(
                            f'{position.file}:{number}: not a fact (no "event")'
                        ) from None
                    facts += 1
                    position.line = number
                    if fresh or instance is None or event in new_instance:
                        entered = self._instance(replica, event)
                        fresh = self._fresh[replica]
                        if entered != instance:
                            instance = entered
                            consumer.enter(instance, fact)
                    handler = handlers.get(event)
                    try:
                        if handler is None:
                            other(fact)
                        else:
                            handler(fact)
                    except (KeyError, TypeError, IndexError) as exc:
                        raise self._malformed(fact, exc) from None
                    if progress is not None and not number & 0x3FFF:
                        stats.facts = already + facts
                        progress.show(stats)
                with contextlib.suppress(OSError, ValueError):  # a pipe cannot tell
                    stats.bytes += stream.tell()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"{position.file}:{number + 1}: cannot read: {exc}") from None
        finally:
            stats.lines += number
            stats.facts = already + facts

    def _malformed(self, fact: dict[str, Any], exc: Exception) -> InputError:
        return InputError(
            f"{self.position}: {fact.get('event')} without a usable {exc} field "
            "(not a fact as the proxy writes it)"
        )

    def _odd_line(self, line: bytes, number: int, consumer: FactConsumer) -> int:
        """A line that does not start with "{": a kubectl-prefixed fact (1), or text (0)."""
        stats = self.stats
        if line[:1] == b"[" and b"] {" in line[:300]:  # kubectl logs --prefix
            prefix, _, rest = line.partition(b"] ")
            try:
                fact = orjson.loads(rest)
            except orjson.JSONDecodeError as exc:
                self._unparsable(rest, number, exc)
                return 0
            if type(fact) is not dict or "event" not in fact:
                raise InputError(f'{self.position.file}:{number}: not a fact (no "event")')
            self.position.line = number
            name = prefix[1:].decode("utf-8", "replace")
            consumer.enter(self._instance(name, fact["event"]), fact)
            handler = consumer.handlers.get(fact["event"])
            try:
                if handler is None:
                    consumer.other(fact)
                else:
                    handler(fact)
            except (KeyError, TypeError, IndexError) as exc:
                raise self._malformed(fact, exc) from None
            return 1
        if line.strip():
            stats.text_lines += 1
            if stats.first_text_line is None:
                stats.first_text_line = f"{self.position.file}:{number}"
        return 0

    def _unparsable(self, line: bytes, number: int, exc: Exception) -> None:
        if not line.endswith(b"\n"):  # the last line, cut short by a crash: noted
            self.stats.cut_lines.append(f"{self.position.file}:{number}")
            return
        raise InputError(f"{self.position.file}:{number}: not a JSON line ({exc})") from None

    def _instance(self, replica: str, event: str) -> str:
        """The instance of ``replica`` a fact belongs to (a start-up fact may begin one)."""
        epochs, fresh = self._epochs, self._fresh
        if replica not in epochs:
            epochs[replica], fresh[replica] = 0, False
        if event in _NEW_INSTANCE:
            if not fresh[replica]:
                epochs[replica] += 1
                fresh[replica] = True
        else:
            fresh[replica] = False
        return f"{replica}#{epochs[replica]}"

    def _open(self, path: str) -> IO[bytes]:
        if path == STDIN:
            raw: IO[bytes] = self._stdin if self._stdin is not None else sys.stdin.buffer
            if not hasattr(raw, "peek"):  # a pipe's buffer peeks; give anything else one
                raw = cast(IO[bytes], io.BufferedReader(cast(Any, raw)))
            head = cast(io.BufferedReader, raw).peek(2)[:2]
            if head == _GZIP_MAGIC:
                return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
            return raw
        with open(path, "rb") as probe:
            head = probe.read(2)
        if head == _GZIP_MAGIC:
            return cast(IO[bytes], gzip.open(path, "rb"))
        return open(path, "rb", buffering=1 << 20)


def _first_stamp(path: str) -> str:
    """The ``ts`` of a file's first fact ('' when it has none): rotated files sort by it."""
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == _GZIP_MAGIC
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            for line in itertools.islice(f, 50):
                start = line.find(b"{")
                if start < 0:
                    continue
                try:
                    fact = orjson.loads(line[start:])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(fact, dict) and isinstance(fact.get("ts"), str):
                    return str(fact["ts"])
    except (OSError, EOFError, gzip.BadGzipFile):
        pass  # reported when the file is read
    return ""


class _Progress:
    """A progress line on stderr for long inputs: shown once reading takes over a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.files = 0  # how many will be read (set once they are known)
        self.started = time.monotonic()
        self.last = self.started
        self.every = 0.5 if self.tty else _PROGRESS_EVERY
        self.shown = False

    def show(self, stats: InputStats, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and (now - self.last < self.every or now - self.started < 1.0):
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        text = (
            f"audit: {stats.facts:,} facts, {stats.facts / elapsed:,.0f} facts/s, "
            f"{stats.bytes / elapsed / 1e6:.1f} MB/s; reading {stats.files[-1]} "
            f"(file {len(stats.files)} of {self.files})"
        )
        self.stream.write(f"\r{text}\033[K" if self.tty else text + "\n")
        self.stream.flush()
        self.shown = True

    def finish(self, stats: InputStats) -> None:
        if self.shown:
            self.show(stats, final=True)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
