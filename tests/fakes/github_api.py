"""A fake GitHub REST API on a real local HTTP server (pytest-httpserver), for unit tests.

It keeps state (installations, tokens, runners, runner groups, hook deliveries), checks App
JWTs the way GitHub documents (RS256 with the App's public key, ``iss``, ``exp`` at most 10
minutes ahead, ``iat`` in the past), paginates with ``Link`` headers, and can be told to fail
the next requests with any status and headers (rate limits, 5xx, ...).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


def app_key_pair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a throwaway RSA key for a GitHub App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


class FakeClock:
    """Epoch seconds that move only when told to; ``sleep`` advances and records."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    body: Any
    path_prefix: str
    times: int


@dataclass
class RecordedRequest:
    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class FakeGitHub:
    """State and behaviour of the fake; see the module docstring."""

    server: HTTPServer
    app_id: str
    public_key: bytes
    clock: FakeClock
    prefix: str = ""
    token_ttl: float = 3600.0
    installations: dict[str, int] = field(default_factory=dict)  # org or owner/repo -> id
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> (inst, exp)
    runners: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # prefix -> ...
    runner_groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    redelivered: list[int] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    token_bodies: list[Any] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))

    def __post_init__(self) -> None:
        self.server.expect_request(re.compile(".*")).respond_with_handler(self._handle)

    # -- set-up helpers -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.server.url_for(self.prefix or "/").rstrip("/")

    def install(self, owner_or_repo: str, installation_id: int) -> None:
        self.installations[owner_or_repo.lower()] = installation_id

    def add_runner(
        self,
        scope_prefix: str,
        name: str,
        *,
        busy: bool = False,
        status: str = "online",
        labels: tuple[str, ...] = ("self-hosted", "linux"),
        group_id: int = 1,
    ) -> int:
        runner_id = next(self._ids)
        self.runners.setdefault(scope_prefix, {})[runner_id] = {
            "id": runner_id,
            "name": name,
            "os": "linux",
            "status": status,
            "busy": busy,
            "ephemeral": True,
            "runner_group_id": group_id,
            "labels": [{"id": i, "name": n, "type": "custom"} for i, n in enumerate(labels)],
        }
        return runner_id

    def add_group(self, org: str, name: str, *, group_id: int | None = None) -> int:
        group_id = group_id or next(self._ids)
        self.runner_groups.setdefault(org, []).append(
            {
                "id": group_id,
                "name": name,
                "visibility": "selected",
                "default": False,
                "allows_public_repositories": False,
            }
        )
        return group_id

    def add_delivery(
        self,
        guid: str,
        status_code: int,
        delivered_at: datetime,
        *,
        event: str = "workflow_job",
        action: str = "queued",
        redelivery: bool = False,
    ) -> int:
        delivery_id = next(self._ids)
        self.deliveries.append(
            {
                "id": delivery_id,
                "guid": guid,
                "delivered_at": delivered_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "redelivery": redelivery,
                "duration": 0.1,
                "status": "OK" if 200 <= status_code < 400 else "Invalid HTTP Response",
                "status_code": status_code,
                "event": event,
                "action": action,
                "installation_id": 1,
                "repository_id": 2,
            }
        )
        return delivery_id

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        message: str = "fake failure",
        body: Any = None,
        path_prefix: str = "/",
    ) -> None:
        """The next ``times`` requests under ``path_prefix`` answer ``status``."""
        payload = (
            body
            if body is not None
            else {"message": message, "documentation_url": "https://docs.example"}
        )
        self.faults.append(Fault(status, dict(headers or {}), payload, path_prefix, times))

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def calls(self, method: str, path_prefix: str = "/") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- request handling ---------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        path = request.path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return self._json(404, {"message": "Not Found"})
            path = path[len(self.prefix) :]
        body = request.get_json(silent=True) if request.data else None
        self.requests.append(
            RecordedRequest(
                request.method, path, dict(request.args), dict(request.headers), body, self.clock()
            )
        )
        for fault in self.faults:
            if fault.times > 0 and path.startswith(fault.path_prefix):
                fault.times -= 1
                return self._json(fault.status, fault.body, fault.headers)
        return self._route(request, path, body)

    def _route(self, request: Request, path: str, body: Any) -> Response:
        method = request.method
        if path.startswith("/app/") or path.endswith("/installation"):
            problem = self._check_jwt(request)
            if problem:
                return self._json(401, {"message": problem})
            return self._app_route(request, method, path, body)
        if self._installation_for(request) is None:
            return self._json(401, {"message": "Bad credentials"})
        m = re.fullmatch(r"(/orgs/[^/]+|/repos/[^/]+/[^/]+)/actions/runners(?:/(.*))?", path)
        if m:
            return self._runners_route(request, method, m.group(1), m.group(2), body)
        m = re.fullmatch(r"/orgs/([^/]+)/actions/runner-groups", path)
        if m and method == "GET":
            return self._page(request, self.runner_groups.get(m.group(1), []), "runner_groups")
        return self._json(404, {"message": "Not Found"})

    def _app_route(self, request: Request, method: str, path: str, body: Any) -> Response:
        m = re.fullmatch(r"/orgs/([^/]+)/installation|/repos/([^/]+/[^/]+)/installation", path)
        if m and method == "GET":
            key = (m.group(1) or m.group(2)).lower()
            if key not in self.installations:
                return self._json(404, {"message": "Not Found"})
            return self._json(200, {"id": self.installations[key], "app_id": int(self.app_id)})
        m = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        if m and method == "POST":
            installation_id = int(m.group(1))
            if installation_id not in self.installations.values():
                return self._json(404, {"message": "Not Found"})
            self.token_bodies.append(body)
            token = f"ghs_fake{next(self._ids)}"
            expires = self.clock() + self.token_ttl
            self.tokens[token] = (installation_id, expires)
            stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return self._json(
                201,
                {
                    "token": token,
                    "expires_at": stamp,
                    "permissions": (body or {}).get("permissions", {}),
                },
            )
        if path == "/app/hook/deliveries" and method == "GET":
            return self._deliveries_page(request)
        m = re.fullmatch(r"/app/hook/deliveries/(\d+)/attempts", path)
        if m and method == "POST":
            delivery_id = int(m.group(1))
            if not any(d["id"] == delivery_id for d in self.deliveries):
                return self._json(404, {"message": "Not Found"})
            self.redelivered.append(delivery_id)
            return self._json(202, {})
        return self._json(404, {"message": "Not Found"})

    def _runners_route(
        self, request: Request, method: str, prefix: str, rest: str | None, body: Any
    ) -> Response:
        runners = self.runners.setdefault(prefix, {})
        if rest is None and method == "GET":
            items = list(runners.values())
            if request.args.get("name"):
                items = [r for r in items if r["name"] == request.args["name"]]
            return self._page(request, items, "runners")
        if rest == "generate-jitconfig" and method == "POST":
            if not isinstance(body, dict) or "runner_group_id" not in body:
                return self._json(
                    422, {"message": "Invalid request.", "errors": ["runner_group_id is missing"]}
                )
            if not body.get("labels"):
                return self._json(422, {"message": "Invalid request.", "errors": ["labels"]})
            if any(r["name"] == body["name"] for r in runners.values()):
                return self._json(
                    409,
                    {
                        "message": "Already exists - A runner with the name "
                        f"{body['name']} already exists."
                    },
                )
            runner_id = self.add_runner(
                prefix,
                body["name"],
                status="offline",
                labels=tuple(body["labels"]),
                group_id=body["runner_group_id"],
            )
            return self._json(
                201, {"runner": runners[runner_id], "encoded_jit_config": f"JITSECRET-{runner_id}"}
            )
        if rest and rest.isdigit():
            runner = runners.get(int(rest))
            if runner is None:
                return self._json(404, {"message": "Not Found"})
            if method == "GET":
                return self._json(200, runner)
            if method == "DELETE":
                if runner["busy"]:
                    return self._json(
                        422,
                        {
                            "message": f'Bad request - Runner "{runner["name"]}"'
                            ' is still running a job"'
                        },
                    )
                del runners[int(rest)]
                return Response(status=204)
        return self._json(404, {"message": "Not Found"})

    def _page(self, request: Request, items: list[Any], key: str) -> Response:
        per_page = int(request.args.get("per_page", 30))
        page = int(request.args.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            query = urlencode({**request.args, "page": page + 1})
            headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
        return self._json(200, {"total_count": len(items), key: chunk}, headers)

    def _deliveries_page(self, request: Request) -> Response:
        ordered = sorted(self.deliveries, key=lambda d: (d["delivered_at"], d["id"]), reverse=True)
        per_page = int(request.args.get("per_page", 30))
        start = int(request.args.get("cursor", "v1_0").removeprefix("v1_"))
        chunk = ordered[start : start + per_page]
        headers = {}
        if start + per_page < len(ordered):
            query = urlencode({"per_page": per_page, "cursor": f"v1_{start + per_page}"})
            headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
        return self._json(200, chunk, headers)

    # -- auth ---------------------------------------------------------------------------

    def _bearer(self, request: Request) -> str | None:
        value = request.headers.get("Authorization", "")
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None

    def _check_jwt(self, request: Request) -> str | None:
        token = self._bearer(request)
        if not token:
            return "A JSON web token could not be decoded"
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_iss": False},
            )
        except jwt.PyJWTError:
            return "A JSON web token could not be decoded"
        now = self.clock()
        if str(claims.get("iss")) != self.app_id:
            return "Integration not found"
        if claims["iat"] > now:
            return "'Issued at' claim ('iat') must be an Integer representing a time in the past"
        if claims["exp"] > now + 600 or claims["exp"] - claims["iat"] > 600:
            return "'Expiration time' claim ('exp') is too far in the future"
        if claims["exp"] <= now:
            return "'Expiration time' claim ('exp') must be a numeric value in the future"
        return None

    def _installation_for(self, request: Request) -> int | None:
        token = self._bearer(request)
        if token is None or token not in self.tokens:
            return None
        installation_id, expires = self.tokens[token]
        return installation_id if expires > self.clock() else None

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(
            json.dumps(body), status=status, headers=headers or {}, content_type="application/json"
        )
