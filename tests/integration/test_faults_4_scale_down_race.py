"""Fault scenario 4: a job lands on a runner just as scale-down checks it -> the runner is not
terminated. Property 16: scale-down deregisters first, and never terminates a runner found busy
on a re-check after deregistration, or whose job is in progress (GitHub's busy flag lags).

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import LABELS, REPOSITORY, Fleet

pytestmark = pytest.mark.integration


def fleet_with_a_surplus_idle_runner(make_fleet) -> tuple[Fleet, str, dict]:
    fleet = make_fleet(max_size=3)
    jobs = fleet.queue_jobs(2)
    fleet.pump_queue()
    fleet.cancel(jobs[1])  # cancelled before a runner took it: one runner will be surplus
    fleet.step(finish=False)
    idle = [r for r in fleet.runners().values() if r["status"] == "online" and not r["busy"]]
    assert len(idle) == 1
    runner = idle[0]
    return fleet, runner["name"].removeprefix("main-"), runner


def test_fault_4_job_assigned_while_deregistering_keeps_its_runner(make_fleet):
    fleet, instance_id, runner = fleet_with_a_surplus_idle_runner(make_fleet)
    arriving = fleet.github.new_job(REPOSITORY, LABELS, fleet.clock.now())
    path = f"/orgs/acme/actions/runners/{runner['id']}"

    def job_lands_first(method: str, request_path: str) -> None:
        if method == "DELETE" and request_path == path and arriving.status == "queued":
            fleet.deliver(arriving, "queued")
            fleet.assign_jobs()  # GitHub hands it to the runner being retired

    fleet.github.hooks.append(job_lands_first)
    fleet.clock.advance(6 * 60)  # past the idle grace
    fleet.scheduled("scaler")
    cycle = fleet.results[-1][1]
    assert [i for i, _ in cycle["spared"]] == [instance_id]
    assert "busy" in cycle["spared"][0][1]
    assert instance_id in {s.instance.id for s in fleet.aws.group_states()}
    # Deregistration came first; no termination was attempted for it.
    delete_at = fleet.timeline.index(("github", f"DELETE {path}"))
    terminations = [
        n
        for n, (kind, call) in enumerate(fleet.timeline)
        if kind == "aws" and call == "autoscaling.TerminateInstanceInAutoScalingGroup"
    ]
    assert all(n < delete_at for n in terminations)
    fleet.run_until(fleet.settled, max_steps=10)
    assert arriving.status == "completed" and arriving.runner_name == runner["name"]
    assert fleet.killed_busy == []


def test_fault_4_job_seen_only_by_the_ledger_after_deregistration_keeps_its_runner(make_fleet):
    """GitHub's busy flag lags: deregistration succeeds although a job was just assigned; the
    re-check reads the ledger, where another scaler invocation recorded the job's start."""
    fleet, instance_id, runner = fleet_with_a_surplus_idle_runner(make_fleet)
    arriving = fleet.github.new_job(REPOSITORY, LABELS, fleet.clock.now())
    path = f"/orgs/acme/actions/runners/{runner['id']}"
    other_scaler = fleet.fresh_runtime("scaler")

    def job_lands_unseen(method: str, request_path: str) -> None:
        if method == "DELETE" and request_path == path and arriving.status == "queued":
            fleet.assign_jobs()  # busy flag not updated yet
            runner["busy"] = False
            fleet.deliver(arriving, "in_progress")
            fleet.record_only(other_scaler)

    fleet.github.hooks.append(job_lands_unseen)
    fleet.deliver(arriving, "queued", hold=True)
    fleet.clock.advance(6 * 60)
    fleet.scheduled("scaler")
    cycle = fleet.results[-1][1]
    assert cycle["spared"] == [[instance_id, "a job is in progress on it (ledger)"]]
    assert instance_id in {s.instance.id for s in fleet.aws.group_states()}
    assert runner["id"] not in fleet.runners()  # it was deregistered, but not terminated
    fleet.send_held()
    fleet.finish_jobs([arriving])  # the agent still runs its job, then the instance leaves
    fleet.run_until(fleet.settled, max_steps=10)
    assert fleet.killed_busy == []
    fleet.run_until(fleet.nothing_left, max_steps=5, reaper=True)
