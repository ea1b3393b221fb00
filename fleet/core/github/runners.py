"""Self-hosted runners through the REST API: JIT configs, list/get/delete, runner groups.

One ``RunnersAPI`` works on one scope, an organization or a repository; the endpoints differ
only by prefix (``/orgs/{org}`` or ``/repos/{owner}/{repo}``). JIT configs are secrets: they
never appear in a repr, an error or a log line from here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleet.core.config.rules import GITHUB_OWNER, GITHUB_REPO
from fleet.core.github.client import GitHubClient, TokenSource
from fleet.core.github.errors import (
    GitHubConflict,
    GitHubError,
    GitHubNotFound,
    GitHubValidationError,
)
from fleet.core.github.ratelimit import Sleep, TokenBucket

# The runner group every repository has; repository runners always land in it.
DEFAULT_RUNNER_GROUP_ID = 1
MAX_LABELS = 100
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Scope:
    """Where runners register: an organization or one repository."""

    org: str | None = None
    repository: str | None = None  # "owner/name"

    def __post_init__(self) -> None:
        if (self.org is None) == (self.repository is None):
            raise ValueError("a runner scope is either an organization or a repository, not both")
        if self.org is not None and not GITHUB_OWNER.fullmatch(self.org):
            raise ValueError(f"not a GitHub organization name: {self.org!r}")
        if self.repository is not None:
            owner, _, repo = self.repository.partition("/")
            if not GITHUB_OWNER.fullmatch(owner) or not GITHUB_REPO.fullmatch(repo):
                raise ValueError(f"repository must be 'owner/name', got {self.repository!r}")

    @classmethod
    def for_org(cls, org: str) -> Scope:
        return cls(org=org)

    @classmethod
    def for_repository(cls, full_name: str) -> Scope:
        return cls(repository=full_name)

    @property
    def prefix(self) -> str:
        return f"/orgs/{self.org}" if self.org is not None else f"/repos/{self.repository}"


@dataclass(frozen=True)
class Runner:
    """A registered self-hosted runner as GitHub reports it."""

    id: int
    name: str
    status: str  # "online" | "offline"
    busy: bool
    labels: tuple[str, ...] = ()
    os: str | None = None
    runner_group_id: int | None = None
    ephemeral: bool | None = None

    @property
    def online(self) -> bool:
        return self.status == "online"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Runner:
        labels = tuple(
            str(label["name"]) if isinstance(label, dict) else str(label)
            for label in data.get("labels") or ()
        )
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            status=str(data.get("status") or "offline"),
            busy=bool(data.get("busy")),
            labels=labels,
            os=data.get("os"),
            runner_group_id=data.get("runner_group_id"),
            ephemeral=data.get("ephemeral"),
        )


@dataclass(frozen=True)
class JitConfig:
    """A just-in-time runner registration. ``encoded_jit_config`` is a one-use secret."""

    runner: Runner
    encoded_jit_config: str = field(repr=False)


@dataclass(frozen=True)
class RunnerGroup:
    id: int
    name: str
    visibility: str | None = None
    default: bool = False
    allows_public_repositories: bool = False


class RunnerBusyError(GitHubValidationError):
    """GitHub refused to delete a runner because it is running a job."""


def validate_labels(labels: Iterable[str]) -> list[str]:
    """Labels as GitHub accepts them for a JIT runner: 1 to 100 non-empty, distinct names."""
    cleaned: list[str] = []
    seen: set[str] = set()
    for label in labels:
        text = str(label).strip()
        if not text:
            raise ValueError("runner labels must be non-empty strings")
        if text.casefold() not in seen:  # GitHub compares labels case-insensitively
            seen.add(text.casefold())
            cleaned.append(text)
    if not 1 <= len(cleaned) <= MAX_LABELS:
        raise ValueError(f"a JIT runner needs 1 to {MAX_LABELS} labels, got {len(cleaned)}")
    return cleaned


class RunnersAPI:
    """Runner endpoints of one scope, authenticated with an installation token source."""

    def __init__(
        self,
        client: GitHubClient,
        scope: Scope,
        auth: TokenSource,
        *,
        jit_bucket: TokenBucket | None = None,
        jit_max_wait: float = 10.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.client = client
        self.scope = scope
        self.auth = auth
        self.jit_bucket = jit_bucket
        self.jit_max_wait = jit_max_wait
        self._sleep = sleep

    def generate_jitconfig(
        self,
        name: str,
        labels: Sequence[str],
        *,
        runner_group_id: int | None = None,
        work_folder: str = "_work",
        replace_stale: bool = True,
    ) -> JitConfig:
        """Register a JIT runner (POST .../actions/runners/generate-jitconfig).

        Organization scope needs an explicit ``runner_group_id`` (choose the group on purpose:
        the default group may be open to public repositories). Repository runners go to group 1.
        Waits for the JIT token bucket, if any, up to ``jit_max_wait`` seconds; beyond that
        ``fleet.core.github.ratelimit.RateLimitExceeded`` is raised before any request is sent.

        Runner names are per instance, so a 409 "already exists" means an earlier attempt for
        this instance registered the runner but its answer was lost (e.g. a 5xx after GitHub
        had acted, then a retry). That registration's config is gone and can never start a
        runner: with ``replace_stale`` it is deleted (unless busy) and the call made once more.
        """
        if not _NAME.match(name):
            raise ValueError(
                f"runner name {name!r} must be 1-64 characters of letters, digits, '.', '_', '-'"
            )
        if runner_group_id is None:
            if self.scope.org is not None:
                raise ValueError(
                    "an organization JIT runner needs runner_group_id; look it up with "
                    "RunnersAPI.runner_group_id(name)"
                )
            runner_group_id = DEFAULT_RUNNER_GROUP_ID
        body = {
            "name": name,
            "runner_group_id": int(runner_group_id),
            "labels": validate_labels(labels),
            "work_folder": work_folder,
        }
        path = f"{self.scope.prefix}/actions/runners/generate-jitconfig"
        try:
            answer = self._post_jit(path, body)
        except GitHubConflict:
            stale = [r for r in self.list_runners(name=name) if r.name == name]
            if not replace_stale or not stale or any(r.busy for r in stale):
                raise
            for runner in stale:
                self.delete_runner(runner.id)
            answer = self._post_jit(path, body)
        if not isinstance(answer, dict) or not answer.get("encoded_jit_config"):
            raise GitHubError("POST", path, 201, "JIT answer has no encoded_jit_config")
        return JitConfig(
            runner=Runner.from_api(answer["runner"]),
            encoded_jit_config=str(answer["encoded_jit_config"]),
        )

    def _post_jit(self, path: str, body: dict[str, Any]) -> Any:
        if self.jit_bucket is not None:
            self.jit_bucket.acquire(self._sleep, max_wait=self.jit_max_wait)
        return self.client.post_json(path, auth=self.auth, json=body)

    def list_runners(self, *, name: str | None = None) -> list[Runner]:
        """Every runner of the scope (all pages), optionally only those named ``name``."""
        params = {"name": name} if name else None
        pages = self.client.paginate(
            f"{self.scope.prefix}/actions/runners",
            auth=self.auth,
            params=params,
            item_key="runners",
        )
        return [Runner.from_api(item) for item in pages]

    def get_runner(self, runner_id: int) -> Runner | None:
        """One runner, or None if GitHub no longer knows it."""
        try:
            data = self.client.get_json(
                f"{self.scope.prefix}/actions/runners/{int(runner_id)}", auth=self.auth
            )
        except GitHubNotFound:
            return None
        return Runner.from_api(data)

    def delete_runner(self, runner_id: int) -> bool:
        """Deregister a runner. True if deleted, False if it was already gone.

        Raises ``RunnerBusyError`` when GitHub refuses because the runner is running a job.
        """
        path = f"{self.scope.prefix}/actions/runners/{int(runner_id)}"
        try:
            self.client.delete(path, auth=self.auth)
        except GitHubNotFound:
            return False
        except GitHubValidationError as exc:
            raise RunnerBusyError(
                exc.method,
                exc.path,
                exc.status,
                exc.message,
                documentation_url=exc.documentation_url,
                request_id=exc.request_id,
                errors=exc.errors,
            ) from exc
        return True

    def list_runner_groups(self) -> list[RunnerGroup]:
        """The organization's runner groups (organization scope only)."""
        if self.scope.org is None:
            raise ValueError("runner groups exist only for organizations; repositories use group 1")
        pages = self.client.paginate(
            f"/orgs/{self.scope.org}/actions/runner-groups",
            auth=self.auth,
            item_key="runner_groups",
        )
        return [
            RunnerGroup(
                id=int(item["id"]),
                name=str(item["name"]),
                visibility=item.get("visibility"),
                default=bool(item.get("default")),
                allows_public_repositories=bool(item.get("allows_public_repositories")),
            )
            for item in pages
        ]

    def runner_group_id(self, name: str) -> int:
        """Id of the runner group called ``name`` (case-insensitive); LookupError if none."""
        if self.scope.repository is not None:
            return DEFAULT_RUNNER_GROUP_ID
        groups = self.list_runner_groups()
        for group in groups:
            if group.name.casefold() == name.casefold():
                return group.id
        known = ", ".join(sorted(group.name for group in groups)) or "none"
        raise LookupError(
            f"no runner group named {name!r} in organization {self.scope.org} (found: {known}); "
            "create it under Settings > Actions > Runner groups"
        )
