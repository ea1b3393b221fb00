"""fleet.aws.observe: the group, GitHub and the ledger joined into what scaling and reaping read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.aws.observe import GroupInstance, instance_id_of, observe, reap_plan, runner_name
from fleet.core.github.runners import Runner
from fleet.core.ledger import JobRecord, JobState
from fleet.core.scaling import FleetLimits, RunnerStatus, decide

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DEADLINE = timedelta(minutes=10)
LIMITS = FleetLimits(max_size=10, boot_deadline=DEADLINE, max_lifetime=timedelta(hours=6))


def runner(instance: str, *, status: str = "online", busy: bool = False, fleet: str = "main"):
    return Runner(id=hash(instance) % 10_000, name=f"{fleet}-{instance}", status=status, busy=busy)


def job(job_id: int, state: JobState, runner_name_: str | None = None) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        state=state,
        run_id=1,
        repository="acme/app",
        queued_at=NOW - timedelta(minutes=1),
        runner_name=runner_name_,
    )


def view_of(instances, runners=(), jobs=(), ages=None):
    ages = ages or {}
    return observe(
        fleet="main",
        instances=instances,
        launched_at={
            i.instance_id: NOW - ages.get(i.instance_id, timedelta(minutes=1)) for i in instances
        },
        runners=runners,
        jobs=jobs,
        boot_deadline=DEADLINE,
        now=NOW,
    )


def statuses(view) -> dict[str, RunnerStatus]:
    return {r.instance_id: r.status for r in view.runners}


def test_runner_names_tie_instances_to_registrations():
    assert runner_name("main", "i-0abc") == "main-i-0abc"
    assert instance_id_of("main", "main-i-0abc") == "i-0abc"
    assert instance_id_of("main", "other-i-0abc") is None
    assert instance_id_of("main", "main-laptop") is None


def test_status_of_each_instance_follows_github_then_the_ledger():
    instances = [GroupInstance(f"i-{n}", "InService", protected=True) for n in range(7)]
    ages = {"i-5": timedelta(minutes=11), "i-6": timedelta(minutes=11)}
    runners = [
        runner("i-1"),  # online, no job
        runner("i-2", busy=True),
        runner("i-3"),  # online, but the ledger has a job on it (busy flag lags)
        runner("i-4", status="offline"),  # JIT-registered, agent not connected yet
        runner("i-5", status="offline"),  # ... past the boot deadline
        # i-0 and i-6: not registered
    ]
    jobs = [
        job(1, JobState.IN_PROGRESS, "MAIN-i-3"),
        job(2, JobState.QUEUED),
        job(3, JobState.WAITING),
    ]
    view = view_of(instances, runners, jobs, ages)
    assert statuses(view) == {
        "i-0": RunnerStatus.BOOTING,
        "i-1": RunnerStatus.IDLE,
        "i-2": RunnerStatus.BUSY,
        "i-3": RunnerStatus.BUSY,
        "i-4": RunnerStatus.BOOTING,
        "i-5": RunnerStatus.OFFLINE,
        "i-6": RunnerStatus.BOOTING,
    }
    assert view.queued == 1  # waiting jobs need no runner yet
    assert view.unprotected_busy == ()


def test_only_active_instances_count_and_unprotected_busy_ones_are_reported():
    instances = [
        GroupInstance("i-1", "InService", protected=False),
        GroupInstance("i-2", "Pending:Wait"),
        GroupInstance("i-3", "Terminating:Wait"),
        GroupInstance("i-4", "Warmed:Stopped"),
    ]
    view = view_of(instances, [runner("i-1", busy=True), runner("i-3", busy=True)])
    assert set(statuses(view)) == {"i-1", "i-2"}
    assert view.unprotected_busy == ("i-1",)
    # i-3 is leaving: its runner counts as a ghost, but a busy one is never deregistered.
    assert [g.name for g in view.ghosts] == ["main-i-3"]
    assert reap_plan(view, LIMITS, NOW).ghosts == ()


def test_other_fleets_runners_are_ignored_and_ghosts_found():
    view = view_of(
        [GroupInstance("i-1", "InService")],
        [runner("i-1"), runner("i-9"), runner("i-1", fleet="other"), runner("i-8", busy=False)],
        [job(1, JobState.IN_PROGRESS, "main-i-8")],
    )
    assert sorted(g.name for g in view.ghosts) == ["main-i-8", "main-i-9"]
    plan = reap_plan(view, LIMITS, NOW)
    assert [g.name for g in plan.ghosts] == ["main-i-9"]  # i-8 still has a job in the ledger


def test_instance_unknown_to_ec2_counts_as_just_launched():
    view = observe(
        fleet="main",
        instances=[GroupInstance("i-1", "Pending")],
        launched_at={},
        runners=[],
        jobs=[],
        boot_deadline=DEADLINE,
        now=NOW,
    )
    assert view.runners[0].launched_at == NOW
    assert reap_plan(view, LIMITS, NOW).never_registered == ()


def test_reap_plan_picks_offline_never_registered_and_expired_but_never_busy():
    instances = [GroupInstance(f"i-{n}", "InService") for n in range(5)]
    ages = {
        "i-0": timedelta(minutes=11),  # no registration past the deadline
        "i-1": timedelta(minutes=11),  # offline past the deadline
        "i-2": timedelta(hours=7),  # idle past the lifetime
        "i-3": timedelta(hours=7),  # busy past the lifetime
        "i-4": timedelta(minutes=5),  # booting, in time
    }
    runners = [runner("i-1", status="offline"), runner("i-2"), runner("i-3", busy=True)]
    plan = reap_plan(view_of(instances, runners, ages=ages), LIMITS, NOW)
    assert plan.never_registered == ("i-0",)
    assert plan.offline == ("i-1",)
    assert plan.expired_idle == ("i-2",)
    assert plan.overdue_busy == ("i-3",)


def test_runners_the_ledger_shows_with_a_job_are_treated_as_busy():
    """GitHub's busy flag lags a job assignment; an in-progress job in the ledger naming the
    runner (any case) makes it busy before ``decide`` runs, so it is never retired."""
    instances = [GroupInstance(f"i-000{n}", "InService") for n in (1, 2, 3)]
    view = view_of(
        instances,
        runners=[runner("i-0001"), runner("i-0002")],
        jobs=[job(7, JobState.IN_PROGRESS, "MAIN-i-0001")],
    )
    assert [r.status for r in view.runners] == [
        RunnerStatus.BUSY,
        RunnerStatus.IDLE,
        RunnerStatus.BOOTING,
    ]
    d = decide(0, list(view.runners), FleetLimits(idle_grace=timedelta(0)), NOW)
    assert d.retire == ("i-0002",)
