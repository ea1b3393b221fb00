"""The scale-set service's admin calls, under ``{service}/_apis/...?api-version=6.0-preview``.

Runner groups, scale sets (get, create, update, delete), JIT configs for scale-set runners,
runner look-up and removal. Authenticated with the admin token of ``AdminAuth`` (a 401 makes
the client register again and retry once); the service URL comes with that token, so each
call asks for it. Calls go through ``GitHubClient`` (timeout, bounded retries on 5xx and rate
limits); the service's named exceptions become typed errors (``errors.typed``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from fleet.core.github.client import GitHubClient, RetryPolicy, Sleep, TokenSource
from fleet.core.github.errors import GitHubError, GitHubNotFound
from fleet.core.github.scaleset.auth import AdminAuth, Clock
from fleet.core.github.scaleset.errors import AmbiguousName, typed
from fleet.core.github.scaleset.models import (
    API_VERSION,
    JitConfig,
    JitRunnerSetting,
    Label,
    ListOf,
    RunnerGroup,
    RunnerReference,
    ScaleSet,
)
from fleet.core.github.scaleset.target import Target, web_url_for

SCALE_SETS = "/_apis/runtime/runnerscalesets"
RUNNER_GROUPS = "/_apis/runtime/runnergroups/"
AGENTS = "/_apis/distributedtask/pools/0/agents"
ACCEPT = f"application/json; api-version={API_VERSION}"
DEFAULT_TIMEOUT = (5.0, 30.0)


class Clients:
    """One ``GitHubClient`` per origin (the service and its message queue differ), sharing
    one HTTP session, retry policy, sleep, clock and jitter."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        jitter: Callable[[], float] = random.random,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self._session = session or requests.Session()
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._timeout = timeout
        self._by_base: dict[str, GitHubClient] = {}
        self._lock = threading.Lock()

    def for_url(self, url: str) -> GitHubClient:
        """The client whose base URL is ``url``'s base (a service URL keeps its path)."""
        base = url.rstrip("/")
        with self._lock:
            client = self._by_base.get(base)
            if client is None:
                client = self._by_base[base] = GitHubClient(
                    base,
                    session=self._session,
                    timeout=self._timeout,
                    retry=self._retry,
                    sleep=self._sleep,
                    clock=self._clock,
                    jitter=self._jitter,
                )
            return client

    def for_origin(self, url: str) -> GitHubClient:
        parts = urlsplit(url)
        return self.for_url(f"{parts.scheme}://{parts.netloc}")


class ScaleSetService:
    """Admin calls on the scale-set service (see the module docstring)."""

    def __init__(self, admin: AdminAuth, clients: Clients) -> None:
        self.admin = admin
        self.clients = clients

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        auth: TokenSource | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One call on the service; ``auth`` defaults to the admin token."""
        client = self.clients.for_url(self.admin.service_url())
        query = {**(params or {}), "api-version": API_VERSION}
        sent = {"Accept": ACCEPT, **(headers or {})}
        try:
            return client.request(
                method,
                path,
                auth=None if "Authorization" in sent else (auth or self.admin),
                params=query,
                json=json,
                headers=sent,
            )
        except GitHubError as exc:
            raise typed(exc) from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        try:
            return response.json() if response.content else None
        except ValueError as exc:
            raise GitHubError(method, path, response.status_code, f"not JSON: {exc}") from exc

    # -- runner groups and scale sets ----------------------------------------------------

    def runner_group(self, name: str) -> RunnerGroup:
        """The runner group called ``name`` (the scale set's group)."""
        found = ListOf.model_validate(self._json("GET", RUNNER_GROUPS, params={"groupName": name}))
        if found.count == 0 or not found.value:
            raise GitHubNotFound(
                "GET",
                RUNNER_GROUPS,
                200,
                f"no runner group named {name!r}: create it (organization settings -> Actions -> "
                "Runner groups) or name an existing one",
            )
        if found.count > 1:
            raise AmbiguousName("GET", RUNNER_GROUPS, 200, f"several runner groups named {name!r}")
        return RunnerGroup.model_validate(found.value[0])

    def get_scale_set(self, runner_group_id: int, name: str) -> ScaleSet | None:
        """The scale set ``name`` in the group, or None."""
        params = {"runnerGroupId": runner_group_id, "name": name}
        found = ListOf.model_validate(self._json("GET", SCALE_SETS, params=params))
        if found.count == 0 or not found.value:
            return None
        if found.count > 1:
            raise AmbiguousName("GET", SCALE_SETS, 200, f"several scale sets named {name!r}")
        return ScaleSet.model_validate(found.value[0])

    def get_scale_set_by_id(self, scale_set_id: int) -> ScaleSet:
        return ScaleSet.model_validate(self._json("GET", f"{SCALE_SETS}/{int(scale_set_id)}"))

    def create_scale_set(
        self, name: str, runner_group_id: int, labels: Sequence[str] = ()
    ) -> ScaleSet:
        """A new scale set; without labels its one label is its name (what ``runs-on`` names).

        GitHub Enterprise Server needs 3.9+ for scale sets and 3.18+ for more than one label.
        """
        wanted = ScaleSet(
            name=name,
            runnerGroupId=runner_group_id,
            labels=tuple(Label(name=label) for label in (labels or (name,))),
        )
        return ScaleSet.model_validate(self._json("POST", SCALE_SETS, json=wanted.wire()))

    def update_scale_set(self, scale_set_id: int, scale_set: ScaleSet) -> ScaleSet:
        path = f"{SCALE_SETS}/{int(scale_set_id)}"
        return ScaleSet.model_validate(self._json("PATCH", path, json=scale_set.wire()))

    def delete_scale_set(self, scale_set_id: int) -> bool:
        """Delete it; False if it was already gone."""
        try:
            self.call("DELETE", f"{SCALE_SETS}/{int(scale_set_id)}")
        except GitHubNotFound:
            return False
        return True

    # -- runners --------------------------------------------------------------------------

    def generate_jit_config(
        self, scale_set_id: int, name: str, work_folder: str = "_work"
    ) -> JitConfig:
        """A JIT config for a new runner ``name`` of the scale set (``AgentExists`` if taken)."""
        body = JitRunnerSetting(name=name, workFolder=work_folder).wire()
        path = f"{SCALE_SETS}/{int(scale_set_id)}/generatejitconfig"
        return JitConfig.model_validate(self._json("POST", path, json=body))

    def get_runner_by_name(self, name: str) -> RunnerReference | None:
        found = ListOf.model_validate(self._json("GET", AGENTS, params={"agentName": name}))
        if found.count == 0 or not found.value:
            return None
        if found.count > 1:
            raise AmbiguousName("GET", AGENTS, 200, f"several runners named {name!r}")
        return RunnerReference.model_validate(found.value[0])

    def remove_runner(self, runner_id: int) -> None:
        """Remove a runner; ``JobStillRunning`` if it is busy, ``AgentNotFound`` if gone."""
        self.call("DELETE", f"{AGENTS}/{int(runner_id)}")


def connect(
    api: GitHubClient,
    credentials: TokenSource,
    target: Target,
    *,
    web_url: str | None = None,
    clients: Clients | None = None,
    clock: Clock = time.time,
    sleep: Sleep = time.sleep,
) -> ScaleSetService:
    """A service client for ``target``: ``api`` is the REST API (registration), ``credentials``
    the installation token (or PAT), ``web_url`` GitHub's web URL (derived from the API's)."""
    config_url = target.config_url(web_url or web_url_for(api.base_url))
    admin = AdminAuth(api, credentials, target, config_url, clock=clock, sleep=sleep)
    return ScaleSetService(admin, clients or Clients(clock=clock, sleep=sleep))
