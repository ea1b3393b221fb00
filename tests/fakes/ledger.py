"""The job ledger folded over a list of events, as a reference for tests (the product applies
events one at a time: ``fleet.core.ledger.apply``)."""

from __future__ import annotations

from collections.abc import Iterable

from fleet.core.ledger import JobEvent, JobRecord, apply


def replay(events: Iterable[JobEvent]) -> dict[int, JobRecord]:
    """Records for every job in ``events``, in whatever order they came."""
    records: dict[int, JobRecord] = {}
    for event in events:
        records[event.job_id], _ = apply(records.get(event.job_id), event)
    return records
