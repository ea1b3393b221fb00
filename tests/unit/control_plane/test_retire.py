"""fleet.core.retire: deregister, re-check, remove; never a busy runner (docs/security.md,
property 16), with the I/O of either fleet replaced by functions over dictionaries."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fleet.core.github.errors import GitHubServerError
from fleet.core.github.runners import Runner, RunnerBusyError
from fleet.core.retire import BUSY_ON_GITHUB, LEDGER_BUSY, REFUSED, Candidate, retire

pytestmark = pytest.mark.unit


class World:
    """GitHub's registrations, the hosts, and the jobs the fleet knows of."""

    def __init__(self, *names: str) -> None:
        self.github = {n: Runner(i, n, "online", False) for i, n in enumerate(names, 1)}
        self.hosts = set(names)
        self.running: set[str] = set()
        self.calls: list[str] = []
        self.refuse: set[str] = set()
        self.stays_listed: set[str] = set()
        self.down = False

    def deregister(self, runner: Runner) -> bool:
        self.calls.append(f"deregister {runner.name}")
        if self.down:
            raise GitHubServerError("DELETE", "/runners", 502, "Bad Gateway")
        if runner.name in self.refuse:
            raise RunnerBusyError("DELETE", "/runners", 422, "still running a job")
        if runner.name not in self.stays_listed:
            self.github.pop(runner.name, None)
        return True

    def recheck(self, runner: Runner) -> Runner | None:
        self.calls.append(f"recheck {runner.name}")
        return self.github.get(runner.name)

    def busy_after(self, names):
        self.calls.append(f"busy? {','.join(names)}")
        return {n: LEDGER_BUSY for n in names if n in self.running}

    def remove(self, name: str) -> bool:
        self.calls.append(f"remove {name}")
        self.hosts.discard(name)
        return True

    def retire(self, *names: str, recheck: bool = True, registrations=None):
        registrations = registrations or self.github
        return retire(
            [Candidate(n, registrations.get(n)) for n in names],
            deregister=self.deregister,
            recheck=self.recheck if recheck else None,
            busy_after=self.busy_after,
            remove=self.remove,
            uncertain=(GitHubServerError,),
        )


def test_idle_runners_are_deregistered_rechecked_then_removed_in_that_order():
    world = World("a", "b")
    outcome = world.retire("a", "b", "a")
    assert outcome.removed == ("a", "b") and outcome.spared == ()
    assert world.calls == [
        "deregister a",
        "recheck a",
        "deregister b",
        "recheck b",
        "busy? a,b",  # the fleet's own view is read once, after every deregistration
        "remove a",
        "remove b",
    ]


def test_a_runner_listed_busy_is_not_even_asked_about():
    world = World("a")
    busy = {"a": replace(world.github["a"], busy=True)}
    outcome = world.retire("a", registrations=busy)
    assert outcome.spared == (("a", BUSY_ON_GITHUB),) and world.calls == []


def test_github_refusing_the_deregistration_keeps_the_host():
    world = World("a")
    world.refuse.add("a")
    outcome = world.retire("a")
    assert outcome.spared == (("a", REFUSED),) and world.hosts == {"a"}


def test_a_runner_still_listed_after_deletion_keeps_its_host():
    world = World("a")
    world.stays_listed.add("a")
    outcome = world.retire("a")
    assert outcome.spared == (("a", "still registered after deregistration"),)
    assert "remove a" not in world.calls


def test_a_job_seen_after_deregistration_keeps_the_host():
    world = World("a", "b")
    world.running.add("a")
    outcome = world.retire("a", "b")
    assert outcome.removed == ("b",) and outcome.spared == (("a", LEDGER_BUSY),)


def test_uncertain_github_removes_nothing():
    world = World("a")
    world.down = True
    outcome = world.retire("a")
    assert outcome.removed == ()
    assert outcome.spared[0][1].startswith("deregistration uncertain: ")
    assert world.hosts == {"a"}


def test_a_host_with_no_registration_is_rechecked_and_removed():
    world = World()
    world.hosts.add("never-registered")
    outcome = world.retire("never-registered", recheck=False)
    assert outcome.removed == ("never-registered",)
    assert world.calls == ["busy? never-registered", "remove never-registered"]
