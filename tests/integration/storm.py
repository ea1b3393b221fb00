"""Fault scenario 2, the storm, at any size: a burst of queued jobs delivered twice and out of
order, with AWS throttling injected on the functions' calls. ``run_storm`` plays it and
``check_storm`` asserts every property the scenario proves (docs/security.md, property 25).

tests/integration/test_faults_2_storm.py runs it at the smallest size that exercises each property
(more jobs than the group's maximum, duplicates, reordering, throttling, the JIT rate limit);
bench/storm.py runs it at 60 and more jobs and reports what that costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.fakes.github import Job
from tests.integration.harness import Fleet, MakeFleet, Throttler


@dataclass(frozen=True)
class StormSize:
    jobs: int
    max_size: int = 8
    step_up: int = 4
    jit_per_minute: int = 30  # burst: a sixth of it
    throttle_rate: float = 0.15
    duplicate_rate: float = 0.5
    delay_rate: float = 0.25


@dataclass
class Storm:
    size: StormSize
    fleet: Fleet
    jobs: list[Job]
    throttle: Throttler
    steps: int

    @property
    def deliveries(self) -> int:
        return len(self.fleet.responses)

    @property
    def throttles(self) -> int:
        return sum(self.throttle.injected.values())


def run_storm(make_fleet: MakeFleet, size: StormSize) -> Storm:
    """The whole burst lands before anything is processed; then the world steps until every
    job is done and every delivery processed."""
    throttle = Throttler(rate=size.throttle_rate)
    fleet = make_fleet(
        max_size=size.max_size,
        throttle=throttle,
        FLEET_MAX_SCALE_UP_PER_CYCLE=size.step_up,
        FLEET_JIT_RATE_PER_MINUTE=size.jit_per_minute,
    )
    fleet.duplicate_rate = size.duplicate_rate
    fleet.delay_rate = size.delay_rate
    jobs = fleet.queue_jobs(size.jobs)
    steps = fleet.run_until(fleet.settled, max_steps=120, reaper=True)
    return Storm(size, fleet, jobs, throttle, steps)


def check_storm(storm: Storm, aws_sleeps: list[float]) -> None:
    """Every property of the scenario, whatever its size."""
    size, fleet, jobs = storm.size, storm.fleet, storm.jobs
    # Every job served exactly once, each on its own one-job runner.
    assert all(job.status == "completed" and job.conclusion == "success" for job in jobs)
    assert len({fleet.job_runner[job.id] for job in jobs}) == size.jobs
    # Three events per job (queued, in_progress, completed), a good part of them twice.
    assert storm.deliveries >= 3 * size.jobs + size.jobs // 2, storm.deliveries
    # Every delivery is accepted. The queue may refuse one through all its retries (503, rare
    # at 15% throttling: all four attempts refused); that delivery was accepted when sent
    # before (a duplicate), or is redelivered and accepted (property 15).
    statuses = {status for _, _, status in fleet.responses}
    assert statuses <= {202, 503}, statuses
    accepted = {guid for guid, _, status in fleet.responses if status == 202}
    refused = {guid for guid, _, status in fleet.responses if status == 503}
    assert refused <= accepted, f"deliveries answered 503 and never accepted: {refused - accepted}"

    # Never above the maximum, and scale-up at most step_up instances per cycle.
    assert fleet.max_seen_instances <= size.max_size
    assert fleet.max_seen_desired <= size.max_size
    cycles = [
        r
        for f, r in fleet.results
        if f == "scaler" and isinstance(r, dict) and "desired_capacity" in r
    ]
    assert cycles
    for cycle in cycles:
        assert cycle["desired_capacity"] - cycle["previous_capacity"] <= size.step_up, cycle

    _check_jit_rate(fleet, size.jit_per_minute)

    # Throttling happened and was ridden out with bounded, backed-off retries.
    assert storm.throttles > size.jobs, storm.throttle.injected
    assert aws_sleeps and max(aws_sleeps) <= 20
    assert len(aws_sleeps) <= storm.throttles
    assert fleet.aws.dead_letters() == []
    assert fleet.dead_lettered == []

    # Nothing lost, no busy runner killed, nothing left behind.
    ledger = {i["pk"]["S"]: i for i in fleet.aws.ledger_items() if i["pk"]["S"].startswith("job#")}
    assert len(ledger) == size.jobs
    assert {i["state"]["S"] for i in ledger.values()} == {"completed"}
    assert fleet.killed_busy == []
    # The scaler is refused nothing, except (a race the storm makes) terminating an instance
    # that left the group between its look and its call: judged against no group, refused,
    # and taken for gone (fleet.aws.adapters.autoscaling).
    refused = [
        (c.action, c.resource)
        for c in fleet.aws.enforcer.denied("role/main-scaler")
        if (c.action, c.resource) != ("autoscaling:TerminateInstanceInAutoScalingGroup", "*")
    ]
    assert refused == []
    # A spare launched for a late duplicate is retired once idle past the grace (5 minutes:
    # ten steps of 30 s).
    fleet.run_until(fleet.nothing_left, max_steps=15, reaper=True)


def _check_jit_rate(fleet: Fleet, jit_per_minute: int) -> None:
    """JIT issuance respected the shared token bucket: burst + rate x window, in any window."""
    issued: list[Any] = sorted(
        r.at for r in fleet.github.calls("POST", "/orgs/acme/actions/runners/generate-jitconfig")
    )
    # (0.2 s slack: the fake stamps a request a few real milliseconds after its token.)
    burst = jit_per_minute / 6
    for i, start in enumerate(issued):
        for j in range(i, len(issued)):
            window = issued[j] - start + 0.2
            assert j - i + 1 <= burst + jit_per_minute * window / 60
