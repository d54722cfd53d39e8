"""The git target against a local bare repository: one pushed commit per step whose
message names the gates; a push rejected because someone else changed the branch is
retried on the new head, or reported; never forced."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from rollout_fixtures import ROUTES, Clock, Facts, FakePrometheus, controller

from strangler.rollout.targets import GitTarget, TargetError
from strangler.routes import parse_routes


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


@dataclass
class Repos:
    remote: Path  # the bare repository GitOps tools would read
    ours: Path  # the controller's working copy
    theirs: Path  # a person's working copy

    def routes(self) -> Path:
        return self.ours / "deploy" / "routes.yaml"

    def remote_file(self) -> str:
        return git(self.remote, "show", "main:deploy/routes.yaml") + "\n"

    def remote_weight(self) -> float | None:
        table = parse_routes(self.remote_file(), "routes.yaml")
        return next(r for r in table.routes if r.name == "pay").weight

    def log(self) -> list[str]:
        return git(self.remote, "log", "--format=%s", "main").splitlines()

    def hook(self, name: str, script: str) -> None:
        """A hook in our working copy (runs inside the controller's git commands)."""
        path = self.ours / ".git" / "hooks" / name
        path.write_text("#!/bin/sh\nunset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE\n" + script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    def their_change(self, marker: Path | None = None) -> str:
        """Shell: the person pulls, changes the file (comment at the end), pushes."""
        once = f'[ -e "{marker}" ] && exit 0; touch "{marker}"; ' if marker else ""
        return (
            f'{once}cd "{self.theirs}" && git pull -q --ff-only origin main && '
            'echo "# reviewed $(date +%s%N)" >> deploy/routes.yaml && '
            "git commit -qam 'their change' && git push -q origin HEAD:main\n"
        )


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    remote, ours, theirs = tmp_path / "remote.git", tmp_path / "ours", tmp_path / "theirs"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    for clone in (theirs, ours):
        git(tmp_path, "clone", "-q", str(remote), str(clone))
    for clone, who in ((theirs, "person"), (ours, "controller")):
        git(clone, "config", "user.name", who)
        git(clone, "config", "user.email", f"{who}@example.com")
    (theirs / "deploy").mkdir()
    (theirs / "deploy" / "routes.yaml").write_text(ROUTES)
    git(theirs, "add", ".")
    git(theirs, "commit", "-qm", "routes")
    git(theirs, "push", "-q", "origin", "HEAD:main")
    git(ours, "pull", "-q", "origin", "main")
    git(ours, "checkout", "-q", "main")
    return Repos(remote, ours, theirs)


def passing() -> FakePrometheus:
    prometheus = FakePrometheus(ROUTES)
    prometheus.set("fallback_ratio", 0.0125, messages=2500)
    return prometheus


def test_each_step_is_one_pushed_commit_whose_message_names_the_gates(repos: Repos) -> None:
    facts, clock = Facts(), Clock()
    run = controller(GitTarget(repos.routes()), passing(), facts, clock)
    run.run_pass()
    assert repos.log() == ["rollout pay: weight 0% -> 1% (step 1 of 3)", "routes"]
    message = git(repos.remote, "log", "-1", "--format=%B", "main")
    assert "fallback_ratio 0.0125 (max 0.05, 2500 messages over 5m): pass" in message
    assert repos.remote_weight() == 1
    (advanced,) = facts.all("rollout_advanced")
    assert advanced["commit"] == git(repos.remote, "rev-parse", "main")
    assert advanced["target"] == "git origin/main:deploy/routes.yaml"

    clock.advance(minutes=1)
    run.run_pass()  # held: no commit
    clock.advance(minutes=9)
    run.run_pass()
    assert repos.log()[0] == "rollout pay: weight 1% -> 50% (step 2 of 3)"
    assert len(repos.log()) == 3
    assert git(repos.ours, "status", "--porcelain") == ""


@pytest.mark.parametrize("hook", ["pre-push", "post-commit"])
def test_a_push_rejected_because_the_branch_moved_is_retried_on_the_new_head(
    repos: Repos, tmp_path: Path, hook: str
) -> None:
    # pre-push: they push while ours is on its way ("failed to update ref");
    # post-commit: they push between our commit and our push ("fetch first").
    repos.hook(hook, repos.their_change(marker=tmp_path / "once"))
    facts, clock = Facts(), Clock()
    controller(GitTarget(repos.routes()), passing(), facts, clock).run_pass()
    assert repos.log() == ["rollout pay: weight 0% -> 1% (step 1 of 3)", "their change", "routes"]
    assert "# reviewed" in repos.remote_file(), "their change is kept, not overwritten"
    assert repos.remote_weight() == 1
    (advanced,) = facts.all("rollout_advanced")
    assert advanced["commit"] == git(repos.remote, "rev-parse", "main")


def test_a_push_rejected_every_time_is_reported_and_never_forced(repos: Repos) -> None:
    repos.hook("pre-push", repos.their_change())
    facts, clock = Facts(), Clock()
    controller(GitTarget(repos.routes()), passing(), facts, clock, retries=2).run_pass()
    assert repos.log() == ["their change"] * 3 + ["routes"]
    (held,) = facts.all("rollout_held")
    assert "changed under the step 3 times" in held["reason"] and held["weight"] == 0
    assert git(repos.ours, "rev-parse", "HEAD") == git(repos.remote, "rev-parse", "main")
    assert git(repos.ours, "status", "--porcelain") == "", "no commit of ours left behind"


def test_a_push_refused_by_the_remote_is_reported_and_our_commit_dropped(repos: Repos) -> None:
    hook = repos.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch main is protected' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    facts, clock = Facts(), Clock()
    base = git(repos.ours, "rev-parse", "HEAD")
    controller(GitTarget(repos.routes()), passing(), facts, clock).run_pass()
    (held,) = facts.all("rollout_held")
    assert "git push to origin/main failed" in held["reason"]
    assert "branch main is protected" in held["reason"]
    assert git(repos.ours, "rev-parse", "HEAD") == base and repos.log() == ["routes"]
    assert repos.routes().read_text() == ROUTES


def test_a_working_copy_with_a_persons_changes_is_refused(repos: Repos) -> None:
    repos.routes().write_text(ROUTES.replace("weight: 0 ", "weight: 7 "))
    facts, clock = Facts(), Clock()
    with pytest.raises(TargetError, match="uncommitted changes"):
        controller(GitTarget(repos.routes()), passing(), facts, clock).run_pass()
    git(repos.ours, "commit", "-qam", "a person's local commit")
    with pytest.raises(TargetError, match="1 commit"):
        controller(GitTarget(repos.routes()), passing(), facts, clock).run_pass()
    assert repos.log() == ["routes"] and facts.all() == []


def test_without_an_identity_the_controller_commits_as_itself(repos: Repos) -> None:
    git(repos.ours, "config", "--unset", "user.name")
    git(repos.ours, "config", "--unset", "user.email")
    env = {"HOME": str(repos.ours.parent), "GIT_CONFIG_NOSYSTEM": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        controller(GitTarget(repos.routes()), passing(), Facts(), Clock()).run_pass()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    author = git(repos.remote, "log", "-1", "--format=%an <%ae>", "main")
    assert author == "strangler rollout <strangler-rollout@localhost>"
