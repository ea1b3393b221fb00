"""Fault scenario 5: spot interruption mid-job (and a runner that dies mid-job) -> deregistered,
job recorded for retry and re-run, instance gone, no ghost runner. Property 18.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import Fleet

pytestmark = pytest.mark.integration


def one_busy_runner(make_fleet) -> tuple[Fleet, str]:
    fleet = make_fleet(max_size=2)
    fleet.queue_jobs(1)
    fleet.step(finish=False)
    (instance_id,) = fleet.busy_instances()
    return fleet, instance_id


def retry_marks(fleet: Fleet) -> dict[str, str]:
    return {i["pk"]["S"]: i["retry"]["S"] for i in fleet.aws.ledger_items() if "retry" in i}


def github_fails_the_job(fleet: Fleet, instance_id: str) -> None:
    """What GitHub does once the runner is gone: the runner is offline, the job fails."""
    (job,) = [j for j in fleet.github.jobs.values() if j.status == "in_progress"]
    fleet.finish_jobs([job], conclusion="failure", runner_lost=True)


def assert_recovered(fleet: Fleet, lost_instance: str) -> None:
    fleet.run_until(fleet.settled, max_steps=15, reaper=True)
    jobs = sorted(fleet.github.jobs.values(), key=lambda j: j.id)
    assert [j.conclusion for j in jobs] == ["failure", "success"]  # re-run and served
    assert fleet.github.reruns == [jobs[0].id]
    assert set(retry_marks(fleet).values()) == {"rerun"}
    fleet.run_until(fleet.nothing_left, max_steps=5, reaper=True)
    assert not any(r["name"].endswith(lost_instance) for r in fleet.runners().values())
    assert fleet.killed_busy == []
    assert fleet.aws.dead_letters() == []


def test_fault_5_spot_interruption_of_a_busy_runner_records_and_reruns_its_job(make_fleet):
    fleet, instance_id = one_busy_runner(make_fleet)
    fleet.spot_warning(instance_id)
    (_, result) = fleet.results[-1]
    assert result["busy"] is True and result["retry_job"] is not None
    assert retry_marks(fleet) == {f"job#{result['retry_job']}": "requested"}
    # Two minutes later EC2 reclaims it; the group launches a replacement.
    fleet.clock.advance(120)
    fleet.aws.kill_instance(instance_id)
    github_fails_the_job(fleet, instance_id)
    assert_recovered(fleet, instance_id)


def test_fault_5_runner_that_dies_mid_job_is_released_and_its_job_rerun(make_fleet):
    fleet, instance_id = one_busy_runner(make_fleet)
    fleet.aws.kill_instance(instance_id)  # no warning: hardware failure
    fleet.asg_tick()  # the terminate hook, while GitHub still shows the runner busy
    released = [
        r for f, r in fleet.results if f == "lifecycle" and r.get("instance") == instance_id
    ][-1]
    assert released["busy"] is True and released["retry_job"] is not None
    # The ghost stays registered while GitHub thinks it busy; afterwards the reaper removes it.
    fleet.clock.advance(600)
    github_fails_the_job(fleet, instance_id)
    fleet.step(reaper=True)
    ghosts = [r for f, r in fleet.results if f == "reaper"][-1]["ghosts_deregistered"]
    assert ghosts == [f"main-{instance_id}"]
    assert_recovered(fleet, instance_id)
