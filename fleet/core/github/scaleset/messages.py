"""A queue message's body parsed into typed job messages. Pure: text in, models out.

The service sends ``{"messageId", "messageType": "RunnerScaleSetJobMessages", "body",
"statistics"}`` where ``body`` is a JSON *string* holding an array of job messages, each
tagged by its own ``messageType``: ``JobAvailable`` (acquire it), ``JobAssigned``,
``JobStarted`` (a runner took it) and ``JobCompleted`` (``result``; a job taken back from
the scale set shows as ``canceled``). Types this client does not know are kept, unparsed,
in ``Message.unknown`` so a new type is seen in logs, not lost or fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError

from fleet.core.github.scaleset.models import (
    MESSAGE_TYPE_JOB_MESSAGES,
    RawMessage,
    ServiceModel,
    Statistics,
)


class MessageFormatError(ValueError):
    """A message the client cannot read (not JSON, wrong type, a malformed job message)."""


class JobMessage(ServiceModel):
    message_type: str = Field(alias="messageType")
    runner_request_id: int = Field(alias="runnerRequestId")
    repository_name: str = Field("", alias="repositoryName")
    owner_name: str = Field("", alias="ownerName")
    job_id: str = Field("", alias="jobId")
    job_workflow_ref: str = Field("", alias="jobWorkflowRef")
    job_display_name: str = Field("", alias="jobDisplayName")
    workflow_run_id: int = Field(0, alias="workflowRunId")
    event_name: str = Field("", alias="eventName")
    request_labels: tuple[str, ...] = Field((), alias="requestLabels")
    queue_time: datetime | None = Field(None, alias="queueTime")
    scale_set_assign_time: datetime | None = Field(None, alias="scaleSetAssignTime")
    runner_assign_time: datetime | None = Field(None, alias="runnerAssignTime")
    finish_time: datetime | None = Field(None, alias="finishTime")


class JobAvailable(JobMessage):
    acquire_job_url: str = Field("", alias="acquireJobUrl")


class JobAssigned(JobMessage):
    pass


class JobStarted(JobMessage):
    runner_id: int = Field(0, alias="runnerId")
    runner_name: str = Field("", alias="runnerName")


class JobCompleted(JobMessage):
    result: str = ""
    runner_id: int = Field(0, alias="runnerId")
    runner_name: str = Field("", alias="runnerName")


JOB_MESSAGE_TYPES: dict[str, type[JobMessage]] = {
    "JobAvailable": JobAvailable,
    "JobAssigned": JobAssigned,
    "JobStarted": JobStarted,
    "JobCompleted": JobCompleted,
}


@dataclass(frozen=True)
class Message:
    """One queue message: its id, the statistics sent with it and its job messages by type."""

    message_id: int
    statistics: Statistics
    available: tuple[JobAvailable, ...] = ()
    assigned: tuple[JobAssigned, ...] = ()
    started: tuple[JobStarted, ...] = ()
    completed: tuple[JobCompleted, ...] = ()
    unknown: tuple[dict[str, Any], ...] = ()


def parse_message(data: Any) -> Message:
    """The decoded JSON of a 200 answer -> ``Message``; raises ``MessageFormatError``."""
    try:
        raw = RawMessage.model_validate(data)
    except ValidationError as exc:
        raise MessageFormatError(f"not a scale-set message: {exc}") from exc
    if raw.message_type != MESSAGE_TYPE_JOB_MESSAGES:
        raise MessageFormatError(
            f"message {raw.message_id} has type {raw.message_type!r}; this client reads only "
            f"{MESSAGE_TYPE_JOB_MESSAGES!r}"
        )
    try:
        items = json.loads(raw.body) if raw.body else []
    except ValueError as exc:
        raise MessageFormatError(f"message {raw.message_id}: body is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise MessageFormatError(f"message {raw.message_id}: body is not a JSON array")
    parsed: dict[str, list[Any]] = {name: [] for name in JOB_MESSAGE_TYPES}
    unknown: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("messageType") if isinstance(item, dict) else None
        model = JOB_MESSAGE_TYPES.get(str(kind))
        if model is None:
            unknown.append(item if isinstance(item, dict) else {"value": item})
            continue
        try:
            parsed[str(kind)].append(model.model_validate(item))
        except ValidationError as exc:
            raise MessageFormatError(f"message {raw.message_id}: bad {kind}: {exc}") from exc
    return Message(
        message_id=raw.message_id,
        statistics=raw.statistics or Statistics(),
        available=tuple(parsed["JobAvailable"]),
        assigned=tuple(parsed["JobAssigned"]),
        started=tuple(parsed["JobStarted"]),
        completed=tuple(parsed["JobCompleted"]),
        unknown=tuple(unknown),
    )
