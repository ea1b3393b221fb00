"""The FAKE scale-set service's admin routes (tests only), under ``{service}/_apis/...``.

``route(fake, request, path, scope)`` answers one call of an admin-token holder for ``scope``
(an organization or ``owner/repo``); ``acquirejobs`` takes the session's queue token
instead. Every call must carry ``api-version=6.0-preview``, as the real service requires.
State lives in ``tests/fakes/scaleset_service.py``; the HTTP side in ``scaleset_github.py``.
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug import Request

from tests.fakes.scaleset_service import Reply, _error, session_gone

SCALE_SETS = "/_apis/runtime/runnerscalesets"
AGENTS = "/_apis/distributedtask/pools/0/agents"
DEFAULT_GROUP = {"id": 1, "name": "Default", "size": 0, "isDefaultGroup": True}


def route(fake: Any, request: Request, path: str, scope: str) -> Reply:
    if request.args.get("api-version") != "6.0-preview":
        return _error(400, "VssInvalidPreviewVersionException", "api-version=6.0-preview needed")
    body = request.get_json(silent=True) if request.data else None
    method = request.method
    if path == "/_apis/runtime/runnergroups/" and method == "GET":
        return _groups(fake, scope, request.args.get("groupName", ""))
    if path == SCALE_SETS:
        return _scale_sets(fake, request, scope, body)
    m = re.fullmatch(SCALE_SETS + r"/(\d+)(?:/(\w+)(?:/([0-9a-f-]+))?)?", path)
    if m:
        record = fake.scalesets.scale_sets.get(int(m.group(1)))
        if m.group(2) == "acquirejobs" and method == "POST":
            return _acquire(fake, request, int(m.group(1)), body)
        if record is None or record.scope != scope:
            return _error(404, "RunnerScaleSetNotFoundException", "no such scale set")
        return _one_scale_set(fake, request, record, m.group(2), m.group(3), body)
    if path == AGENTS and method == "GET":
        found = [_ref(r) for r in fake.all_runners() if r["name"] == request.args.get("agentName")]
        return Reply(200, {"count": len(found), "value": found})
    m = re.fullmatch(AGENTS + r"/(\d+)", path)
    if m:
        return _agent(fake, method, int(m.group(1)))
    return Reply(404, {"message": f"no route {method} {path}"})


def _ref(runner: dict[str, Any]) -> dict[str, Any]:
    scale_set_id = runner.get("runnerScaleSetId", 0)
    return {"id": runner["id"], "name": runner["name"], "runnerScaleSetId": scale_set_id}


def _groups(fake: Any, scope: str, name: str) -> Reply:
    groups = [DEFAULT_GROUP] + [
        {"id": g["id"], "name": g["name"], "size": 0, "isDefaultGroup": False}
        for g in (fake.runner_groups.get(scope, []) if "/" not in scope else [])
    ]
    found = [g for g in groups if g["name"].casefold() == name.casefold()]
    return Reply(200, {"count": len(found), "value": found})


def _group_name(fake: Any, scope: str, group_id: int) -> str | None:
    groups = [DEFAULT_GROUP, *fake.runner_groups.get(scope, [])]
    return next((g["name"] for g in groups if g["id"] == group_id), None)


def _scale_sets(fake: Any, request: Request, scope: str, body: Any) -> Reply:
    state = fake.scalesets
    if request.method == "GET":
        group_id = int(request.args.get("runnerGroupId", "0") or 0)
        found = state.find(scope, group_id, request.args.get("name", ""))
        value = [r.to_api(state.statistics(r.id)) for r in found]
        return Reply(200, {"count": len(value), "value": value})
    if request.method != "POST" or not isinstance(body, dict):
        return _error(400, "ArgumentException", "POST a scale set object")
    group_name = _group_name(fake, scope, int(body.get("runnerGroupId") or 0))
    if group_name is None:
        return _error(404, "RunnerGroupNotFoundException", "no such runner group")
    reply = state.create(scope, body, group_name)
    if reply.status == 200:
        record = state.scale_sets[reply.body["id"]]
        for job in list(fake.jobs.values()):
            if job.status == "queued" and state.owner_of(job.labels, scope) is record:
                fake._route_to_scale_set(job)
    return reply


def _one_scale_set(
    fake: Any, request: Request, record: Any, action: str | None, session_id: str | None, body: Any
) -> Reply:
    state, method = fake.scalesets, request.method
    if action is None:
        if method == "GET":
            return Reply(200, record.to_api(state.statistics(record.id)))
        if method == "DELETE":
            return state.delete(record.id)
        if method == "PATCH" and isinstance(body, dict):
            if body.get("labels"):
                record.labels = [
                    {"name": str(x["name"]), "type": str(x.get("type") or "System")}
                    for x in body["labels"]
                ]
            return Reply(200, record.to_api(state.statistics(record.id)))
    if action == "generatejitconfig" and method == "POST" and isinstance(body, dict):
        name = str(body.get("name") or "")
        if not name:
            return _error(400, "ArgumentException", "name is required")
        if any(r["name"] == name for r in fake.all_runners()):
            return _error(409, "AgentExistsException", f"Agent {name} already exists")
        return Reply(200, fake.issue_jit(record.scope, record, name))
    if action == "sessions":
        return _sessions(fake, method, record, session_id, body)
    return Reply(404, {"message": f"no route {method} {action}"})


def _sessions(fake: Any, method: str, record: Any, session_id: str | None, body: Any) -> Reply:
    state = fake.scalesets
    if session_id is None and method == "POST":
        reply = state.open_session(record.id, str((body or {}).get("ownerName") or ""))
        return _absolute(fake, reply)
    session = state.sessions.get(session_id or "")
    if session is None or session.scale_set_id != record.id:
        return session_gone(session_id or "")
    if method == "PATCH":
        return _absolute(fake, state.refresh(session))
    if method == "DELETE":
        return state.close_session(session)
    return Reply(405, {"message": "method not allowed"})


def _absolute(fake: Any, reply: Reply) -> Reply:
    if reply.status == 200:
        reply.body["messageQueueUrl"] = fake.base_url + reply.body["messageQueueUrl"]
    return reply


def _acquire(fake: Any, request: Request, scale_set_id: int, body: Any) -> Reply:
    state = fake.scalesets
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    session = next(
        (s for s in state.sessions.values() if s.scale_set_id == scale_set_id and s.token == token),
        None,
    )
    if session is None or state.queue_session(session.id, token) is None:
        return Reply(401, {"message": "queue token missing, invalid or expired"})
    if not isinstance(body, list):
        return _error(400, "ArgumentException", "POST a JSON array of runnerRequestIds")
    taken = state.acquire(session, [int(x) for x in body])
    return Reply(200, {"count": len(taken), "value": taken})


def _agent(fake: Any, method: str, runner_id: int) -> Reply:
    runner = fake._find_runner(runner_id)
    if runner is None:
        return _error(404, "AgentNotFoundException", f"No agent found with id {runner_id}")
    if method == "GET":
        return Reply(200, _ref(runner))
    if method != "DELETE":
        return Reply(405, {"message": "method not allowed"})
    if runner.get("busy"):
        return _error(400, "JobStillRunningException", f"Agent {runner['name']} is running a job")
    fake._forget_runner(runner_id)
    return Reply(204)
