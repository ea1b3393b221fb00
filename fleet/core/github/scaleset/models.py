"""The scale-set service's requests and answers, in its field names (camelCase, and the one
``RunnerSetting`` in PascalCase). Unknown fields are ignored: the service adds fields freely.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

API_VERSION = "6.0-preview"
MESSAGE_TYPE_JOB_MESSAGES = "RunnerScaleSetJobMessages"


class ServiceModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The JSON body the service expects (aliases, unset optional fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Statistics(ServiceModel):
    """A scale set's counters as the service reports them with every session and message."""

    total_available_jobs: int = Field(0, alias="totalAvailableJobs")
    total_acquired_jobs: int = Field(0, alias="totalAcquiredJobs")
    total_assigned_jobs: int = Field(0, alias="totalAssignedJobs")
    total_running_jobs: int = Field(0, alias="totalRunningJobs")
    total_registered_runners: int = Field(0, alias="totalRegisteredRunners")
    total_busy_runners: int = Field(0, alias="totalBusyRunners")
    total_idle_runners: int = Field(0, alias="totalIdleRunners")


class Label(ServiceModel):
    name: str
    type: str = "System"


class RunnerSetting(ServiceModel):
    disable_update: bool = Field(False, alias="disableUpdate")


class RunnerGroup(ServiceModel):
    id: int
    name: str
    size: int = 0
    is_default: bool = Field(False, alias="isDefaultGroup")


class ScaleSet(ServiceModel):
    """A runner scale set. ``id`` is None only in a create request."""

    id: int | None = None
    name: str
    runner_group_id: int | None = Field(None, alias="runnerGroupId")
    runner_group_name: str | None = Field(None, alias="runnerGroupName")
    labels: tuple[Label, ...] = ()
    runner_setting: RunnerSetting = Field(
        default_factory=lambda: RunnerSetting(disableUpdate=True), alias="RunnerSetting"
    )
    created_on: datetime | None = Field(None, alias="createdOn")
    runner_jit_config_url: str | None = Field(None, alias="runnerJitConfigUrl")
    statistics: Statistics | None = None

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)


class RunnerReference(ServiceModel):
    id: int
    name: str
    runner_scale_set_id: int | None = Field(None, alias="runnerScaleSetId")


class JitRunnerSetting(ServiceModel):
    name: str
    work_folder: str = Field("_work", alias="workFolder")


class JitConfig(ServiceModel):
    """A scale-set runner's just-in-time config: a one-use secret, never shown."""

    runner: RunnerReference
    encoded_jit_config: str = Field(alias="encodedJITConfig", repr=False)


class Session(ServiceModel):
    """A message session: its queue and the token for it (secret, never shown)."""

    session_id: str = Field(alias="sessionId")
    owner_name: str | None = Field(None, alias="ownerName")
    message_queue_url: str = Field(alias="messageQueueUrl")
    message_queue_access_token: str = Field(alias="messageQueueAccessToken", repr=False)
    statistics: Statistics = Field(default_factory=Statistics)

    @field_validator("session_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return str(value)


class AcquiredJobs(ServiceModel):
    count: int = 0
    value: tuple[int, ...] = ()


class RawMessage(ServiceModel):
    """A queue message as sent: ``body`` is a JSON string holding an array of job messages."""

    message_id: int = Field(alias="messageId")
    message_type: str = Field(alias="messageType")
    body: str = ""
    statistics: Statistics | None = None


class ListOf(ServiceModel):
    """The service's list envelope: ``{"count": n, "value": [...]}``."""

    count: int = 0
    value: tuple[dict[str, Any], ...] = ()
