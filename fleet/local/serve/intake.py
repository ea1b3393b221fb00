"""Jobs seen through webhooks, held for serve: a bounded job ledger in memory, deduplicated
on delivery id, snapshotted to the jobs file (``serve.jobs_file``) so a restart loses no job.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fleet.core import ledger
from fleet.core.clock import Clock, utc_now
from fleet.core.ledger import JobEvent, JobRecord, JobState
from fleet.core.webhook import QueuedDelivery

SNAPSHOT_FORMAT = 1


def _read_snapshot(data: Any) -> tuple[list[tuple[JobRecord, datetime]], list[str]]:
    """The jobs (record, last heard of) and delivery ids of an ``Intake.snapshot``."""
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"not a job intake snapshot of format {SNAPSHOT_FORMAT}")
    jobs, deliveries = data.get("jobs"), data.get("deliveries")
    if not isinstance(jobs, list) or not isinstance(deliveries, list):
        raise ValueError("a job intake snapshot holds a list of jobs and a list of deliveries")
    entries = []
    for index, entry in enumerate(jobs):
        try:
            record = JobRecord.from_dict(entry["record"])
            heard = datetime.fromisoformat(entry["heard"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"job {index} of the snapshot is not readable: {exc!r}") from exc
        if heard.tzinfo is None:
            raise ValueError(f"job {index} of the snapshot has a time without a time zone")
        entries.append((record, heard))
    if not all(isinstance(d, str) for d in deliveries):
        raise ValueError("delivery ids in a job intake snapshot are strings")
    return entries, deliveries


class Intake:
    """Jobs seen through webhooks: a job ledger in memory, deduplicated on delivery id, that
    hands a snapshot to ``persist`` on each accepted delivery and on ``save`` (serve's jobs
    file).

    Bounded: at most ``max_jobs`` jobs and ``max_deliveries`` remembered delivery ids;
    finished jobs are forgotten after ``keep_completed``, stuck ones after ``keep_open``.
    """

    def __init__(
        self,
        *,
        max_jobs: int = 10_000,
        max_deliveries: int = 10_000,
        keep_completed: timedelta = timedelta(hours=1),
        keep_open: timedelta = timedelta(hours=24),
        clock: Clock = utc_now,
    ) -> None:
        self._jobs: OrderedDict[int, tuple[JobRecord, datetime]] = OrderedDict()
        self._deliveries: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self._max_deliveries = max_deliveries
        self._keep_completed = keep_completed
        self._keep_open = keep_open
        self._clock = clock
        self.wake = threading.Event()  # set on news: the autoscaler runs a cycle early
        # Where `save` hands snapshots (serve's jobs file); None keeps the intake in memory.
        self.persist: Callable[[dict[str, Any]], None] | None = None
        self._persist_lock = threading.Lock()
        self._entries: dict[int, tuple[JobRecord, datetime, dict[str, Any]]] = {}

    def save(self) -> None:
        """Hand a snapshot to ``persist``; every writer goes through here, so snapshots are
        written in the order they were taken. Its OSError reaches the caller: `accept`'s
        (a webhook not recorded is answered 503) and the cycle's. The look-ups' changes
        (`merge`, `drop`) are saved by the save that ends each cycle."""
        if self.persist is None:
            return
        with self._persist_lock:
            self.persist(self.snapshot())

    def _trim(self) -> None:
        """Forget the oldest jobs and delivery ids beyond the bounds (lock held)."""
        while len(self._jobs) > self._max_jobs:
            self._jobs.popitem(last=False)
        while len(self._deliveries) > self._max_deliveries:
            self._deliveries.popitem(last=False)

    def accept(self, delivery: QueuedDelivery) -> bool:
        """Record one delivery's event; False if this delivery was seen before."""
        with self._lock:
            if delivery.delivery_id in self._deliveries:
                return False
            self._deliveries[delivery.delivery_id] = None
            job_id = delivery.job.job_id
            current = self._jobs.pop(job_id, None)
            record, _ = ledger.apply(current[0] if current else None, delivery.job)
            self._jobs[job_id] = (record, self._clock())
            self._trim()
        self.wake.set()
        self.save()
        return True

    def merge(self, event: JobEvent) -> bool:
        """Merge what GitHub says about a job this intake holds (``ledger.apply``: a duplicate
        or older state changes nothing); the job counts as heard from now. True if changed."""
        with self._lock:
            current = self._jobs.pop(event.job_id, None)
            if current is None:
                return False  # forgotten meanwhile: not brought back
            record, changed = ledger.apply(current[0], event)
            self._jobs[event.job_id] = (record, self._clock())
        return changed

    def drop(self, job_id: int) -> bool:
        """Forget a job GitHub no longer knows (its run was deleted). True if it was held."""
        with self._lock:
            return self._jobs.pop(job_id, None) is not None

    def snapshot(self) -> dict[str, Any]:
        """Everything this intake holds, as JSON-ready data (``restore`` reads it back).

        Each job's entry is made again only when the job changed since the last snapshot
        (records are immutable: a changed job holds another record object).
        """
        with self._lock:
            cache, self._entries = self._entries, {}
            jobs = []
            for job_id, (record, heard) in self._jobs.items():
                cached = cache.get(job_id)
                if cached is None or cached[0] is not record or cached[1] != heard:
                    entry = {"record": record.to_dict(), "heard": heard.isoformat()}
                    cached = (record, heard, entry)
                self._entries[job_id] = cached
                jobs.append(cached[2])
            return {
                "format": SNAPSHOT_FORMAT,
                "jobs": jobs,
                "deliveries": list(self._deliveries),
            }

    def restore(self, data: Any) -> int:
        """Merge a ``snapshot`` into this intake (jobs it holds already are joined with
        ``ledger.merge``); returns how many jobs the snapshot held. ValueError names what
        is wrong with data that is not a snapshot."""
        entries, deliveries = _read_snapshot(data)
        with self._lock:
            for record, heard in entries:
                current = self._jobs.pop(record.job_id, None)
                if current is not None:
                    record, heard = ledger.merge(current[0], record), max(heard, current[1])
                self._jobs[record.job_id] = (record, heard)
            for delivery_id in deliveries:
                self._deliveries[delivery_id] = None
            self._trim()
        if entries:
            self.wake.set()
        return len(entries)

    def _prune(self) -> None:
        now = self._clock()
        for job_id, (record, seen) in list(self._jobs.items()):
            keep = self._keep_completed if record.state is JobState.COMPLETED else self._keep_open
            if now - seen > keep:
                del self._jobs[job_id]

    def records(self) -> list[JobRecord]:
        with self._lock:
            self._prune()
            return [record for record, _ in self._jobs.values()]

    def last_news(self) -> list[tuple[JobRecord, datetime]]:
        """Each job and when it was last heard of (a delivery, or a look-up on GitHub)."""
        with self._lock:
            self._prune()
            return list(self._jobs.values())

    def queued(self) -> int:
        """Jobs waiting for a runner of this fleet."""
        return sum(1 for r in self.records() if r.state is JobState.QUEUED)

    def busy_runner_names(self) -> set[str]:
        """Runners with a job in progress (GitHub's busy flag lags; this does not)."""
        return {
            r.runner_name
            for r in self.records()
            if r.state is JobState.IN_PROGRESS and r.runner_name
        }
