"""A FAKE of GitHub's runner scale-set service (tests only): its state and behaviour.

The HTTP side is ``tests/fakes/scaleset_github.py`` (on the same loopback server as the fake
GitHub, which queues the jobs and hands them to the stand-in agent). What is reproduced, and
what is not, is written down in docs/scale-sets.md.

A job queued at the fake GitHub whose labels all belong to a scale set is that scale set's:
``available`` -> (acquired by a listener) ``assigned`` -> (a runner of the scale set takes
it) ``running`` -> ``completed`` (``canceled`` when taken back). Every change is an event;
events wait in the scale set's queue until a long poll collects them into one message (a
batch, ``messageType: RunnerScaleSetJobMessages``, its ``body`` a JSON string of the array).
A message stays until it is deleted and is handed out again until then, to any session of
the scale set, so a listener that restarts loses nothing.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# The service's names, as its answers were recorded in actions/actions-runner-controller#4285:
# a second session is refused as RunnerScaleSetSessionConflictException, and a call naming a
# session the service no longer holds (a DELETE of one there) gets 400 with this typeName
# and "The session identifier {id} is not valid.".
CONFLICT_TYPE = "RunnerScaleSetSessionConflictException"
SESSION_EXPIRED_TYPE = (
    "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException, "
    "GitHub.Actions.Runtime.WebApi"
)


def _stamp(moment: datetime | None) -> str:
    # Go's zero time where the service has no time yet.
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "0001-01-01T00:00:00Z"


@dataclass
class ScaleSetJob:
    """A job as a scale set sees it (``request_id`` is the service's runnerRequestId)."""

    request_id: int
    job: Any  # tests.fakes.github_jobs.FakeJob
    scale_set_id: int
    state: str = "available"  # available | assigned | running | completed
    runner_id: int = 0
    runner_name: str = ""
    result: str = ""
    assigned_at: datetime | None = None


@dataclass
class FakeSession:
    id: str
    scale_set_id: int
    owner: str
    token: str
    token_expires: float
    last_seen: float


@dataclass
class ScaleSetRecord:
    id: int
    scope: str
    name: str
    runner_group_id: int
    runner_group_name: str
    labels: list[dict[str, str]]
    created_on: datetime
    pending: list[dict[str, Any]] = field(default_factory=list)  # events not yet in a message
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)  # undeleted, by id

    def to_api(self, statistics: dict[str, int]) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "runnerGroupId": self.runner_group_id,
            "runnerGroupName": self.runner_group_name,
            "labels": self.labels,
            "RunnerSetting": {"disableUpdate": True},
            "createdOn": _stamp(self.created_on),
            "statistics": statistics,
        }


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ScaleSetState:
    """Scale sets, sessions, queues and the jobs they hold. Callers hold ``lock``."""

    lock: threading.RLock
    clock: Callable[[], float]
    runners_of: Callable[[int], list[dict[str, Any]]]  # scale set id -> its runner records
    hold_seconds: float = 0.5  # the real service holds a quiet long poll ~50 s
    queue_token_ttl: float = 3600.0
    session_expiry: float = 120.0  # a session not polled for this long is dropped
    scale_sets: dict[int, ScaleSetRecord] = field(default_factory=dict)
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    jobs: dict[int, ScaleSetJob] = field(default_factory=dict)  # by request id
    polls: list[tuple[str, int, int | None]] = field(default_factory=list)  # session, last, cap
    acquired: list[int] = field(default_factory=list)
    # What happened to sessions, in order: (event, session id, owner); events are "opened",
    # "conflict" (a 409: the id is the session that holds the scale set), "expired" (dropped
    # for want of polls) and "deleted".
    session_events: list[tuple[str, str, str]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _request_ids: itertools.count = field(default_factory=lambda: itertools.count(9000))

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    # -- scale sets -----------------------------------------------------------------------

    def create(self, scope: str, body: dict[str, Any], group_name: str) -> Reply:
        name = str(body.get("name") or "")
        group_id = int(body.get("runnerGroupId") or 0)
        if not name or not group_id:
            return _error(400, "ArgumentException", "name and runnerGroupId are required")
        if self.find(scope, group_id, name):
            return _error(409, "RunnerScaleSetExistsException", f"{name} already exists")
        labels = [
            {"name": str(x["name"]), "type": str(x.get("type") or "System")}
            for x in body.get("labels") or [{"name": name}]
        ]
        record = ScaleSetRecord(
            next(self._ids), scope, name, group_id, group_name, labels, datetime.now(UTC)
        )
        self.scale_sets[record.id] = record
        return Reply(200, record.to_api(self.statistics(record.id)))

    def find(self, scope: str, group_id: int, name: str) -> list[ScaleSetRecord]:
        return [
            s
            for s in self.scale_sets.values()
            if s.scope == scope and s.runner_group_id == group_id and s.name == name
        ]

    def delete(self, scale_set_id: int) -> Reply:
        if self.scale_sets.pop(scale_set_id, None) is None:
            return _error(404, "RunnerScaleSetNotFoundException", "no such scale set")
        for session in [s for s in self.sessions.values() if s.scale_set_id == scale_set_id]:
            del self.sessions[session.id]
        self.changed.notify_all()  # long polls on its sessions end now
        return Reply(204)

    def owner_of(self, labels: tuple[str, ...], scope: str) -> ScaleSetRecord | None:
        """The scale set a job with ``labels`` goes to: all its labels are the set's."""
        wanted = {label.casefold() for label in labels}
        for record in self.scale_sets.values():
            names = {label["name"].casefold() for label in record.labels}
            if record.scope == scope and wanted and wanted <= names:
                return record
        return None

    def statistics(self, scale_set_id: int) -> dict[str, int]:
        jobs = [j for j in self.jobs.values() if j.scale_set_id == scale_set_id]
        runners = self.runners_of(scale_set_id)
        busy = sum(1 for r in runners if r.get("busy"))
        return {
            "totalAvailableJobs": sum(j.state == "available" for j in jobs),
            "totalAcquiredJobs": sum(j.state in ("assigned", "running") for j in jobs),
            "totalAssignedJobs": sum(j.state in ("assigned", "running") for j in jobs),
            "totalRunningJobs": sum(j.state == "running" for j in jobs),
            "totalRegisteredRunners": len(runners),
            "totalBusyRunners": busy,
            "totalIdleRunners": len(runners) - busy,
        }

    # -- jobs and their events -------------------------------------------------------------

    def offer(self, job: Any, record: ScaleSetRecord) -> ScaleSetJob:
        entry = ScaleSetJob(next(self._request_ids), job, record.id)
        self.jobs[entry.request_id] = entry
        self._event(entry, "JobAvailable")
        return entry

    def job_of(self, job_id: int) -> ScaleSetJob | None:
        return next((j for j in self.jobs.values() if j.job.id == job_id), None)

    def acquire(self, session: FakeSession, ids: list[int]) -> list[int]:
        taken = []
        for request_id in ids:
            entry = self.jobs.get(int(request_id))
            if entry and entry.scale_set_id == session.scale_set_id and entry.state == "available":
                entry.state, entry.assigned_at = "assigned", datetime.now(UTC)
                taken.append(entry.request_id)
                self.acquired.append(entry.request_id)
                self._event(entry, "JobAssigned")
        return taken

    def start(self, runner: dict[str, Any]) -> ScaleSetJob | None:
        """The oldest assigned job of the runner's scale set, now running on it."""
        scale_set_id = runner["runnerScaleSetId"]
        for entry in self.jobs.values():
            if entry.scale_set_id == scale_set_id and entry.state == "assigned":
                entry.state = "running"
                entry.runner_id, entry.runner_name = runner["id"], runner["name"]
                self._event(entry, "JobStarted")
                return entry
        return None

    def finish(self, entry: ScaleSetJob, result: str) -> None:
        entry.state, entry.result = "completed", result
        self._event(entry, "JobCompleted")

    def _event(self, entry: ScaleSetJob, kind: str) -> None:
        record = self.scale_sets.get(entry.scale_set_id)
        if record is None:
            return
        job = entry.job
        event: dict[str, Any] = {
            "messageType": kind,
            "runnerRequestId": entry.request_id,
            "repositoryName": job.repository.split("/")[1],
            "ownerName": job.repository.split("/")[0],
            "jobId": str(uuid.UUID(int=job.id)),
            "jobWorkflowRef": f"{job.repository}/.github/workflows/ci.yml@refs/heads/main",
            "jobDisplayName": f"job {job.id}",
            "workflowRunId": job.run_id,
            "eventName": "push",
            "requestLabels": list(job.labels),
            "queueTime": _stamp(job.created_at),
            "scaleSetAssignTime": _stamp(entry.assigned_at),
            "runnerAssignTime": _stamp(job.started_at),
            "finishTime": _stamp(job.completed_at),
        }
        if kind == "JobAvailable":
            event["acquireJobUrl"] = f"/acquirejobs/{entry.request_id}"
        if kind in ("JobStarted", "JobCompleted"):
            event.update(runnerId=entry.runner_id, runnerName=entry.runner_name)
        if kind == "JobCompleted":
            event["result"] = entry.result
        record.pending.append(event)
        self.changed.notify_all()

    # -- sessions and the queue -------------------------------------------------------------

    def open_session(self, scale_set_id: int, owner: str) -> Reply:
        now = self.clock()
        for session in list(self.sessions.values()):
            if session.scale_set_id != scale_set_id:
                continue
            if now - session.last_seen < self.session_expiry:
                self.session_events.append(("conflict", session.id, owner))
                return _error(
                    409,
                    CONFLICT_TYPE,
                    f"The scale set already has an active session for owner {session.owner}.",
                )
            del self.sessions[session.id]  # expired: its holder stopped polling
            self.changed.notify_all()
            self.session_events.append(("expired", session.id, session.owner))
        session = FakeSession(str(uuid.uuid4()), scale_set_id, owner, "", 0.0, now)
        self._new_token(session)
        self.sessions[session.id] = session
        self.session_events.append(("opened", session.id, owner))
        return Reply(200, self.session_body(session))

    def _new_token(self, session: FakeSession) -> None:
        session.token = secrets.token_urlsafe(24)
        session.token_expires = self.clock() + self.queue_token_ttl

    def close_session(self, session: FakeSession) -> Reply:
        """``DELETE``: the session ends, and so does a long poll held on it, at once."""
        del self.sessions[session.id]
        self.session_events.append(("deleted", session.id, session.owner))
        self.changed.notify_all()
        return Reply(204)

    def refresh(self, session: FakeSession) -> Reply:
        self._new_token(session)
        session.last_seen = self.clock()
        return Reply(200, self.session_body(session))

    def session_body(self, session: FakeSession) -> dict[str, Any]:
        record = self.scale_sets[session.scale_set_id]
        stats = self.statistics(record.id)
        return {
            "sessionId": session.id,
            "ownerName": session.owner,
            "runnerScaleSet": record.to_api(stats),
            "messageQueueUrl": f"/_queue/sessions/{session.id}/messages",  # made absolute later
            "messageQueueAccessToken": session.token,
            "statistics": stats,
        }

    def queue_session(self, session_id: str, token: str | None) -> FakeSession | None:
        """The session whose queue token this is, if valid and unexpired."""
        session = self.sessions.get(session_id)
        if session is None or not token or not secrets.compare_digest(token, session.token):
            return None
        return session if session.token_expires > self.clock() else None

    def expire_queue_tokens(self) -> None:
        for session in self.sessions.values():
            session.token_expires = self.clock() - 1

    def poll(self, session: FakeSession, last_message_id: int, capacity: int | None) -> Reply:
        """The oldest undeleted message, or one made of waiting events, or 202 after the hold."""
        self.polls.append((session.id, last_message_id, capacity))
        deadline = time.monotonic() + self.hold_seconds
        while True:
            session.last_seen = self.clock()
            record = self.scale_sets.get(session.scale_set_id)
            if record is None or session.id not in self.sessions:
                return session_gone(session.id)  # deleted while this poll was held
            if not record.messages and record.pending:
                message_id = next(self._message_ids)
                record.messages[message_id] = {
                    "messageId": message_id,
                    "messageType": "RunnerScaleSetJobMessages",
                    "body": json.dumps(record.pending),
                }
                record.pending = []
            if record.messages:
                message = dict(record.messages[min(record.messages)])
                message["statistics"] = self.statistics(record.id)
                return Reply(200, message)
            left = deadline - time.monotonic()
            if left <= 0:
                return Reply(202)
            self.changed.wait(left)

    def delete_message(self, session: FakeSession, message_id: int) -> Reply:
        record = self.scale_sets.get(session.scale_set_id)
        if record is None or record.messages.pop(message_id, None) is None:
            return _error(404, "MessageNotFoundException", f"no message {message_id}")
        return Reply(204)


def session_gone(session_id: str) -> Reply:
    """The answer to a call naming a session the service no longer holds."""
    return _error(400, SESSION_EXPIRED_TYPE, f"The session identifier {session_id} is not valid.")


def _error(status: int, type_name: str, message: str) -> Reply:
    return Reply(
        status,
        {
            "$id": "1",
            "innerException": None,
            "message": message,
            "typeName": type_name,
            "typeKey": type_name.removesuffix("Exception"),
            "errorCode": 0,
            "eventId": 3000,
        },
    )
