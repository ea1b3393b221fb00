"""Fault scenario 2: a storm of hundreds of queued events in seconds, delivered twice and out of
order, with AWS throttling injected on the functions' calls -> the fleet stays within its
maximum, retries are bounded, every job is served. Property 25 (bounded scale-up, rate-limited
JIT issuance, retries with backoff, nothing dropped).

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.integration.harness import Throttler

pytestmark = pytest.mark.integration

JOBS = 60
MAX_SIZE = 8
STEP_UP = 4
JIT_PER_MINUTE = 30  # burst 5


def test_fault_2_storm_with_duplicates_reordering_and_throttling_serves_every_job_within_max(
    make_fleet, aws_sleeps
):
    throttle = Throttler(rate=0.15)
    fleet = make_fleet(
        max_size=MAX_SIZE,
        throttle=throttle,
        FLEET_MAX_SCALE_UP_PER_CYCLE=STEP_UP,
        FLEET_JIT_RATE_PER_MINUTE=JIT_PER_MINUTE,
    )
    fleet.duplicate_rate = 0.5
    fleet.delay_rate = 0.25

    jobs = fleet.queue_jobs(JOBS)  # the whole burst lands before anything is processed
    steps = fleet.run_until(fleet.settled, max_steps=120, reaper=True)

    # Every job served exactly once, each on its own one-job runner.
    assert all(job.status == "completed" and job.conclusion == "success" for job in jobs)
    assert len({fleet.job_runner[job.id] for job in jobs}) == JOBS
    deliveries = len(fleet.responses)
    assert deliveries >= 3 * JOBS + JOBS // 2, deliveries  # hundreds of events, duplicates
    assert {status for _, _, status in fleet.responses} == {202}

    # Never above the maximum, and scale-up at most STEP_UP instances per cycle.
    assert fleet.max_seen_instances <= MAX_SIZE
    assert fleet.max_seen_desired <= MAX_SIZE
    cycles = [
        r
        for f, r in fleet.results
        if f == "scaler" and isinstance(r, dict) and "desired_capacity" in r
    ]
    assert cycles
    for cycle in cycles:
        assert cycle["desired_capacity"] - cycle["previous_capacity"] <= STEP_UP, cycle

    # JIT issuance respected the shared token bucket: burst + rate x window, in any window.
    issued = sorted(
        r.at for r in fleet.github.calls("POST", "/orgs/acme/actions/runners/generate-jitconfig")
    )
    # (0.2 s slack: the fake stamps a request a few real milliseconds after its token.)
    burst = JIT_PER_MINUTE / 6
    for i, start in enumerate(issued):
        for j in range(i, len(issued)):
            window = issued[j] - start + 0.2
            assert j - i + 1 <= burst + JIT_PER_MINUTE * window / 60

    # Throttling happened and was ridden out with bounded, backed-off retries.
    assert sum(throttle.injected.values()) > 50, throttle.injected
    assert aws_sleeps and max(aws_sleeps) <= 20
    assert len(aws_sleeps) <= sum(throttle.injected.values())
    assert fleet.aws.dead_letters() == []
    assert fleet.dead_lettered == []

    # Nothing lost, no busy runner killed, nothing left behind.
    ledger = {i["pk"]["S"]: i for i in fleet.aws.ledger_items() if i["pk"]["S"].startswith("job#")}
    assert len(ledger) == JOBS
    assert {i["state"]["S"] for i in ledger.values()} == {"completed"}
    assert fleet.killed_busy == []
    assert fleet.aws.enforcer.denied("role/main-scaler") == []
    fleet.run_until(fleet.nothing_left, max_steps=5, reaper=True)
    print(
        f"storm: {JOBS} jobs, {deliveries} deliveries, {steps} steps, "
        f"{sum(throttle.injected.values())} throttles injected, {datetime.now()}"
    )


def test_property_25_failed_records_are_retried_and_poison_reaches_the_dead_letters(make_fleet):
    """Partial batch responses: a record whose ledger write is throttled past every retry is
    reported failed and comes back; one that can never be processed ends in the dead-letter
    queue after maxReceiveCount attempts. Nothing is dropped silently."""
    throttle = Throttler(rate=1.0, operations={"scaler/dynamodb.UpdateItem"})
    fleet = make_fleet(max_size=2, throttle=throttle)
    admin_sqs = fleet.aws.admin.client("sqs")
    admin_sqs.send_message(QueueUrl=fleet.aws.queue_url, MessageBody='{"not": "a delivery"}')
    (job,) = fleet.queue_jobs(1)

    fleet.pump_queue()
    batches = [r for f, r in fleet.results if f == "scaler" and "batchItemFailures" in r]
    assert len(batches[-1]["batchItemFailures"]) == 2  # both reported, neither lost
    assert fleet.aws.queue_depth() == 2

    throttle.rate = 0.0  # DynamoDB recovers
    for _ in range(6):
        fleet.pump_queue()
    assert fleet.aws.queue_depth() == 0
    assert len(fleet.aws.dead_letters()) == 1  # the undecodable one, after 5 receives
    records = [i for i in fleet.aws.ledger_items() if i["pk"]["S"] == f"job#{job.id}"]
    assert records and records[0]["state"]["S"] == "queued"  # the real one was recorded
    fleet.run_until(fleet.jobs_done, max_steps=10)
    assert job.conclusion == "success"
