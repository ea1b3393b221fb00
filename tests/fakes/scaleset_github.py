"""The FAKE GitHub (tests only) with runner scale sets: ``FakeGitHubWithJobs`` (jobs, the job
broker the stand-in agent polls, the REST runners API) plus

* ``POST {scope}/actions/runners/registration-token`` (installation token) and
  ``POST /actions/runner-registration`` (``RemoteAuth``): the Actions service URL
  (``{base}/_services/pipelines/``) and an admin JWT with ``exp`` (``admin_token_ttl``);
* the service (``tests/fakes/scaleset_service.py``): runner groups, scale sets, JIT configs
  for scale-set runners, runners, sessions, acquire;
* the message queue, ``{base}/_queue/sessions/{id}/messages``: the long poll (``hold_seconds``),
  held without blocking any other request.

Jobs queued with ``queue_job`` whose labels belong to a scale set go to it; a runner of the
scale set (JIT config from ``generatejitconfig``, run by the stand-in agent) takes only its
scale set's assigned jobs, and other runners never take them. ``fail_next`` (from the base
fake) injects 5xx bursts and rate limits on any path, the service's and the queue's included.
Serve it on a threaded server (``HTTPServer(threaded=True)``): a long poll holds a thread.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from werkzeug import Request, Response

from tests.fakes.github_api import RecordedRequest
from tests.fakes.github_jobs import FakeGitHubWithJobs, FakeJob
from tests.fakes.scaleset_routes import route
from tests.fakes.scaleset_service import Reply, ScaleSetState, _error

SERVICE = "/_services/pipelines"
REGISTRATION_TOKEN = re.compile(
    r"/(?:orgs/([^/]+)|repos/([^/]+/[^/]+))/actions/runners/registration-token"
)
QUEUE = re.compile(r"/_queue/sessions/([0-9a-f-]+)/messages(?:/(\d+))?")
_ADMIN_KEY = "fake-actions-service-signing-key-0123456789"


@dataclass
class FakeGitHubWithScaleSets(FakeGitHubWithJobs):
    """See the module docstring."""

    admin_token_ttl: float = 3600.0
    registration_token_ttl: float = 3600.0
    registration_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    admin_tokens_issued: int = 0
    scalesets: ScaleSetState = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.scalesets = ScaleSetState(lock=self._lock, clock=self.clock, runners_of=self._members)

    @property
    def service_url(self) -> str:
        return self.base_url + SERVICE + "/"

    def config_url(self, scope: str) -> str:
        return f"{self.base_url}/{scope}"

    def _members(self, scale_set_id: int) -> list[dict[str, Any]]:
        return [r for r in self.all_runners() if r.get("runnerScaleSetId") == scale_set_id]

    # -- test-side helpers --------------------------------------------------------------

    def _job_queued(self, job: FakeJob) -> None:
        """A job queued with labels a scale set has goes to that scale set."""
        with self._lock:
            self._route_to_scale_set(job)

    def cancel_job(self, job: FakeJob) -> None:
        """GitHub takes the job back (cancelled, or given to another runner): ``canceled``."""
        with self._lock:
            entry = self.scalesets.job_of(job.id)
            if entry is not None and entry.state != "completed":
                job.status, job.completed_at = "completed", datetime.now(UTC)
                self.scalesets.finish(entry, "canceled")

    def _route_to_scale_set(self, job: FakeJob) -> None:
        if self.scalesets.job_of(job.id) is not None or job.status != "queued":
            return
        owner = job.repository.split("/")[0]
        for scope in (owner, job.repository):
            record = self.scalesets.owner_of(job.labels, scope)
            if record is not None:
                self.scalesets.offer(job, record)
                return

    # -- routing --------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        path = request.path
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :]
        if not path.startswith((SERVICE + "/", "/_queue/", "/actions/runner-registration")):
            if path.endswith("/actions/runners/registration-token"):
                with self._lock:
                    return self._registration_token(request, path)
            return super()._handle(request)
        with self._lock:  # a long poll waits on a condition of this lock, releasing it
            self.requests.append(self._record(request, path))
            if (fault := self._fault(path)) is not None:
                return fault
            if path == "/actions/runner-registration":
                return self._runner_registration(request)
            if path.startswith("/_queue/"):
                return self._reply(self._queue(request, path))
            scope = self._admin_scope(request)
            if scope is None and not path.endswith("/acquirejobs"):
                return self._json(401, {"message": "admin token missing, invalid or expired"})
            return self._reply(route(self, request, path[len(SERVICE) :], scope or ""))

    def _fault(self, path: str) -> Response | None:
        """The answer of the next fault set with ``fail_next`` for ``path``, if any."""
        for fault in self.faults:
            if fault.times > 0 and path.startswith(fault.path_prefix):
                fault.times -= 1
                return self._json(fault.status, fault.body, fault.headers)
        return None

    def _record(self, request: Request, path: str) -> RecordedRequest:
        body = request.get_json(silent=True) if request.data else None
        args, headers = dict(request.args), dict(request.headers)
        return RecordedRequest(request.method, path, args, headers, body, self.clock())

    def _reply(self, reply: Reply) -> Response:
        if reply.body is None:
            return Response(status=reply.status, headers=reply.headers)
        return self._json(reply.status, reply.body, reply.headers)

    # -- registration ---------------------------------------------------------------------

    def _registration_token(self, request: Request, path: str) -> Response:
        m = REGISTRATION_TOKEN.fullmatch(path)
        if request.method != "POST" or not m:
            return self._json(404, {"message": "Not Found"})
        self.requests.append(self._record(request, path))
        if (fault := self._fault(path)) is not None:
            return fault
        if self._installation_for(request) is None:
            return self._json(401, {"message": "Bad credentials"})
        token = "AREG" + secrets.token_hex(12).upper()
        expires = self.clock() + self.registration_token_ttl
        self.registration_tokens[token] = (m.group(1) or m.group(2), expires)
        stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._json(201, {"token": token, "expires_at": stamp})

    def _runner_registration(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("RemoteAuth ")
        scope, expires = self.registration_tokens.get(token, ("", 0.0))
        if request.method != "POST" or not scope or expires <= self.clock():
            return self._json(401, {"message": "registration token missing, invalid or expired"})
        body = request.get_json(silent=True) or {}
        if body.get("url") != self.config_url(scope) or body.get("runner_event") != "register":
            return self._json(
                404, {"message": f"url must be {self.config_url(scope)!r}, runner_event register"}
            )
        now = self.clock()
        claims = {"iat": int(now), "exp": int(now + self.admin_token_ttl), "scope": scope}
        self.admin_tokens_issued += 1
        admin = jwt.encode(claims, _ADMIN_KEY, algorithm="HS256")
        return self._json(
            201, {"url": self.service_url, "token": admin, "token_schema": "OAuthAccessToken"}
        )

    def _admin_scope(self, request: Request) -> str | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            claims = jwt.decode(
                token,
                _ADMIN_KEY,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return None
        return str(claims["scope"]) if claims.get("exp", 0) > self.clock() else None

    # -- the queue --------------------------------------------------------------------------

    def _queue(self, request: Request, path: str) -> Reply:
        m = QUEUE.fullmatch(path)
        if not m:
            return Reply(404, {"message": "Not Found"})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        session = self.scalesets.queue_session(m.group(1), token)
        if session is None:
            return Reply(401, {"message": "queue token missing, invalid or expired"})
        if m.group(2) and request.method == "DELETE":
            return self.scalesets.delete_message(session, int(m.group(2)))
        if m.group(2) or request.method != "GET":
            return Reply(405, {"message": "method not allowed"})
        if "api-version=6.0-preview" not in request.headers.get("Accept", ""):
            return _error(400, "VssInvalidPreviewVersionException", "Accept needs api-version")
        capacity = request.headers.get("X-ScaleSetMaxCapacity")
        last = int(request.args.get("lastMessageId", "0") or 0)
        return self.scalesets.poll(session, last, int(capacity) if capacity else None)

    # -- runners of scale sets and the broker -------------------------------------------------

    def issue_jit(self, scope: str, record: Any, name: str) -> dict[str, Any]:
        prefix = f"/repos/{scope}" if "/" in scope else f"/orgs/{scope}"
        labels = tuple(label["name"] for label in record.labels)
        runner_id = self.add_runner(
            prefix, name, status="offline", labels=labels, group_id=record.runner_group_id
        )
        runner = self.runners[prefix][runner_id]
        runner["runnerScaleSetId"] = record.id
        token = secrets.token_urlsafe(24)
        self.agent_tokens[runner_id] = token
        config = {
            "broker": self.base_url + "/_broker",
            "runner_id": runner_id,
            "runner_name": name,
            "token": token,
        }
        encoded = base64.b64encode(json.dumps(config).encode()).decode()
        self.jit_configs[runner_id] = encoded
        ref = {"id": runner_id, "name": name, "runnerScaleSetId": record.id}
        return {"runner": ref, "encodedJITConfig": encoded}

    def _assign(self, runner: dict[str, Any]) -> Response:
        if "runnerScaleSetId" not in runner:
            return self._assign_outside_scale_sets(runner)
        runner["status"] = "online"
        for job in self.jobs.values():
            if job.runner_id == runner["id"] and job.status == "in_progress":
                return self._json(200, {"id": job.id, "script": job.script})
        entry = self.scalesets.start(runner)
        if entry is None:
            return Response(status=204)
        job = entry.job
        job.status, job.started_at = "in_progress", datetime.now(UTC)
        job.runner_id, job.runner_name = runner["id"], runner["name"]
        runner["busy"] = True
        return self._json(200, {"id": job.id, "script": job.script})

    def _assign_outside_scale_sets(self, runner: dict[str, Any]) -> Response:
        owned = {entry.job.id for entry in self.scalesets.jobs.values()}
        hidden = {i: j for i, j in self.jobs.items() if i in owned}
        for job_id in hidden:
            del self.jobs[job_id]
        try:
            return super()._assign(runner)
        finally:
            self.jobs.update(hidden)

    def _done(self, runner: dict[str, Any], job_id: int, body: dict[str, Any]) -> Response:
        answer = super()._done(runner, job_id, body)
        entry = self.scalesets.job_of(job_id)
        if answer.status_code == 200 and entry is not None and entry.state == "running":
            self.scalesets.finish(entry, "succeeded" if entry.job.exit_code == 0 else "failed")
        return answer
