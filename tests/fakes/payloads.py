"""workflow_job payloads shaped like GitHub's (trimmed), and signed deliveries of them."""

from __future__ import annotations

import copy
import json
from typing import Any

from fleet.core.github.signature import compute_signature

SECRET = "webhook-secret-for-tests"
FLEET_LABELS = ("linux", "x64", "fleet-a")


def workflow_job(
    action: str = "queued",
    *,
    job_id: int = 29679449,
    run_id: int = 2832853555,
    labels: list[str] | None = None,
    runner_name: str | None = None,
    conclusion: str | None = None,
    created_at: str = "2026-11-24T10:00:00Z",
    started_at: str | None = "2026-11-24T10:00:05Z",
    completed_at: str | None = None,
    org: str | None = "acme",
) -> dict[str, Any]:
    running = action in ("in_progress", "completed")
    payload: dict[str, Any] = {
        "action": action,
        "workflow_job": {
            "id": job_id,
            "run_id": run_id,
            "workflow_name": "CI",
            "head_branch": "main",
            "run_url": f"https://api.github.com/repos/acme/app/actions/runs/{run_id}",
            "run_attempt": 1,
            "node_id": "CR_kwDOABCD",
            "head_sha": "f8e3bc5e3b3f4e0fa1b9ecb53c7e5f2d1a4c6b7e",
            "url": f"https://api.github.com/repos/acme/app/actions/jobs/{job_id}",
            "html_url": f"https://github.com/acme/app/actions/runs/{run_id}/job/{job_id}",
            "status": "completed" if action == "completed" else action,
            "conclusion": conclusion,
            "created_at": created_at,
            "started_at": started_at,
            "completed_at": completed_at,
            "name": "test (3.11)",
            "steps": [],
            "check_run_url": f"https://api.github.com/repos/acme/app/check-runs/{job_id}",
            "labels": labels if labels is not None else ["self-hosted", "linux", "fleet-a"],
            "runner_id": 17 if running else None,
            "runner_name": runner_name if running else None,
            "runner_group_id": 42 if running else None,
            "runner_group_name": "fleet-a" if running else None,
        },
        "repository": {
            "id": 1296269,
            "full_name": "acme/app",
            "private": True,
            "owner": {"login": "acme"},
        },
        "sender": {"login": "octocat", "id": 1},
        "installation": {"id": 7, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNw=="},
    }
    if org is not None:
        payload["organization"] = {"login": org, "id": 2}
    return payload


def signed(
    payload: Any,
    *,
    event: str = "workflow_job",
    delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    secret: str = SECRET,
    body: bytes | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a delivery as GitHub sends it."""
    raw = body if body is not None else json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "123",
        "X-Hub-Signature-256": compute_signature(secret, raw),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc",
    }
    return headers, raw


def without(payload: dict[str, Any], *path: str) -> dict[str, Any]:
    """A deep copy of ``payload`` with the key at ``path`` removed."""
    out = copy.deepcopy(payload)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out
