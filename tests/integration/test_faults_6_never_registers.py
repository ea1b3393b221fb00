"""Fault scenario 6: an instance boots but never registers -> terminated after the deadline,
capacity replaced, the job served. Property 19.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import Fleet

pytestmark = pytest.mark.integration


def boot_failures(fleet: Fleet) -> float:
    cloudwatch = fleet.aws.admin_client("cloudwatch")
    stats = cloudwatch.get_metric_statistics(
        Namespace="RunnerFleet",
        MetricName="BootFailures",
        Dimensions=[{"Name": "Fleet", "Value": "main"}],
        StartTime=fleet.clock.now().replace(year=2000),
        EndTime=fleet.clock.now().replace(year=2100),
        Period=60,
        Statistics=["Sum"],
    )
    return sum(point["Sum"] for point in stats["Datapoints"])


def test_fault_6_registered_runner_that_never_comes_online_is_replaced(make_fleet):
    fleet = make_fleet(max_size=2)
    (job,) = fleet.queue_jobs(1)
    fleet.pump_queue()
    fleet.asg_tick()
    (stuck,) = fleet.seen_instances
    fleet.never_register.add(stuck)  # its agent never connects
    for _ in range(3):
        fleet.step()
    assert job.status == "queued"
    assert stuck in {s.instance.id for s in fleet.aws.group_states()}  # before the deadline
    fleet.clock.advance(10 * 60)
    fleet.step(reaper=True)
    reports = [r for f, r in fleet.results if f == "reaper"]
    assert reports[-1]["terminated_offline"] == [stuck]
    assert stuck not in {s.instance.id for s in fleet.aws.group_states()}
    assert not any(r["name"].endswith(stuck) for r in fleet.runners().values())
    fleet.run_until(fleet.settled, max_steps=10)
    assert job.status == "completed" and not job.runner_name.endswith(stuck)
    assert boot_failures(fleet) >= 1
    fleet.run_until(fleet.nothing_left, max_steps=5, reaper=True)
    assert fleet.killed_busy == []


def test_fault_6_instance_whose_launch_event_was_lost_is_replaced(make_fleet):
    fleet = make_fleet(max_size=2)
    (job,) = fleet.queue_jobs(1)
    fleet.pump_queue()
    (stuck,) = [s.instance.id for s in fleet.aws.group_states()]
    fleet.seen_instances.add(stuck)  # EventBridge never delivers its launch event
    fleet.aws.group_states()[0].lifecycle_state = "Pending:Wait"
    fleet.clock.advance(11 * 60)
    fleet.scheduled("reaper")
    assert fleet.results[-1][1]["terminated_never_registered"] == [stuck]
    assert [s.instance.id for s in fleet.aws.group_states()] != [stuck]  # replaced
    fleet.run_until(fleet.settled, max_steps=10)
    assert job.status == "completed"
    fleet.run_until(fleet.nothing_left, max_steps=5, reaper=True)
    assert fleet.killed_busy == []
