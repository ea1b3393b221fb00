"""Fault scenario 3: out-of-order or lost events (in_progress before queued; completed never
arrives; a queued delivery that failed) -> the reconciler converges; nothing leaked, nothing
stranded. Property 15 (redelivery of failed deliveries, queued jobs compared with GitHub).

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import LABELS, REPOSITORY, Fleet

pytestmark = pytest.mark.integration


def open_ledger_jobs(fleet: Fleet) -> list[str]:
    return [i["pk"]["S"] for i in fleet.aws.ledger_items() if "open_fleet" in i]


def assert_nothing_leaked_or_stranded(fleet: Fleet) -> None:
    fleet.run_until(fleet.nothing_left, max_steps=10, reaper=True)
    assert open_ledger_jobs(fleet) == []
    assert fleet.aws.dead_letters() == []
    assert fleet.killed_busy == []
    assert [c for c in fleet.aws.enforcer.denied() if c.principal != "user/admin"] == []


def test_fault_3_in_progress_and_completed_before_queued_converge(make_fleet):
    fleet = make_fleet(max_size=3)
    late = fleet.github.new_job(REPOSITORY, LABELS, fleet.clock.now())
    fleet.deliver(late, "queued", hold=True)  # its "queued" is held back
    other = fleet.queue_jobs(1)[0]
    fleet.step(finish=False)
    # GitHub gave the first runner to the job whose "queued" never arrived (lowest id).
    assert late.status == "in_progress" and other.status == "queued"
    fleet.finish_jobs([late])
    fleet.send_held()  # "queued" arrives last
    fleet.pump_queue()
    states = {i["pk"]["S"]: i["state"]["S"] for i in fleet.aws.ledger_items() if "state" in i}
    assert states[f"job#{late.id}"] == "completed"
    fleet.run_until(fleet.settled, max_steps=10)
    assert other.status == "completed"
    assert_nothing_leaked_or_stranded(fleet)


def test_fault_3_lost_completed_event_is_converged_by_the_reconciler(make_fleet):
    fleet = make_fleet(max_size=2)
    (job,) = fleet.queue_jobs(1)
    fleet.vanish_actions.add((job.id, "completed"))  # GitHub never sends it
    fleet.run_until(fleet.jobs_done, max_steps=5)
    fleet.pump_queue()
    assert open_ledger_jobs(fleet) == [f"job#{job.id}"]  # the ledger still thinks it runs
    # After the job timeout plus the boot deadline, the reaper asks GitHub.
    fleet.clock.advance(71 * 60)
    fleet.scheduled("reaper")
    report = fleet.results[-1][1]
    assert report["converged_jobs"] == [job.id]
    assert open_ledger_jobs(fleet) == []
    assert fleet.github.calls("GET", f"/repos/{REPOSITORY}/actions/jobs/{job.id}")
    assert_nothing_leaked_or_stranded(fleet)


def test_fault_3_missed_queued_webhook_is_redelivered_and_served_property_15(make_fleet):
    fleet = make_fleet(max_size=2)
    job = fleet.github.new_job(REPOSITORY, LABELS, fleet.clock.now())
    fleet.deliver(job, "queued", lost=True)  # GitHub could not reach the endpoint
    for _ in range(2):
        fleet.step()
    assert fleet.seen_instances == set() and job.status == "queued"  # nothing knew of it
    fleet.step(reaper=True)  # the reconciler asks GitHub to redeliver
    assert fleet.github.redelivered
    fleet.run_until(fleet.settled, max_steps=10)
    assert job.status == "completed"
    guid = fleet.responses[0][0]
    assert [status for g, _, status in fleet.responses if g == guid] == [502, 202]
    assert_nothing_leaked_or_stranded(fleet)


def test_fault_3_cancelled_job_with_lost_completed_stops_holding_capacity(make_fleet):
    fleet = make_fleet(max_size=2)
    (job,) = fleet.queue_jobs(1)
    fleet.pump_queue()
    fleet.vanish_actions.add((job.id, "completed"))
    job.status = "completed"  # cancelled before any runner took it; the event is lost
    job.conclusion = "cancelled"
    fleet.step(finish=False)
    assert len(fleet.aws.group_states()) == 1  # a runner waits for a job that will never come
    fleet.clock.advance(16 * 60)
    fleet.scheduled("reaper")
    assert fleet.results[-1][1]["converged_jobs"] == [job.id]
    fleet.clock.advance(6 * 60)  # past the idle grace: the surplus runner is retired
    fleet.scheduled("scaler")
    assert fleet.aws.group_states() == []
    assert_nothing_leaked_or_stranded(fleet)
