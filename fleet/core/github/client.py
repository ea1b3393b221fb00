"""A small GitHub REST client: timeouts, typed errors, bounded retries that honour rate limits.

Works against api.github.com, GitHub Enterprise Server (``https://HOST/api/v3``) and the test
fake; the base URL is the only difference. What it retries, and how:

- 403/429 that are rate limits (``x-ratelimit-remaining: 0``, a ``retry-after`` header, or a
  "secondary rate limit" message): wait for ``retry-after`` seconds, else until
  ``x-ratelimit-reset``, else a minute doubling per repeat (GitHub's guidance). A wait longer
  than ``RetryPolicy.max_rate_limit_wait`` is not slept: ``GitHubRateLimited`` is raised with
  ``retry_at`` so the caller can put the work back on its queue instead of holding a worker.
- 5xx and connection errors/timeouts: exponential backoff with jitter.
- 401 with a token source: the token is dropped and fetched again, once (revoked or rotated).
- Everything else (403, 404, 409, 422 ...) is raised at once: retrying cannot fix it.

Every error is a ``GitHubError`` carrying the method, path, status and GitHub's message, and
says whether it is ``transient`` (worth retrying later) or not. Tokens never appear in errors.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from fleet.core.github.errors import (
    ERROR_BY_STATUS,
    GitHubAuthError,
    GitHubError,
    GitHubRateLimited,
    GitHubServerError,
    GitHubUnavailable,
)

DEFAULT_BASE_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = "runner-fleet"

Sleep = Callable[[float], None]
Clock = Callable[[], float]


class TokenSource(Protocol):
    """Something that yields a bearer token and can be told the token was refused."""

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


@dataclass(frozen=True)
class StaticToken:
    """A fixed token (tests, or a token obtained elsewhere); ``invalidate`` does nothing."""

    value: str = field(repr=False)

    def token(self) -> str:
        return self.value

    def invalidate(self) -> None:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying: attempts in total, and the longest single wait the client sleeps."""

    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    max_rate_limit_wait: float = 60.0
    secondary_rate_limit_wait: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_base <= 0 or self.backoff_cap < self.backoff_base:
            raise ValueError("RetryPolicy needs 0 < backoff_base <= backoff_cap")


@dataclass(frozen=True)
class RateLimitStatus:
    """The primary rate limit as last reported by GitHub's response headers."""

    limit: int | None
    remaining: int | None
    reset: int | None
    resource: str | None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _retry_after_seconds(value: str | None, now: float) -> float | None:
    """``retry-after`` as seconds; GitHub sends an integer, HTTP also allows a date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class GitHubClient:
    """Sends requests to one GitHub API base URL with retries and typed errors."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (5.0, 15.0),
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        jitter: Callable[[], float] = random.random,
        user_agent: str = USER_AGENT,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"GitHub base URL must be http(s)://host[/path], got {base_url!r} "
                "(GitHub Enterprise Server: https://HOST/api/v3)"
            )
        self.base_url = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc)
        self._session = session or requests.Session()
        self._timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": user_agent,
        }
        self.rate_limit: RateLimitStatus | None = None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------

    # Long on purpose: the retry loop: success, 401, rate limit, 5xx and connection errors each
    # decide the next attempt, and the order of those decisions is the point.
    def request(
        self,
        method: str,
        path: str,
        *,
        auth: TokenSource | None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send ``method path`` (path relative to the base URL, or a same-origin absolute URL).

        ``headers`` add to (or replace) the client's own, ``timeout`` replaces its timeout for
        this call (a long poll). Returns the response for any status below 400; raises
        ``GitHubError`` otherwise.
        """
        url, shown = self._url(path)
        method = method.upper()
        attempt = 0
        secondary_hits = 0
        reauthenticated = False
        while True:
            attempt += 1
            sent = dict(self._headers)
            if auth is not None:
                sent["Authorization"] = f"Bearer {auth.token()}"
            sent.update(headers or {})
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers=sent,
                    timeout=self._timeout if timeout is None else timeout,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                error = GitHubUnavailable(method, shown, None, f"{type(exc).__name__}: {exc}")
                self._backoff_or_raise(error, attempt)
                continue
            self._observe(response)
            if response.status_code < 400:
                return response
            error = self._error(method, shown, response)
            if isinstance(error, GitHubAuthError):
                if auth is not None and not reauthenticated:
                    # A revoked or rotated token: fetch a new one and try once more.
                    auth.invalidate()
                    reauthenticated = True
                    continue
                error.message += (
                    " (check the App id and private key, that the installation is not"
                    " suspended, and that this machine's clock is right)"
                )
                raise error
            wait, guessed = self._rate_limit_wait(response, error, secondary_hits)
            if wait is not None:
                secondary_hits += guessed
                retry_at = self._clock() + wait
                if wait > self.retry.max_rate_limit_wait or attempt >= self.retry.max_attempts:
                    raise GitHubRateLimited(
                        method,
                        shown,
                        response.status_code,
                        f"{error.message} (retry after {wait:.0f}s)",
                        documentation_url=error.documentation_url,
                        request_id=error.request_id,
                        retry_at=retry_at,
                    )
                self._sleep(wait + self._jitter())
                continue
            if response.status_code >= 500:
                self._backoff_or_raise(
                    GitHubServerError(
                        method,
                        shown,
                        response.status_code,
                        error.message,
                        request_id=error.request_id,
                    ),
                    attempt,
                )
                continue
            raise error

    def get_json(
        self, path: str, *, auth: TokenSource | None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """GET and decode the JSON body."""
        return self._decode("GET", path, self.request("GET", path, auth=auth, params=params))

    def post_json(self, path: str, *, auth: TokenSource | None, json: Any = None) -> Any:
        """POST a JSON body and decode the JSON answer (None for an empty body)."""
        return self._decode("POST", path, self.request("POST", path, auth=auth, json=json))

    def delete(self, path: str, *, auth: TokenSource | None) -> None:
        """DELETE; raises ``GitHubError`` on failure."""
        self.request("DELETE", path, auth=auth)

    def paginate(
        self,
        path: str,
        *,
        auth: TokenSource | None,
        params: Mapping[str, Any] | None = None,
        item_key: str | None = None,
        per_page: int = 100,
        max_pages: int = 1000,
    ) -> Iterator[Any]:
        """Yield items page by page, following ``Link: rel="next"`` on the same origin only.

        ``item_key`` names the list inside an object page (``"runners"``); None for list pages.
        """
        query: dict[str, Any] | None = {**(params or {}), "per_page": per_page}
        url = path
        for _ in range(max_pages):
            response = self.request("GET", url, auth=auth, params=query)
            page = self._decode("GET", url, response)
            items = page.get(item_key) if item_key and isinstance(page, dict) else page
            if not isinstance(items, list):
                raise GitHubError(
                    "GET",
                    self._url(url)[1],
                    response.status_code,
                    f"expected a list{f' under {item_key!r}' if item_key else ''} in the answer",
                )
            yield from items
            next_url = response.links.get("next", {}).get("url")
            if not next_url or not items:
                return
            url, query = next_url, None  # the next link carries the query
        raise GitHubError("GET", path, None, f"more than {max_pages} pages; refusing to go on")

    # -- helpers --------------------------------------------------------------------------

    def _url(self, path: str) -> tuple[str, str]:
        """Absolute URL and the path shown in errors; refuses other origins (token safety)."""
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            if (parts.scheme, parts.netloc) != self._origin:
                raise ValueError(f"refusing to send a GitHub token to another origin: {path}")
            return path, parts.path + (f"?{parts.query}" if parts.query else "")
        if not path.startswith("/"):
            raise ValueError(f"API path must start with '/', got {path!r}")
        return self.base_url + path, path

    def _observe(self, response: requests.Response) -> None:
        headers = response.headers
        if "x-ratelimit-remaining" in headers:
            self.rate_limit = RateLimitStatus(
                limit=_int_header(headers, "x-ratelimit-limit"),
                remaining=_int_header(headers, "x-ratelimit-remaining"),
                reset=_int_header(headers, "x-ratelimit-reset"),
                resource=headers.get("x-ratelimit-resource"),
            )

    @staticmethod
    def _error(method: str, path: str, response: requests.Response) -> GitHubError:
        message, documentation_url, errors = response.reason or "error", None, ()
        type_name = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) and response.text.strip():
            # A proxy or load balancer answered, not the API: show what it said.
            message = (body if isinstance(body, str) else response.text).strip()[:200]
        if isinstance(body, dict):
            message = str(body.get("message") or message)
            documentation_url = body.get("documentation_url")
            errors = tuple(body.get("errors") or ())
            # The Actions service names its exceptions (``JobStillRunningException``).
            type_name = body.get("typeName")
        cls = ERROR_BY_STATUS.get(response.status_code)
        if cls is None:
            cls = GitHubServerError if response.status_code >= 500 else GitHubError
        return cls(
            method,
            path,
            response.status_code,
            message,
            documentation_url=documentation_url,
            request_id=response.headers.get("x-github-request-id"),
            errors=errors,
            type_name=str(type_name) if type_name else None,
        )

    def _rate_limit_wait(
        self, response: requests.Response, error: GitHubError, secondary_hits: int
    ) -> tuple[float | None, bool]:
        """Seconds to wait if ``response`` is a rate limit (else None), and whether it was a
        guess because GitHub sent no header to go by."""
        if response.status_code not in (403, 429):
            return None, False
        headers = response.headers
        now = self._clock()
        retry_after = _retry_after_seconds(headers.get("retry-after"), now)
        remaining = _int_header(headers, "x-ratelimit-remaining")
        secondary = "rate limit" in error.message.lower() or "abuse" in error.message.lower()
        if retry_after is not None:
            return retry_after, False
        reset = _int_header(headers, "x-ratelimit-reset")
        if remaining == 0 and reset is not None:
            return max(0.0, reset - now) + 1.0, False  # +1: reset is whole seconds
        if response.status_code == 429 or secondary or remaining == 0:
            # No header to go by: a minute, doubling each time it happens again.
            return self.retry.secondary_rate_limit_wait * 2**secondary_hits, True
        return None, False

    def _backoff_or_raise(self, error: GitHubError, attempt: int) -> None:
        if attempt >= self.retry.max_attempts:
            raise error
        ceiling = min(self.retry.backoff_cap, self.retry.backoff_base * 2 ** (attempt - 1))
        # Half fixed, half random: spreads clients out and never spins (delay >= ceiling / 2).
        self._sleep(ceiling / 2 + self._jitter() * ceiling / 2)

    def _decode(self, method: str, path: str, response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise GitHubError(
                method, self._url(path)[1], response.status_code, f"answer is not JSON: {exc}"
            ) from exc
