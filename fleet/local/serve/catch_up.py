"""Catching up on what webhooks missed, as the AWS reaper does: redelivery of failed
deliveries (GitHub never retries them; a redelivery keeps its delivery id, so the intake
ignores one that did arrive) and look-ups of jobs without news. Decisions here are pure;
``GitHubJobSource`` is the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from fleet.core.github.actions import WorkflowJobStatus, get_job
from fleet.core.github.app import GitHubApp
from fleet.core.github.deliveries import RedeliveryReport, redeliver_failed
from fleet.core.ledger import JobRecord, JobState
from fleet.local.registration import Registrar

# Installation tokens for job look-ups ask for this and nothing else.
JOB_PERMISSIONS = {"actions": "read"}
OPEN_STATES = (JobState.QUEUED, JobState.IN_PROGRESS)


def stale_jobs(
    last_news: Iterable[tuple[JobRecord, datetime]],
    *,
    now: datetime,
    stale_after: timedelta,
    limit: int,
) -> list[JobRecord]:
    """Pure: jobs queued or in progress not heard of for longer than ``stale_after``, longest
    silent first, at most ``limit`` of them."""
    silent = sorted(
        (
            (seen, record)
            for record, seen in last_news
            if record.state in OPEN_STATES and now - seen > stale_after
        ),
        key=lambda pair: (pair[0], pair[1].job_id),
    )
    return [record for _, record in silent[: max(0, limit)]]


@dataclass
class RedeliverySchedule:
    """Pure: when a redelivery pass is due and from when it looks (``now`` is passed in).

    The first pass is due at once and looks back ``lookback``; the next one ``every`` later,
    from ``overlap`` before the last good pass (GitHub's clock and ours differ, and a delivery
    may be listed late). A failed pass also waits ``every``, and the next one looks from where
    the failed one would have. ``every`` of zero turns redelivery off.
    """

    every: timedelta
    lookback: timedelta = timedelta(hours=1)
    overlap: timedelta = timedelta(minutes=5)
    next_at: datetime | None = None
    uncovered_from: datetime | None = None

    def due(self, now: datetime) -> datetime | None:
        """The ``since`` of a pass due at ``now``, or None if none is."""
        if self.every <= timedelta(0):
            return None
        if self.next_at is not None and now < self.next_at:
            return None
        return self.uncovered_from or now - self.lookback

    def done(self, now: datetime, since: datetime, *, ok: bool) -> None:
        """Record a pass started at ``now`` that looked from ``since``."""
        self.next_at = now + self.every
        self.uncovered_from = now - self.overlap if ok else since


class JobSource(Protocol):
    """What serve asks GitHub to catch up on missed webhooks (``GitHubJobSource``)."""

    def redeliver_failed(self, since: datetime, now: datetime) -> RedeliveryReport: ...

    def job(self, repository: str, job_id: int) -> WorkflowJobStatus: ...


class GitHubJobSource:
    """``JobSource`` through the fleet's GitHub App: the App JWT for its webhook deliveries,
    an installation token that may only read Actions for a repository's jobs."""

    def __init__(self, registrar: Registrar) -> None:
        self.client = registrar.client
        # Its own token cache: the registrar's tokens may only administer runners.
        self.app = GitHubApp(registrar.client, registrar.app.signer, permissions=JOB_PERMISSIONS)
        self._installations: dict[str, int] = {}

    def redeliver_failed(self, since: datetime, now: datetime) -> RedeliveryReport:
        return redeliver_failed(self.client, self.app.jwt_auth, since=since, now=now)

    def job(self, repository: str, job_id: int) -> WorkflowJobStatus:
        installation = self._installations.get(repository)
        if installation is None:
            installation = self.app.installation_id_for_repo(repository)
            self._installations[repository] = installation
        auth = self.app.installation_auth(installation)
        return get_job(self.client, auth, repository, job_id)
