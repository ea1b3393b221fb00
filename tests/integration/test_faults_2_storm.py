"""Fault scenario 2: a storm of queued events in seconds, delivered twice and out of order,
with AWS throttling injected on the functions' calls -> the fleet stays within its maximum,
retries are bounded, every job is served (tests/integration/storm.py plays and checks it).
Property 25 (bounded scale-up, rate-limited JIT issuance, retries with backoff, nothing
dropped).

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import Throttler
from tests.integration.storm import StormSize, check_storm, run_storm

pytestmark = pytest.mark.integration

# More jobs than the group may hold at once (so the maximum and the step bind), a burst of
# JIT requests beyond the bucket's, duplicates, reordering and throttling: every property of
# the scenario is exercised. The same storm with 60 and more jobs is a benchmark
# (bench/storm.py): it proves nothing more, and costs several times as much.
SIZE = StormSize(jobs=12, max_size=4, step_up=2, jit_per_minute=30)


def test_fault_2_storm_with_duplicates_reordering_and_throttling_serves_every_job_within_max(
    make_fleet, aws_sleeps
):
    storm = run_storm(make_fleet, SIZE)
    check_storm(storm, aws_sleeps)


def test_property_25_failed_records_are_retried_and_poison_reaches_the_dead_letters(make_fleet):
    """Partial batch responses: a record whose ledger write is throttled past every retry is
    reported failed and comes back; one that can never be processed ends in the dead-letter
    queue after maxReceiveCount attempts. Nothing is dropped silently."""
    throttle = Throttler(rate=1.0, operations={"scaler/dynamodb.UpdateItem"})
    fleet = make_fleet(max_size=2, throttle=throttle)
    admin_sqs = fleet.aws.admin_client("sqs")
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
