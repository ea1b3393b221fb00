"""The GitHub client against a real local HTTP server acting as GitHub (see fake_github.py)."""

from __future__ import annotations

import time

import pytest
import requests

from fleet.core.github.client import API_VERSION, GitHubClient, RetryPolicy, StaticToken
from fleet.core.github.errors import (
    GitHubAuthError,
    GitHubConflict,
    GitHubError,
    GitHubForbidden,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubServerError,
    GitHubUnavailable,
    GitHubValidationError,
)
from tests.fakes.github_api import FakeClock, FakeGitHub

pytestmark = pytest.mark.unit

RUNNERS = "/orgs/acme/actions/runners"


@pytest.fixture
def token(app, fake_github) -> StaticToken:
    """A valid installation token for the 'acme' organization."""
    fake_github.install("acme", 7)
    return StaticToken(app.create_installation_token(7).token)


class CountingToken:
    """A token source that records how often it was asked and told to drop its token."""

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self.asked = 0
        self.invalidated = 0

    def token(self) -> str:
        value = self.values[min(self.asked, len(self.values) - 1)]
        self.asked += 1
        return value

    def invalidate(self) -> None:
        self.invalidated += 1


def test_sends_githubs_versioned_json_headers_and_the_bearer_token(client, fake_github, token):
    client.get_json(RUNNERS, auth=token)
    sent = fake_github.calls("GET", RUNNERS)[0].headers
    assert sent["Accept"] == "application/vnd.github+json"
    assert sent["X-Github-Api-Version"] == API_VERSION
    assert sent["Authorization"] == f"Bearer {token.value}"
    assert sent["User-Agent"] == "runner-fleet"


def test_enterprise_server_base_url_with_api_v3_path(httpserver, app_keys, clock):
    ghes = FakeGitHub(httpserver, "424242", app_keys[1], clock, prefix="/api/v3")
    ghes.install("acme", 9)
    from fleet.core.github.app import GitHubApp
    from fleet.core.github.auth import AppJwtSigner

    client = GitHubClient(ghes.base_url, sleep=clock.sleep, clock=clock)
    assert ghes.base_url.endswith("/api/v3")
    app = GitHubApp(client, AppJwtSigner("424242", app_keys[0], clock=clock), clock=clock)
    assert app.installation_id_for_org("acme") == 9
    assert ghes.requests[0].path == "/orgs/acme/installation"


def test_base_url_must_be_http_or_https():
    with pytest.raises(ValueError, match="api/v3"):
        GitHubClient("api.github.com")


def test_401_drops_the_token_retries_once_then_raises_with_method_path_status_message(
    client, fake_github
):
    auth = CountingToken(["revoked-1", "revoked-2"])
    with pytest.raises(GitHubAuthError) as caught:
        client.get_json(RUNNERS, auth=auth)
    error = caught.value
    assert (error.method, error.path, error.status) == ("GET", RUNNERS, 401)
    assert "Bad credentials" in error.message
    assert auth.invalidated == 1
    assert len(fake_github.calls("GET", RUNNERS)) == 2
    assert not error.transient
    assert "revoked" not in str(error), "tokens must never appear in errors"


def test_401_then_a_fresh_token_succeeds(client, fake_github, token):
    auth = CountingToken(["revoked", token.value])
    assert client.get_json(RUNNERS, auth=auth)["total_count"] == 0
    assert auth.invalidated == 1


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (403, GitHubForbidden),
        (404, GitHubNotFound),
        (409, GitHubConflict),
        (422, GitHubValidationError),
    ],
)
def test_client_errors_are_raised_at_once_without_retry(
    client, fake_github, token, clock, status, error_type
):
    fake_github.fail_next(
        status,
        message=f"nope {status}",
        body={"message": f"nope {status}", "errors": [{"field": "labels"}]},
    )
    with pytest.raises(error_type) as caught:
        client.get_json(RUNNERS, auth=token)
    assert caught.value.status == status
    assert caught.value.message == f"nope {status}"
    assert caught.value.path == RUNNERS
    assert caught.value.errors == ({"field": "labels"},)
    assert f"GET {RUNNERS} -> {status}: nope {status}" in str(caught.value)
    assert len(fake_github.calls("GET", RUNNERS)) == 1
    assert clock.sleeps == []


def test_non_json_error_body_is_reported_as_text(client, fake_github, token):
    fake_github.fail_next(404, body="plain text from a proxy")
    with pytest.raises(GitHubNotFound, match="plain text from a proxy"):
        client.get_json(RUNNERS, auth=token)


def test_5xx_is_retried_with_growing_jittered_backoff_then_succeeds(
    client, fake_github, token, clock
):
    fake_github.fail_next(502, times=2, message="Server Error")
    assert client.get_json(RUNNERS, auth=token)["runners"] == []
    assert len(fake_github.calls("GET", RUNNERS)) == 3
    # jitter() == 0 gives the lower bound: half of 1 s, then half of 2 s.
    assert clock.sleeps == [0.5, 1.0]


def test_5xx_that_persists_raises_a_transient_server_error_after_bounded_attempts(
    client, fake_github, token, clock
):
    fake_github.fail_next(503, times=100, message="Service Unavailable")
    with pytest.raises(GitHubServerError) as caught:
        client.get_json(RUNNERS, auth=token)
    assert caught.value.status == 503 and caught.value.transient
    assert len(fake_github.calls("GET", RUNNERS)) == client.retry.max_attempts
    assert len(clock.sleeps) == client.retry.max_attempts - 1


def test_backoff_never_spins_even_when_jitter_is_zero_and_is_capped(fake_github, clock):
    client = GitHubClient(
        fake_github.base_url,
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda: 1.0,
        retry=RetryPolicy(max_attempts=8, backoff_base=1.0, backoff_cap=4.0),
    )
    fake_github.fail_next(500, times=100)
    with pytest.raises(GitHubServerError):
        client.get_json("/orgs/acme/actions/runners", auth=None)
    assert clock.sleeps == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]


def test_retry_after_is_honoured_on_a_secondary_rate_limit(client, fake_github, token, clock):
    fake_github.fail_next(
        403,
        headers={"retry-after": "7"},
        message="You have exceeded a secondary rate limit. Please wait a few minutes.",
    )
    assert client.get_json(RUNNERS, auth=token)["total_count"] == 0
    assert clock.sleeps == [7.0]
    first, second = fake_github.calls("GET", RUNNERS)
    assert second.at - first.at >= 7


def test_primary_limit_waits_until_x_ratelimit_reset(client, fake_github, token, clock):
    reset = int(clock()) + 30
    fake_github.fail_next(
        403,
        headers={
            "x-ratelimit-remaining": "0",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "core",
        },
        message="API rate limit exceeded for installation ID 7.",
    )
    client.get_json(RUNNERS, auth=token)
    assert clock.sleeps == [31.0]
    assert fake_github.calls("GET", RUNNERS)[1].at >= reset
    assert client.rate_limit is not None and client.rate_limit.remaining == 0


def test_429_with_x_ratelimit_reset_is_also_a_rate_limit(client, fake_github, token, clock):
    fake_github.fail_next(
        429, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(clock()) + 5)}
    )
    client.get_json(RUNNERS, auth=token)
    assert clock.sleeps == [6.0]


def test_secondary_limit_without_headers_waits_a_minute_then_gives_up_with_retry_at(
    client, fake_github, token, clock
):
    fake_github.fail_next(403, times=5, message="You have exceeded a secondary rate limit")
    start = clock()
    with pytest.raises(GitHubRateLimited) as caught:
        client.get_json(RUNNERS, auth=token)
    # 60 s is within the policy's 60 s; the doubled 120 s is not: raise, don't sleep it.
    assert clock.sleeps == [60.0]
    assert caught.value.transient
    assert caught.value.retry_at == pytest.approx(start + 60 + 120)
    assert len(fake_github.calls("GET", RUNNERS)) == 2


def test_a_rate_limit_longer_than_the_allowed_wait_is_raised_without_sleeping(
    client, fake_github, token, clock
):
    fake_github.fail_next(429, headers={"retry-after": "3600"}, message="slow down")
    with pytest.raises(GitHubRateLimited) as caught:
        client.get_json(RUNNERS, auth=token)
    assert clock.sleeps == []
    assert caught.value.retry_at == pytest.approx(clock() + 3600)
    assert caught.value.status == 429
    assert len(fake_github.calls("GET", RUNNERS)) == 1


def test_rate_limit_retries_are_bounded_too(client, fake_github, token, clock):
    fake_github.fail_next(
        403, times=100, headers={"retry-after": "1"}, message="secondary rate limit"
    )
    with pytest.raises(GitHubRateLimited):
        client.get_json(RUNNERS, auth=token)
    assert len(fake_github.calls("GET", RUNNERS)) == client.retry.max_attempts


def test_retry_after_as_an_http_date(client, fake_github, token, clock):
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(clock() + 12))
    fake_github.fail_next(429, headers={"retry-after": when})
    client.get_json(RUNNERS, auth=token)
    assert clock.sleeps == [pytest.approx(12.0)]


def test_a_plain_403_is_forbidden_not_a_rate_limit(client, fake_github, token, clock):
    fake_github.fail_next(
        403,
        headers={"x-ratelimit-remaining": "4000"},
        message="Resource not accessible by integration",
    )
    with pytest.raises(GitHubForbidden, match="Resource not accessible by integration"):
        client.get_json(RUNNERS, auth=token)
    assert clock.sleeps == []


def test_connection_errors_are_retried_then_raised_as_unavailable(clock):
    client = GitHubClient(
        "http://127.0.0.1:9",
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda: 0.0,
        retry=RetryPolicy(max_attempts=3),
        timeout=(0.5, 0.5),
    )
    with pytest.raises(GitHubUnavailable) as caught:
        client.get_json("/app", auth=None)
    assert caught.value.status is None and caught.value.transient
    assert "no response" in str(caught.value)
    assert len(clock.sleeps) == 2


def test_read_timeout_is_enforced(httpserver, clock):
    def slow(_request):
        time.sleep(0.3)
        from werkzeug import Response

        return Response("{}", content_type="application/json")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    client = GitHubClient(
        httpserver.url_for("/"),
        sleep=clock.sleep,
        clock=clock,
        retry=RetryPolicy(max_attempts=1),
        timeout=(1.0, 0.1),
    )
    started = time.monotonic()
    with pytest.raises(GitHubUnavailable, match="Timeout"):
        client.get_json("/slow", auth=None)
    assert time.monotonic() - started < 0.3


def test_pagination_follows_link_next_until_the_last_page(client, fake_github, token):
    for n in range(5):
        fake_github.add_runner("/orgs/acme", f"runner-{n}")
    names = [
        r["name"] for r in client.paginate(RUNNERS, auth=token, item_key="runners", per_page=2)
    ]
    assert names == [f"runner-{n}" for n in range(5)]
    pages = fake_github.calls("GET", RUNNERS)
    assert [p.args.get("page") for p in pages] == [None, "2", "3"]
    assert all(p.args["per_page"] == "2" for p in pages)


def test_pagination_refuses_to_send_the_token_to_another_origin(client, httpserver, token):
    httpserver.clear()
    httpserver.expect_request("/evil").respond_with_json(
        {"runners": [{"id": 1}]},
        headers={"Link": '<https://attacker.example/steal?page=2>; rel="next"'},
    )
    with pytest.raises(ValueError, match="another origin"):
        list(client.paginate("/evil", auth=token, item_key="runners"))


def test_unexpected_page_shape_is_an_error(client, httpserver):
    httpserver.clear()
    httpserver.expect_request("/odd").respond_with_json({"something": "else"})
    with pytest.raises(GitHubError, match="expected a list under 'runners'"):
        list(client.paginate("/odd", auth=None, item_key="runners"))


def test_paths_must_be_absolute(client):
    with pytest.raises(ValueError, match="must start with '/'"):
        client.get_json("orgs/acme", auth=None)


def test_uses_the_given_session(fake_github, clock):
    session = requests.Session()
    client = GitHubClient(fake_github.base_url, session=session, clock=clock, sleep=clock.sleep)
    fake_github.fail_next(404)
    with pytest.raises(GitHubNotFound):
        client.get_json("/anything", auth=None)
    client.close()


def test_fake_clock_is_the_only_time_that_passes(clock: FakeClock):
    clock.sleep(5)
    assert clock.sleeps == [5] and clock() == 1_800_000_005.0
