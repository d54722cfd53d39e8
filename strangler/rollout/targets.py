"""Where a rollout step is written: the routes file itself, or a git working copy.

Both are compare-and-swap: ``write(before, after, message)`` raises ``Conflict`` when the
file is no longer ``before`` (someone else changed it since the controller read it), and
the controller decides again on the new content. Nothing is ever forced.

Invariants:
- ``FileTarget`` replaces the file atomically (a temporary file in the same folder, then
  a rename), so a proxy's reloader reads the old file or the new one, never half of one.
- ``GitTarget`` owns its working copy. Each pass starts from the remote branch's head
  (fetch, fast-forward only); a step is one commit of the routes file alone, pushed
  without ``--force``. A rejected push drops that commit, resets to the new remote head
  and raises ``Conflict``; any other failure drops it too and raises ``TargetError``.
  The working copy never keeps a commit the remote does not have.
- The working copy is refused (``TargetError``) when the routes file has uncommitted
  changes or the branch has commits the remote lacks: those are a person's, not ours.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Protocol

DEFAULT_AUTHOR = ("strangler rollout", "strangler-rollout@localhost")


class Conflict(Exception):
    """The routes file changed since it was read; decide again on what it is now."""


class TargetError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class Target(Protocol):
    path: Path

    def describe(self) -> str: ...

    def prepare(self) -> None:
        """Bring the file up to date before a pass (git: the remote's head)."""

    def read(self) -> bytes: ...

    def write(self, before: bytes, after: bytes, message: str) -> str | None:
        """Replace ``before`` by ``after``; the commit id for git, None for a file."""


class FileTarget:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        # A symlink's target is replaced, not the link (a ConfigMap mount is read-only
        # anyway: use git there).
        self.path = Path(os.path.realpath(path))

    def describe(self) -> str:
        return f"file {self.path}"

    def prepare(self) -> None:
        pass

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise TargetError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def write(self, before: bytes, after: bytes, message: str) -> str | None:
        if self.read() != before:
            raise Conflict()
        folder = self.path.parent
        try:
            fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(after)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(temporary, self.path.stat().st_mode & 0o7777)
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise TargetError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return None


class GitTarget:
    def __init__(
        self,
        path: str | os.PathLike[str],
        remote: str = "origin",
        branch: str | None = None,
        author: tuple[str, str] = DEFAULT_AUTHOR,
    ) -> None:
        self.path = Path(os.path.abspath(path))
        folder = self.path.parent
        top = self._git("rev-parse", "--show-toplevel", cwd=folder).strip()
        self.top = Path(top)
        self.relative = os.path.relpath(os.path.realpath(self.path), os.path.realpath(top))
        self.remote = remote
        if branch is None:
            branch = self._git("symbolic-ref", "--quiet", "--short", "HEAD").strip()
        self.branch = branch
        self.author = author

    def describe(self) -> str:
        return f"git {self.remote}/{self.branch}:{self.relative}"

    def prepare(self) -> None:
        self._fetch()
        if self._git("status", "--porcelain", "--", self.relative).strip():
            raise TargetError(
                f"{self.relative} has uncommitted changes in {self.top}; "
                "the controller's working copy must hold only what the remote has"
            )
        ahead = self._git("rev-list", "FETCH_HEAD..HEAD").split()
        if ahead:
            raise TargetError(
                f"{self.top} has {len(ahead)} commit(s) {self.remote}/{self.branch} lacks; "
                "the controller pushes only its own steps"
            )
        self._git("merge", "--ff-only", "--quiet", "FETCH_HEAD")

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise TargetError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def write(self, before: bytes, after: bytes, message: str) -> str | None:
        if self.read() != before:
            raise Conflict()
        base = self._git("rev-parse", "HEAD").strip()
        self.path.write_bytes(after)
        try:
            self._git("add", "--", self.relative)
            self._commit(message)
        except TargetError:
            self._git("reset", "--quiet", "--hard", base)
            raise
        commit = self._git("rev-parse", "HEAD").strip()
        pushed = self._run("push", "--quiet", self.remote, f"HEAD:refs/heads/{self.branch}")
        if pushed.returncode == 0:
            return commit
        # Our commit never stays behind: the next pass starts from the remote's head.
        try:
            self._fetch()
            head = self._git("rev-parse", "FETCH_HEAD").strip()
        except TargetError:
            self._git("reset", "--quiet", "--hard", base)
            raise
        if head != base:
            self._git("reset", "--quiet", "--hard", head)
            raise Conflict()
        self._git("reset", "--quiet", "--hard", base)
        raise TargetError(f"git push to {self.remote}/{self.branch} failed: {_tail(pushed)}")

    # -- git ------------------------------------------------------------------------------

    def _fetch(self) -> None:
        self._git("fetch", "--quiet", self.remote, f"refs/heads/{self.branch}")

    def _commit(self, message: str) -> None:
        # The working copy's own identity when it has one; ours otherwise.
        identity: list[str] = []
        if self._run("config", "user.email").returncode != 0:
            name, email = self.author
            identity = ["-c", f"user.name={name}", "-c", f"user.email={email}"]
        self._git(*identity, "commit", "--quiet", "-m", message, "--", self.relative)

    def _run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=cwd or self.top,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TargetError(f"git {args[0]}: {exc}") from None

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        done = self._run(*args, cwd=cwd)
        if done.returncode != 0:
            command = next((a for a in args if not a.startswith("-") and "=" not in a), "")
            raise TargetError(f"git {command} failed: {_tail(done)}")
        return done.stdout


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    # Every line: the remote's reason ("remote: ...") comes before git's own summary.
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    text = " / ".join(lines) or f"exit code {done.returncode}"
    return text if len(text) <= 600 else "..." + text[-600:]
