"""The admin token for the scale-set service: registration token -> runner registration.

1. ``POST {api}{scope}/actions/runners/registration-token`` with the App's installation token
   (or a PAT) -> ``{"token", "expires_at"}`` (201);
2. ``POST {api}/actions/runner-registration`` with ``Authorization: RemoteAuth <token>`` and
   ``{"url": <config url>, "runner_event": "register"}`` -> ``{"url": <Actions service URL>,
   "token": <admin JWT>}``. A registration token only just minted is sometimes refused for a
   moment (401/403): retried a few times with backoff.

The admin JWT is read (not verified: it is the service's, for the service) for its ``exp``;
``AdminAuth`` registers again ``refresh_before`` seconds ahead of it, and at once when the
service refuses the token (``invalidate``, called by the client after a 401). Nothing here
logs or shows a token.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from fleet.core.github.client import GitHubClient, Sleep, TokenSource
from fleet.core.github.errors import GitHubAuthError, GitHubError, GitHubForbidden
from fleet.core.github.scaleset.target import Target

Clock = Callable[[], float]  # epoch seconds, as everywhere in fleet.core.github

REGISTRATION_PATH = "/actions/runner-registration"


@dataclass(frozen=True)
class AdminConnection:
    """The Actions service URL and its admin token (expiring at ``expires_at``, epoch s)."""

    service_url: str
    token: str = field(repr=False)
    expires_at: float


def token_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT, without verifying it; raises ``ValueError`` if it has none."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ValueError(f"the admin token is not a JWT: {exc}") from exc
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise ValueError("the admin token has no 'exp' claim")
    return float(exp)


class AdminAuth:
    """A ``TokenSource`` for the Actions service's admin calls (see the module docstring)."""

    def __init__(
        self,
        api: GitHubClient,
        credentials: TokenSource,
        target: Target,
        config_url: str,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        refresh_before: float = 60.0,
        registration_attempts: int = 4,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if refresh_before < 0 or registration_attempts < 1:
            raise ValueError("refresh_before must be >= 0 and registration_attempts >= 1")
        self._api = api
        self._credentials = credentials
        self.target = target
        self.config_url = config_url
        self._clock = clock
        self._sleep = sleep
        self._refresh_before = refresh_before
        self._attempts = registration_attempts
        self._jitter = jitter
        self._connection: AdminConnection | None = None
        self._lock = threading.Lock()
        self.registrations = 0  # how often it registered (tests and logs)

    def __repr__(self) -> str:
        return f"AdminAuth(config_url={self.config_url!r})"

    def connection(self) -> AdminConnection:
        """A connection whose token is valid for more than ``refresh_before`` seconds."""
        with self._lock:
            current = self._connection
            if current is None or current.expires_at - self._clock() <= self._refresh_before:
                current = self._connection = self._register()
            return current

    def token(self) -> str:
        return self.connection().token

    def service_url(self) -> str:
        return self.connection().service_url

    def invalidate(self) -> None:
        with self._lock:
            self._connection = None

    def _register(self) -> AdminConnection:
        path = self.target.registration_token_path
        answer = self._api.post_json(path, auth=self._credentials)
        if not isinstance(answer, dict) or not answer.get("token"):
            raise GitHubError("POST", path, 201, "registration token answer has no 'token'")
        answer = self._runner_registration(str(answer["token"]))
        url, token = answer.get("url"), answer.get("token")
        if not url or not token:
            raise GitHubError(
                "POST", REGISTRATION_PATH, 200, "runner registration answer lacks 'url' or 'token'"
            )
        try:
            expires_at = token_expiry(str(token))
        except ValueError as exc:
            raise GitHubError("POST", REGISTRATION_PATH, 200, str(exc)) from exc
        self.registrations += 1
        return AdminConnection(str(url), str(token), expires_at)

    def _runner_registration(self, registration_token: str) -> dict[str, Any]:
        body = {"url": self.config_url, "runner_event": "register"}
        headers = {"Authorization": f"RemoteAuth {registration_token}"}
        for attempt in range(1, self._attempts + 1):
            try:
                answer = self._api.request(
                    "POST", REGISTRATION_PATH, auth=None, json=body, headers=headers
                ).json()
            except (GitHubAuthError, GitHubForbidden) as exc:
                if attempt >= self._attempts:
                    exc.message = (
                        f"runner registration for {self.config_url} refused: {exc.message} "
                        "(is the App installed there, with runner administration?)"
                    )
                    raise
                self._sleep(2 ** (attempt - 1) * (1 + self._jitter()))
                continue
            except ValueError as exc:
                raise GitHubError("POST", REGISTRATION_PATH, 200, f"not JSON: {exc}") from exc
            if not isinstance(answer, dict):
                raise GitHubError("POST", REGISTRATION_PATH, 200, "answer is not an object")
            return answer
        raise AssertionError("unreachable")  # pragma: no cover
