"""The ``workflow_job`` webhook payload, validated, and GitHub's label matching.

Only the fields the control plane uses are modelled; everything else in GitHub's (large)
payload is ignored. Label matching follows GitHub: a job goes to a self-hosted runner only if
every label in the job's ``runs-on`` is one of the runner's labels, compared case-insensitively;
every self-hosted runner carries ``self-hosted``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

SELF_HOSTED = "self-hosted"

JobAction = Literal["queued", "in_progress", "completed", "waiting"]
JOB_ACTIONS: frozenset[str] = frozenset(JobAction.__args__)
PositiveId = Annotated[int, Field(gt=0, strict=False)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
FullName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Repository(_Model):
    id: PositiveId | None = None
    full_name: FullName
    private: bool | None = None

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]


class Organization(_Model):
    login: Annotated[str, StringConstraints(min_length=1, max_length=39)]


class Installation(_Model):
    id: PositiveId


class WorkflowJob(_Model):
    id: PositiveId
    run_id: PositiveId
    run_attempt: PositiveId = 1
    name: str | None = None
    workflow_name: str | None = None
    # GitHub adds statuses and conclusions over time; refusing unknown ones would turn every
    # such delivery into a failure that the reconciler redelivers forever.
    status: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    conclusion: Annotated[str, StringConstraints(max_length=64)] | None = None
    labels: Annotated[list[Label], Field(max_length=100)]
    runner_id: PositiveId | None = None
    runner_name: str | None = None
    runner_group_id: int | None = None
    runner_group_name: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    html_url: str | None = None

    @field_validator("created_at", "started_at", "completed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must carry a timezone (GitHub sends UTC, '...Z')")
        return value


class WorkflowJobEvent(_Model):
    """A ``workflow_job`` delivery."""

    action: JobAction
    workflow_job: WorkflowJob
    repository: Repository
    organization: Organization | None = None
    installation: Installation | None = None  # absent on plain repository/org webhooks

    @property
    def owner(self) -> str:
        """The organization (or user) that owns the repository."""
        return self.organization.login if self.organization else self.repository.owner


def parse_workflow_job_event(body: bytes | str | dict[str, Any]) -> WorkflowJobEvent:
    """Validate a ``workflow_job`` payload; raises ``ValueError`` (incl. pydantic's) if bad."""
    data = json.loads(body) if isinstance(body, bytes | str) else body
    if not isinstance(data, dict):
        raise ValueError("workflow_job payload must be a JSON object")
    return WorkflowJobEvent.model_validate(data)


def normalize_labels(labels: Iterable[str]) -> frozenset[str]:
    """Labels as GitHub compares them: stripped, case-folded, empty ones dropped."""
    return frozenset(label.strip().casefold() for label in labels if label and label.strip())


def labels_match(job_labels: Iterable[str], runner_labels: Iterable[str]) -> bool:
    """True if a runner with ``runner_labels`` can take a job with ``job_labels``.

    Every job label must be a runner label (case-insensitive); ``self-hosted`` is implied on
    the runner. A job without labels is not a self-hosted job and matches nothing.
    """
    wanted = normalize_labels(job_labels)
    if not wanted:
        return False
    return wanted <= normalize_labels(runner_labels) | {SELF_HOSTED}
