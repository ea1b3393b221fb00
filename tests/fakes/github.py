"""The fake GitHub of the unit tests, grown the few endpoints the control plane's reconciler
uses: workflow jobs (get, re-run), runner-group settings, and redeliveries that can be played
back to the webhook.

The base fake is tests/fakes/github_api.py (the unit tests use it as it is); this module only
adds to it, as tests/fakes/github_jobs.py does for the fake runner agents.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug import Request, Response

from tests.fakes.github_api import FakeClock, FakeGitHub, app_key_pair

__all__ = ["FakeClock", "FakeGitHub", "FakeGitHubActions", "Job", "app_key_pair"]


@dataclass
class Job:
    """A workflow job as the fake keeps it."""

    id: int
    run_id: int
    repository: str
    labels: tuple[str, ...]
    created_at: datetime
    status: str = "queued"
    conclusion: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    run_attempt: int = 1

    def to_api(self) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

        return {
            "id": self.id,
            "run_id": self.run_id,
            "run_attempt": self.run_attempt,
            "status": self.status,
            "conclusion": self.conclusion,
            "created_at": stamp(self.created_at),
            "started_at": stamp(self.started_at),
            "completed_at": stamp(self.completed_at),
            "name": f"job {self.id}",
            "workflow_name": "CI",
            "labels": list(self.labels),
            "runner_id": self.runner_id,
            "runner_name": self.runner_name,
            "runner_group_id": 42 if self.runner_id else None,
            "runner_group_name": "runner-fleet" if self.runner_id else None,
            "html_url": f"https://github.com/{self.repository}/actions/runs/{self.run_id}",
        }


@dataclass
class FakeGitHubActions(FakeGitHub):
    """``FakeGitHub`` plus jobs, re-runs, group updates and queued redeliveries."""

    jobs: dict[int, Job] = field(default_factory=dict)
    reruns: list[int] = field(default_factory=list)
    group_updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    pending_redeliveries: list[dict[str, Any]] = field(default_factory=list)
    # Called with (method, path) before each request is answered: lets a test change the
    # world at an exact moment (a job landing on a runner as it is being deregistered).
    hooks: list[Callable[[str, str], None]] = field(default_factory=list)
    _job_ids: itertools.count = field(default_factory=lambda: itertools.count(50_000))

    def new_job(self, repository: str, labels: tuple[str, ...], created_at: datetime) -> Job:
        job_id = next(self._job_ids)
        job = Job(job_id, job_id * 10, repository, labels, created_at)
        self.jobs[job_id] = job
        return job

    def _route(self, request: Request, path: str, body: Any) -> Response:
        for hook in list(self.hooks):
            hook(request.method, path)
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/jobs/(\d+)(/rerun)?", path)
        if m:
            if self._installation_for(request) is None:
                return self._json(401, {"message": "Bad credentials"})
            job = self.jobs.get(int(m.group(2)))
            if job is None or job.repository != m.group(1):
                return self._json(404, {"message": "Not Found"})
            if m.group(3) and request.method == "POST":
                if job.status != "completed":
                    return self._json(403, {"message": "This job cannot be re-run yet"})
                self.reruns.append(job.id)
                return self._json(201, {})
            if request.method == "GET":
                return self._json(200, job.to_api())
        m = re.fullmatch(r"/orgs/([^/]+)/actions/runner-groups/(\d+)", path)
        if m and request.method == "PATCH":
            if self._installation_for(request) is None:
                return self._json(401, {"message": "Bad credentials"})
            group_id = int(m.group(2))
            for group in self.runner_groups.get(m.group(1), []):
                if group["id"] == group_id:
                    group.update(body or {})
                    self.group_updates.append((group_id, dict(body or {})))
                    return self._json(200, group)
            return self._json(404, {"message": "Not Found"})
        return super()._route(request, path, body)

    def _app_route(self, request: Request, method: str, path: str, body: Any) -> Response:
        response = super()._app_route(request, method, path, body)
        m = re.fullmatch(r"/app/hook/deliveries/(\d+)/attempts", path)
        if m and method == "POST" and response.status_code == 202:
            delivery = next(d for d in self.deliveries if d["id"] == int(m.group(1)))
            self.pending_redeliveries.append(delivery)
        return response
