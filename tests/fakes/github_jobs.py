"""A FAKE GitHub that also hands jobs to FAKE runner agents (tests only).

It is the unit tests' fake (``tests/fakes/github_api.py``: App JWTs,
installation tokens, the runners API) plus what GitHub's job service does for a runner:

* ``generate-jitconfig`` answers with a JIT config the fake agent understands (base64 JSON
  naming this fake's job broker, the runner id and a per-runner token);
* ``/_broker/runners/{id}/...`` is where the fake agent (``tests/fakes/runner_agent.py``)
  reports online (refused with ``deprecated_agents``, as GitHub refuses an outdated agent),
  takes a queued job whose labels it matches, and reports the job done;
  an ephemeral runner's registration is deleted once its job is done, as GitHub does;
* ``queue_job(script)`` queues a job; each change of a job is sent as a signed
  ``workflow_job`` webhook when ``webhook_url`` is set (queued, in_progress, completed);
* every delivery, answered or not, is listed under ``/app/hook/deliveries``, and a
  redelivery (``POST /app/hook/deliveries/{id}/attempts``) sends the same payload with the
  same ``X-GitHub-Delivery`` again, a moment later, to the current ``webhook_url``.

It binds to an address runner hosts can reach (the fleet network's gateway), with a real
clock, so the product's real GitHub client talks to it unchanged.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from werkzeug import Request, Response

from fleet.core.github.signature import compute_signature
from tests.fakes.github_api import FakeGitHub


class WallClock:
    """Real epoch seconds, shaped like the fake's clock (a callable)."""

    def __call__(self) -> float:
        return time.time()


def _stamp(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass
class FakeJob:
    id: int
    run_id: int
    script: str
    labels: tuple[str, ...]
    repository: str
    status: str = "queued"  # queued | in_progress | completed
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    completed_at: datetime | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    exit_code: int | None = None
    output: str = ""

    @property
    def conclusion(self) -> str | None:
        if self.status != "completed":
            return None
        return "success" if self.exit_code == 0 else "failure"


@dataclass
class FakeGitHubWithJobs(FakeGitHub):
    """See the module docstring."""

    webhook_url: str | None = None
    webhook_secret: str | None = None
    installation_id: int = 1
    jobs: dict[int, FakeJob] = field(default_factory=dict)
    agent_tokens: dict[int, str] = field(default_factory=dict)  # runner id -> token
    jit_configs: dict[int, str] = field(default_factory=dict)  # runner id -> encoded config
    webhooks_sent: list[tuple[str, str, int]] = field(default_factory=list)  # action, id, status
    payloads: dict[str, bytes] = field(default_factory=dict)  # delivery guid -> body
    finished_runners: list[str] = field(default_factory=list)
    # GitHub deems every agent too old: an agent coming online is refused (the stand-in
    # agent then exits 7 with ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE set).
    deprecated_agents: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _job_ids: itertools.count = field(default_factory=lambda: itertools.count(5000))

    # -- test-side helpers --------------------------------------------------------------

    def queue_job(
        self,
        script: str,
        labels: tuple[str, ...] = ("self-hosted", "linux", "dind"),
        repository: str = "octo-org/app",
    ) -> FakeJob:
        with self._lock:
            job_id = next(self._job_ids)
            job = FakeJob(job_id, job_id * 10, script, labels, repository)
            self.jobs[job_id] = job
        self._send_webhook("queued", job)
        self._job_queued(job)
        return job

    def _job_queued(self, job: FakeJob) -> None:
        """Called once a job is queued and its webhook sent; subclasses route it further."""

    def runner_by_name(self, name: str) -> dict[str, Any] | None:
        for runners in self.runners.values():
            for runner in runners.values():
                if runner["name"] == name:
                    return runner
        return None

    def all_runners(self) -> list[dict[str, Any]]:
        return [r for runners in self.runners.values() for r in runners.values()]

    # -- routing --------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        path = request.path
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :]
        if path.startswith("/_broker/"):
            with self._lock:
                return self._broker(request, path[len("/_broker") :])
        with self._lock:
            return super()._handle(request)

    def _runners_route(
        self, request: Request, method: str, prefix: str, rest: str | None, body: Any
    ) -> Response:
        answer = super()._runners_route(request, method, prefix, rest, body)
        if rest == "generate-jitconfig" and answer.status_code == 201:
            data = json.loads(answer.get_data())
            runner = data["runner"]
            token = secrets.token_urlsafe(24)
            self.agent_tokens[int(runner["id"])] = token
            config = {
                "broker": self.base_url + "/_broker",
                "runner_id": runner["id"],
                "runner_name": runner["name"],
                "token": token,
            }
            data["encoded_jit_config"] = base64.b64encode(json.dumps(config).encode()).decode()
            self.jit_configs[int(runner["id"])] = data["encoded_jit_config"]
            return self._json(201, data)
        return answer

    def _find_runner(self, runner_id: int) -> dict[str, Any] | None:
        for runners in self.runners.values():
            if runner_id in runners:
                return runners[runner_id]
        return None

    def _forget_runner(self, runner_id: int) -> None:
        for runners in self.runners.values():
            runners.pop(runner_id, None)
        self.agent_tokens.pop(runner_id, None)

    def _broker(self, request: Request, path: str) -> Response:
        m = re.fullmatch(r"/runners/(\d+)/(online|job|jobs/(\d+)/done)", path)
        if not m:
            return self._json(404, {"message": "Not Found"})
        runner_id = int(m.group(1))
        runner = self._find_runner(runner_id)
        token = request.headers.get("Authorization", "").removeprefix("RemoteAuth ")
        if runner is None:
            return self._json(404, {"message": "runner was deleted"})
        if not secrets.compare_digest(token, self.agent_tokens.get(runner_id, "")):
            return self._json(401, {"message": "bad runner token"})
        action = m.group(2)
        if action == "online" and request.method == "POST" and self.deprecated_agents:
            body = {"message": "runner version too old", "typeName": "RunnerVersionDeprecated"}
            return self._json(403, body)
        if action == "online" and request.method == "POST":
            runner["status"] = "online"
            return self._json(200, {})
        if action == "job" and request.method == "GET":
            return self._assign(runner)
        if m.group(3) and request.method == "POST":
            return self._done(runner, int(m.group(3)), request.get_json(silent=True) or {})
        return self._json(405, {"message": "method not allowed"})

    def _assign(self, runner: dict[str, Any]) -> Response:
        runner["status"] = "online"
        names = {label["name"].casefold() for label in runner["labels"]} | {"self-hosted"}
        for job in self.jobs.values():
            if job.runner_id == runner["id"] and job.status == "in_progress":
                return self._json(200, {"id": job.id, "script": job.script})
        for job in self.jobs.values():
            if job.status == "queued" and {x.casefold() for x in job.labels} <= names:
                job.status = "in_progress"
                job.started_at = datetime.now(UTC)
                job.runner_id, job.runner_name = runner["id"], runner["name"]
                runner["busy"] = True
                self._send_webhook("in_progress", job)
                return self._json(200, {"id": job.id, "script": job.script})
        return Response(status=204)

    def _done(self, runner: dict[str, Any], job_id: int, body: dict[str, Any]) -> Response:
        job = self.jobs.get(job_id)
        if job is None or job.runner_id != runner["id"]:
            return self._json(404, {"message": "no such job on this runner"})
        job.status = "completed"
        job.completed_at = datetime.now(UTC)
        job.exit_code = int(body.get("exit_code", -1))
        job.output = str(body.get("output", ""))
        runner["busy"] = False
        # An ephemeral runner is removed by GitHub once its job is done.
        self.finished_runners.append(runner["name"])
        self._forget_runner(runner["id"])
        self._send_webhook("completed", job)
        return self._json(200, {})

    # -- webhooks -------------------------------------------------------------------------

    def _payload(self, action: str, job: FakeJob) -> dict[str, Any]:
        owner = job.repository.split("/")[0]
        return {
            "action": action,
            "workflow_job": {
                "id": job.id,
                "run_id": job.run_id,
                "run_attempt": 1,
                "name": "test",
                "workflow_name": "ci",
                "status": job.status,
                "conclusion": job.conclusion,
                "labels": list(job.labels),
                "runner_id": job.runner_id,
                "runner_name": job.runner_name,
                "created_at": _stamp(job.created_at),
                "started_at": _stamp(job.started_at),
                "completed_at": _stamp(job.completed_at),
            },
            "repository": {"id": 77, "full_name": job.repository, "private": True},
            "organization": {"login": owner},
            "installation": {"id": self.installation_id},
        }

    def _app_route(self, request: Request, method: str, path: str, body: Any) -> Response:
        answer = super()._app_route(request, method, path, body)
        m = re.fullmatch(r"/app/hook/deliveries/(\d+)/attempts", path)
        if m and method == "POST" and answer.status_code == 202:
            original = next(d for d in self.deliveries if d["id"] == int(m.group(1)))
            guid, action = original["guid"], original["action"]
            # GitHub answers 202 and delivers afterwards, on its own.
            threading.Thread(
                target=self._post,
                args=(action, guid, self.payloads[guid], True),
                daemon=True,
            ).start()
        return answer

    def _send_webhook(self, action: str, job: FakeJob) -> None:
        if not self.webhook_url or not self.webhook_secret:
            return
        body = json.dumps(self._payload(action, job)).encode()
        delivery = str(uuid.uuid4())
        self.payloads[delivery] = body
        self._post(action, delivery, body, False)

    def _post(self, action: str, delivery: str, body: bytes, redelivery: bool) -> None:
        if not self.webhook_url or not self.webhook_secret:
            return
        try:
            answer = requests.post(
                self.webhook_url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "workflow_job",
                    "X-GitHub-Delivery": delivery,
                    "X-Hub-Signature-256": compute_signature(self.webhook_secret, body),
                },
                timeout=10,
            )
            status = answer.status_code
        except requests.RequestException:
            status = 0  # GitHub records a failed delivery; it does not retry by itself
        with self._lock:
            self.webhooks_sent.append((action, delivery, status))
            self.add_delivery(
                delivery, status, datetime.now(UTC), action=action, redelivery=redelivery
            )
