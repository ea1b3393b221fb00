"""The job ledger state machine (fault scenario 3): order and duplicates do not matter.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.jobs import parse_workflow_job_event
from fleet.core.ledger import (
    JobEvent,
    JobRecord,
    JobState,
    apply,
    counts,
    in_progress_longer_than,
    merge,
    queued_longer_than,
)
from tests.fakes.ledger import replay
from tests.fakes.payloads import workflow_job

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def event(state: JobState, job_id: int = 1, **kwargs) -> JobEvent:
    running = state in (JobState.IN_PROGRESS, JobState.COMPLETED)
    defaults = {
        "run_id": 100,
        "repository": "acme/app",
        "created_at": T0,
        "labels": ("self-hosted", "linux"),
        "owner": "acme",
        "installation_id": 7,
        "started_at": T0 + timedelta(seconds=30) if running else T0,
        "completed_at": T0 + timedelta(hours=2) if state is JobState.COMPLETED else None,
        "runner_id": 5 if running else None,
        "runner_name": "fleet-a-1" if running else None,
        "conclusion": "success" if state is JobState.COMPLETED else None,
    }
    return JobEvent(job_id=job_id, state=state, **{**defaults, **kwargs})


def test_queued_then_in_progress_then_completed():
    record, changed = apply(None, event(JobState.QUEUED))
    assert changed and record.state is JobState.QUEUED
    assert record.started_at is None, "a queued payload's started_at is not a start"
    assert record.runner_name is None
    record, changed = apply(record, event(JobState.IN_PROGRESS))
    assert changed and record.state is JobState.IN_PROGRESS
    assert record.runner_name == "fleet-a-1" and record.started_at == T0 + timedelta(seconds=30)
    record, changed = apply(record, event(JobState.COMPLETED))
    assert changed and record.state is JobState.COMPLETED
    assert record.conclusion == "success" and record.completed_at == T0 + timedelta(hours=2)
    assert record.queued_at == T0


def test_in_progress_before_queued_does_not_go_back_to_queued():
    record, _ = apply(None, event(JobState.IN_PROGRESS))
    record, changed = apply(record, event(JobState.QUEUED))
    assert record.state is JobState.IN_PROGRESS
    assert not changed


def test_completed_after_completed_is_a_no_op():
    record, _ = apply(None, event(JobState.COMPLETED))
    again, changed = apply(record, event(JobState.COMPLETED))
    assert again == record and not changed


def test_waiting_comes_before_queued():
    record, _ = apply(None, event(JobState.QUEUED))
    record, changed = apply(record, event(JobState.WAITING))
    assert record.state is JobState.QUEUED and not changed


def test_merging_records_of_different_jobs_is_refused():
    a = JobRecord.from_event(event(JobState.QUEUED, job_id=1))
    b = JobRecord.from_event(event(JobState.QUEUED, job_id=2))
    with pytest.raises(ValueError, match="different jobs"):
        merge(a, b)


def test_events_come_from_webhook_payloads():
    parsed = parse_workflow_job_event(workflow_job("in_progress", runner_name="fleet-a-9"))
    job = JobEvent.from_webhook(parsed)
    assert job.state is JobState.IN_PROGRESS
    assert (job.job_id, job.run_id, job.repository) == (29679449, 2832853555, "acme/app")
    assert job.runner_name == "fleet-a-9" and job.installation_id == 7


def test_records_round_trip_through_storage_including_dynamodb_decimals():
    record = replay([event(JobState.QUEUED), event(JobState.COMPLETED)])[1]
    stored = record.to_dict()
    stored["job_id"] = Decimal(stored["job_id"])
    stored["run_id"] = Decimal(stored["run_id"])
    assert JobRecord.from_dict(stored) == record
    assert JobEvent.from_dict(event(JobState.QUEUED).to_dict()) == event(JobState.QUEUED)


def test_the_stored_format_names_every_field_in_its_order():
    # What SQS messages, the ledger table and serve's jobs file hold: the field names, their
    # encodings and their order (the job's creation time fifth) are the stored format.
    done = event(JobState.COMPLETED)
    common = [
        ("labels", ["self-hosted", "linux"]),
        ("owner", "acme"),
        ("installation_id", 7),
        ("started_at", "2026-11-24T10:00:30+00:00"),
        ("completed_at", "2026-11-24T12:00:00+00:00"),
        ("runner_id", 5),
        ("runner_name", "fleet-a-1"),
        ("conclusion", "success"),
    ]
    head = [("job_id", 1), ("state", "completed"), ("run_id", 100), ("repository", "acme/app")]
    assert list(done.to_dict().items()) == [
        *head,
        ("created_at", "2026-11-24T10:00:00+00:00"),
        *common,
    ]
    record = JobRecord.from_event(done)
    assert list(record.to_dict().items()) == [
        *head,
        ("queued_at", "2026-11-24T10:00:00+00:00"),
        *[(k, sorted(v) if k == "labels" else v) for k, v in common],
    ]


def test_naive_timestamps_are_refused_from_storage():
    data = JobRecord.from_event(event(JobState.QUEUED)).to_dict()
    data["queued_at"] = "2026-11-24T10:00:00"
    with pytest.raises(ValueError, match="timezone"):
        JobRecord.from_dict(data)


def test_jobs_queued_longer_than_a_threshold_oldest_first():
    records = replay(
        [
            event(JobState.QUEUED, job_id=1, created_at=T0),
            event(JobState.QUEUED, job_id=2, created_at=T0 - timedelta(minutes=30)),
            event(JobState.QUEUED, job_id=3, created_at=T0 + timedelta(minutes=9)),
            event(JobState.IN_PROGRESS, job_id=4, created_at=T0 - timedelta(hours=1)),
            event(JobState.WAITING, job_id=5, created_at=T0 - timedelta(hours=1)),
        ]
    ).values()
    stale = queued_longer_than(
        records, now=T0 + timedelta(minutes=10), threshold=timedelta(minutes=5)
    )
    assert [r.job_id for r in stale] == [2, 1]


def test_jobs_in_progress_too_long_are_listed_for_the_reconciler():
    records = replay(
        [
            event(JobState.IN_PROGRESS, job_id=1),
            event(JobState.IN_PROGRESS, job_id=2, started_at=T0 + timedelta(hours=5)),
            event(JobState.COMPLETED, job_id=3),
        ]
    ).values()
    stale = in_progress_longer_than(
        records, now=T0 + timedelta(hours=6), threshold=timedelta(hours=3)
    )
    assert [r.job_id for r in stale] == [1]


def test_counts_by_state():
    records = replay(
        [
            event(JobState.QUEUED, job_id=1),
            event(JobState.QUEUED, job_id=2),
            event(JobState.COMPLETED, job_id=3),
        ]
    ).values()
    assert counts(records) == {
        JobState.WAITING: 0,
        JobState.QUEUED: 2,
        JobState.IN_PROGRESS: 0,
        JobState.COMPLETED: 1,
    }


# -- properties ----------------------------------------------------------------------------


def _event_pool(size: int = 400) -> list[JobEvent]:
    """Varied events for four jobs, made once (drawing every field per example is slow)."""
    rng = random.Random(20261124)

    def maybe(value):
        return value if rng.random() < 0.6 else None

    def stamp():
        return maybe(T0 + timedelta(seconds=rng.randint(0, 10_000)))

    return [
        JobEvent(
            job_id=rng.randint(1, 4),
            state=rng.choice(list(JobState)),
            run_id=rng.randint(1, 3),
            repository=rng.choice(["acme/app", "acme/lib"]),
            created_at=T0 + timedelta(seconds=rng.randint(0, 5)),
            labels=tuple(rng.sample(["self-hosted", "linux", "x64"], rng.randint(0, 3))),
            owner=maybe("acme"),
            installation_id=maybe(rng.randint(1, 3)),
            started_at=stamp(),
            completed_at=stamp(),
            runner_id=maybe(rng.randint(1, 3)),
            runner_name=maybe(rng.choice(["r1", "r2"])),
            conclusion=maybe(rng.choice(["success", "failure", "cancelled"])),
        )
        for _ in range(size)
    ]


POOL = _event_pool()
histories = st.lists(st.sampled_from(POOL), min_size=1, max_size=25)
job_1_events = st.sampled_from([e for e in POOL if e.job_id == 1])


@settings(max_examples=150, deadline=None)
@given(events=histories, data=st.data())
def test_any_order_of_the_same_events_converges_to_the_same_records(events, data):
    shuffled = data.draw(st.permutations(events))
    assert replay(shuffled) == replay(events)


@settings(max_examples=150, deadline=None)
@given(events=histories, data=st.data())
def test_duplicates_are_no_ops(events, data):
    records = replay(events)
    duplicate = data.draw(st.sampled_from(events))
    record, changed = apply(records[duplicate.job_id], duplicate)
    assert not changed and record == records[duplicate.job_id]
    doubled = events + data.draw(st.lists(st.sampled_from(events), max_size=10))
    assert replay(doubled) == records


@settings(max_examples=150, deadline=None)
@given(events=histories)
def test_state_is_the_furthest_reached_and_never_goes_back(events):
    records: dict[int, JobRecord] = {}
    for e in events:
        before = records.get(e.job_id)
        records[e.job_id], _ = apply(before, e)
        if before is not None:
            assert records[e.job_id].state.rank >= before.state.rank
    for job_id, record in records.items():
        assert record.state.rank == max(e.state.rank for e in events if e.job_id == job_id)


@settings(max_examples=150, deadline=None)
@given(a=job_1_events, b=job_1_events, c=job_1_events)
def test_merge_is_commutative_associative_and_idempotent(a, b, c):
    ra, rb, rc = (JobRecord.from_event(x) for x in (a, b, c))
    assert merge(ra, rb) == merge(rb, ra)
    assert merge(merge(ra, rb), rc) == merge(ra, merge(rb, rc))
    assert merge(ra, ra) == ra
