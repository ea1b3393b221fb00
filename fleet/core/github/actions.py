"""Workflow jobs and runner-group settings through the REST API, for the reconciler.

The reconciler asks GitHub where a job really stands when the ledger has waited too long for
its next event (a lost ``completed`` leaves a job "queued" or "in progress" forever), re-runs a
job whose runner was taken away (spot interruption), and keeps the runner group closed to
public repositories unless the stack says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleet.core.github.client import GitHubClient, TokenSource
from fleet.core.ledger import JobEvent, JobState

# GitHub's job statuses that mean "not started yet" (besides "queued" and "waiting").


@dataclass(frozen=True)
class WorkflowJobStatus:
    """A job as GET /repos/{owner}/{repo}/actions/jobs/{job_id} reports it."""

    job_id: int
    run_id: int
    repository: str
    status: str
    conclusion: str | None
    created_at: datetime
    labels: tuple[str, ...] = ()
    started_at: datetime | None = None
    completed_at: datetime | None = None
    runner_id: int | None = None
    runner_name: str | None = None

    @property
    def state(self) -> JobState:
        if self.status == "completed":
            return JobState.COMPLETED
        if self.status == "in_progress":
            return JobState.IN_PROGRESS
        if self.status == "waiting":
            return JobState.WAITING
        return JobState.QUEUED

    def to_event(self) -> JobEvent:
        """The ledger event this status implies (merging it converges the ledger)."""
        return JobEvent(
            job_id=self.job_id,
            state=self.state,
            run_id=self.run_id,
            repository=self.repository,
            created_at=self.created_at,
            labels=self.labels,
            started_at=self.started_at,
            completed_at=self.completed_at,
            runner_id=self.runner_id,
            runner_name=self.runner_name,
            conclusion=self.conclusion,
        )


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _repo_path(repository: str) -> str:
    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"repository must be 'owner/name', got {repository!r}")
    return f"/repos/{owner}/{name}"


def get_job(
    client: GitHubClient, auth: TokenSource, repository: str, job_id: int
) -> WorkflowJobStatus:
    """Where job ``job_id`` of ``repository`` stands now."""
    data = client.get_json(f"{_repo_path(repository)}/actions/jobs/{int(job_id)}", auth=auth)
    created = _time(data.get("created_at"))
    if created is None:
        raise ValueError(f"job {job_id} of {repository}: answer has no created_at")
    return WorkflowJobStatus(
        job_id=int(data["id"]),
        run_id=int(data["run_id"]),
        repository=repository,
        status=str(data.get("status") or "queued"),
        conclusion=data.get("conclusion"),
        created_at=created,
        labels=tuple(str(label) for label in data.get("labels") or ()),
        started_at=_time(data.get("started_at")),
        completed_at=_time(data.get("completed_at")),
        runner_id=data.get("runner_id") or None,
        runner_name=data.get("runner_name") or None,
    )


def rerun_job(client: GitHubClient, auth: TokenSource, repository: str, job_id: int) -> None:
    """Re-run one job of a completed workflow run (POST .../actions/jobs/{job_id}/rerun)."""
    client.request("POST", f"{_repo_path(repository)}/actions/jobs/{int(job_id)}/rerun", auth=auth)


def set_runner_group_public_access(
    client: GitHubClient, auth: TokenSource, org: str, group_id: int, allowed: bool
) -> None:
    """Set whether public repositories may use an organization's runner group."""
    client.request(
        "PATCH",
        f"/orgs/{org}/actions/runner-groups/{int(group_id)}",
        auth=auth,
        json={"allows_public_repositories": bool(allowed)},
    )
