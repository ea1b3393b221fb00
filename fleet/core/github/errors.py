"""GitHub's answers as typed errors: what went wrong, where, and whether a retry may help
(``transient``). Tokens never appear in them."""

from __future__ import annotations

from typing import Any


class GitHubError(Exception):
    """A GitHub API call failed. ``status`` is None when no response arrived."""

    transient = False

    def __init__(
        self,
        method: str,
        path: str,
        status: int | None,
        message: str,
        *,
        documentation_url: str | None = None,
        request_id: str | None = None,
        errors: tuple[Any, ...] = (),
        type_name: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        self.documentation_url = documentation_url
        self.request_id = request_id
        self.errors = errors
        self.type_name = type_name  # the Actions service's exception name, if it sent one
        super().__init__(str(self))

    def __str__(self) -> str:
        status = "no response" if self.status is None else str(self.status)
        text = f"GitHub {self.method} {self.path} -> {status}: {self.message}"
        if self.errors:
            text += f" (errors: {list(self.errors)})"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        return text


class GitHubAuthError(GitHubError):
    """401: the JWT or token was refused (wrong key or App id, revoked token, clock skew)."""


class GitHubForbidden(GitHubError):
    """403 that is not a rate limit: the App lacks a permission or the resource is not its."""


class GitHubNotFound(GitHubError):
    """404: no such resource, or the App cannot see it."""


class GitHubConflict(GitHubError):
    """409: e.g. a runner with that name already exists."""


class GitHubValidationError(GitHubError):
    """422: GitHub refused the request's content (see ``errors``)."""


class GitHubRateLimited(GitHubError):
    """Rate limited for longer than the client may wait; retry at ``retry_at`` (epoch s)."""

    transient = True

    def __init__(self, *args: Any, retry_at: float, **kwargs: Any) -> None:
        self.retry_at = retry_at
        super().__init__(*args, **kwargs)


class GitHubServerError(GitHubError):
    """5xx after all retries."""

    transient = True


class GitHubUnavailable(GitHubError):
    """No response (connection error or timeout) after all retries."""

    transient = True


ERROR_BY_STATUS: dict[int, type[GitHubError]] = {
    401: GitHubAuthError,
    403: GitHubForbidden,
    404: GitHubNotFound,
    409: GitHubConflict,
    422: GitHubValidationError,
}
