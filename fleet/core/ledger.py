"""The job ledger: where each ``workflow_job`` stands (waiting → queued → in_progress → completed).

Pure. Storage lives in a backend (DynamoDB on AWS), which reads a record, calls ``apply`` and
writes the result back conditionally.

Webhooks arrive late, twice, or out of order (``in_progress`` before ``queued``; ``completed``
twice). So a record is a *join* of the events seen, field by field: the state is the furthest
one reached; timestamps keep the earliest value reported; runner and conclusion come only
from events that know them. Each field's merge is commutative, associative and idempotent, so
any order of the same events gives the same record, and a duplicate changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from fleet.core.jobs import WorkflowJobEvent

T = TypeVar("T")


class JobState(StrEnum):
    WAITING = "waiting"  # waiting for an environment approval: needs no runner yet
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {JobState.WAITING: 0, JobState.QUEUED: 1, JobState.IN_PROGRESS: 2, JobState.COMPLETED: 3}


@dataclass(frozen=True, kw_only=True)
class JobFacts:
    """What a ``workflow_job`` delivery can say about a job: the fields an event and a record
    share (each adds when the job was created, under its own stored name)."""

    job_id: int
    state: JobState
    run_id: int
    repository: str
    labels: tuple[str, ...] = ()
    owner: str | None = None
    installation_id: int | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    conclusion: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, kw_only=True)
class JobEvent(JobFacts):
    """What one ``workflow_job`` delivery says about one job (compact, JSON-safe)."""

    created_at: datetime

    @classmethod
    def from_webhook(cls, event: WorkflowJobEvent) -> JobEvent:
        job = event.workflow_job
        return cls(
            job_id=job.id,
            state=JobState(event.action),
            run_id=job.run_id,
            repository=event.repository.full_name,
            created_at=job.created_at,
            labels=tuple(job.labels),
            owner=event.owner,
            installation_id=event.installation.id if event.installation else None,
            started_at=job.started_at,
            completed_at=job.completed_at,
            runner_id=job.runner_id,
            runner_name=job.runner_name,
            conclusion=job.conclusion,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobEvent:
        return cls(**_from_dict(data))


@dataclass(frozen=True, kw_only=True)
class JobRecord(JobFacts):
    """The ledger's view of one job: the join of every event seen for it."""

    queued_at: datetime  # the job's created_at

    @classmethod
    def from_event(cls, event: JobEvent) -> JobRecord:
        """The record a single event implies (fields the event cannot know stay empty)."""
        running = event.state.rank >= JobState.IN_PROGRESS.rank
        done = event.state is JobState.COMPLETED
        return cls(
            job_id=event.job_id,
            state=event.state,
            run_id=event.run_id,
            repository=event.repository,
            queued_at=event.created_at,
            labels=tuple(sorted(set(event.labels))),
            owner=event.owner,
            installation_id=event.installation_id,
            # A queued payload's started_at is not a start: only a runner starts a job.
            started_at=event.started_at if running else None,
            completed_at=event.completed_at if done else None,
            runner_id=event.runner_id if running else None,
            runner_name=event.runner_name if running else None,
            conclusion=event.conclusion if done else None,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        return cls(**_from_dict(data))


def _highest(a: T | None, b: T | None) -> T | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)  # type: ignore[type-var]


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def merge(a: JobRecord, b: JobRecord) -> JobRecord:
    """Join two records of the same job (commutative, associative, idempotent)."""
    if a.job_id != b.job_id:
        raise ValueError(f"cannot merge records of different jobs: {a.job_id} and {b.job_id}")
    return JobRecord(
        job_id=a.job_id,
        state=a.state if a.state.rank >= b.state.rank else b.state,
        run_id=max(a.run_id, b.run_id),
        repository=max(a.repository, b.repository),
        queued_at=min(a.queued_at, b.queued_at),
        labels=tuple(sorted(set(a.labels) | set(b.labels))),
        owner=_highest(a.owner, b.owner),
        installation_id=_highest(a.installation_id, b.installation_id),
        started_at=_earliest(a.started_at, b.started_at),
        completed_at=_earliest(a.completed_at, b.completed_at),
        runner_id=_highest(a.runner_id, b.runner_id),
        runner_name=_highest(a.runner_name, b.runner_name),
        conclusion=_highest(a.conclusion, b.conclusion),
    )


def apply(record: JobRecord | None, event: JobEvent) -> tuple[JobRecord, bool]:
    """The record after ``event``, and whether it changed (False: duplicate or stale event)."""
    incoming = JobRecord.from_event(event)
    if record is None:
        return incoming, True
    merged = merge(record, incoming)
    return merged, merged != record


def queued_longer_than(
    records: Iterable[JobRecord], *, now: datetime, threshold: timedelta
) -> list[JobRecord]:
    """Jobs still queued ``threshold`` or more after they were created, oldest first."""
    cutoff = now - threshold
    stale = [r for r in records if r.state is JobState.QUEUED and r.queued_at <= cutoff]
    return sorted(stale, key=lambda r: (r.queued_at, r.job_id))


def in_progress_longer_than(
    records: Iterable[JobRecord], *, now: datetime, threshold: timedelta
) -> list[JobRecord]:
    """Jobs in progress for ``threshold`` or more (their ``completed`` may have been lost)."""
    cutoff = now - threshold
    stale = [
        r
        for r in records
        if r.state is JobState.IN_PROGRESS and (r.started_at or r.queued_at) <= cutoff
    ]
    return sorted(stale, key=lambda r: (r.started_at or r.queued_at, r.job_id))


def counts(records: Iterable[JobRecord]) -> dict[JobState, int]:
    """How many jobs are in each state."""
    out = dict.fromkeys(JobState, 0)
    for record in records:
        out[record.state] += 1
    return out


_DATETIME_FIELDS = ("created_at", "queued_at", "started_at", "completed_at")


# The order fields are stored in (JSON messages, the jobs file): the job's creation time
# fifth, where it was before the shared fields got one definition.
_STORED_ORDER = ("job_id", "state", "run_id", "repository", "created_at", "queued_at")


def _to_dict(obj: JobFacts) -> dict[str, Any]:
    fields = asdict(obj)
    data = {name: fields.pop(name) for name in _STORED_ORDER if name in fields}
    data.update(fields)
    data["state"] = str(obj.state)
    data["labels"] = list(obj.labels)
    for name in _DATETIME_FIELDS:
        if isinstance(data.get(name), datetime):
            data[name] = data[name].isoformat()
    return data


def _from_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["state"] = JobState(out["state"])
    out["labels"] = tuple(out.get("labels") or ())
    for name in _DATETIME_FIELDS:
        value = out.get(name)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ValueError(f"{name} must carry a timezone, got {value!r}")
            out[name] = parsed
    for name in ("job_id", "run_id", "installation_id", "runner_id"):
        if out.get(name) is not None:
            out[name] = int(out[name])  # DynamoDB hands numbers back as Decimal
    return out
