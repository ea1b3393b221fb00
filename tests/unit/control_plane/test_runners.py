"""Runners API: JIT configs (org and repo), list/get/delete, runner groups, JIT rate limit."""

from __future__ import annotations

import pytest

from fleet.core.github.errors import GitHubConflict, GitHubValidationError
from fleet.core.github.ratelimit import RateLimitExceeded, TokenBucket
from fleet.core.github.runners import (
    JitConfig,
    Runner,
    RunnerBusyError,
    RunnersAPI,
    Scope,
    validate_labels,
)

pytestmark = pytest.mark.unit

LABELS = ["self-hosted", "linux", "fleet-a"]


@pytest.fixture
def org_runners(app, fake_github, clock) -> RunnersAPI:
    fake_github.install("acme", 7)
    return RunnersAPI(
        app.client, Scope.for_org("acme"), app.installation_auth(7), sleep=clock.sleep
    )


@pytest.fixture
def repo_runners(app, fake_github, clock) -> RunnersAPI:
    fake_github.install("someone/project", 8)
    return RunnersAPI(
        app.client,
        Scope.for_repository("someone/project"),
        app.installation_auth(8),
        sleep=clock.sleep,
    )


def test_org_jit_config_sends_name_group_labels_and_work_folder(org_runners, fake_github):
    jit = org_runners.generate_jitconfig("fleet-a-i-0abc", LABELS, runner_group_id=42)
    (call,) = fake_github.calls("POST", "/orgs/acme/actions/runners/generate-jitconfig")
    assert call.body == {
        "name": "fleet-a-i-0abc",
        "runner_group_id": 42,
        "labels": LABELS,
        "work_folder": "_work",
    }
    assert isinstance(jit, JitConfig)
    assert jit.runner.name == "fleet-a-i-0abc"
    assert jit.runner.labels == tuple(LABELS)
    assert jit.encoded_jit_config.startswith("JITSECRET-")


def test_jit_config_never_shows_in_a_repr(org_runners):
    jit = org_runners.generate_jitconfig("r1", LABELS, runner_group_id=42)
    assert jit.encoded_jit_config not in repr(jit)


def test_org_jit_needs_an_explicit_runner_group(org_runners, fake_github):
    with pytest.raises(ValueError, match="runner_group_id"):
        org_runners.generate_jitconfig("r1", LABELS)
    assert fake_github.calls("POST", "/orgs") == []


def test_repo_jit_config_uses_the_repository_prefix_and_group_1(repo_runners, fake_github):
    repo_runners.generate_jitconfig("r1", LABELS)
    (call,) = fake_github.calls("POST", "/repos/someone/project/actions/runners/generate-jitconfig")
    assert call.body["runner_group_id"] == 1


@pytest.mark.parametrize("labels", [[], ["  "], [f"l{n}" for n in range(101)]])
def test_bad_label_sets_are_refused_before_calling_github(labels):
    with pytest.raises(ValueError, match="label"):
        validate_labels(labels)


def test_duplicate_labels_are_sent_once_case_insensitively():
    assert validate_labels(["Linux", "linux", " gpu "]) == ["Linux", "gpu"]


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "semi;colon"])
def test_bad_runner_names_are_refused(org_runners, name):
    with pytest.raises(ValueError, match="runner name"):
        org_runners.generate_jitconfig(name, LABELS, runner_group_id=1)


def test_a_lost_registration_under_the_same_name_is_replaced(org_runners, fake_github):
    """A 5xx after GitHub registered the runner, then a retry: the first config is lost."""
    first = org_runners.generate_jitconfig("r1", LABELS, runner_group_id=42)
    second = org_runners.generate_jitconfig("r1", LABELS, runner_group_id=42)
    assert second.runner.id != first.runner.id
    assert org_runners.get_runner(first.runner.id) is None
    assert [r.name for r in org_runners.list_runners()] == ["r1"]


def test_a_name_conflict_with_a_busy_runner_is_raised(org_runners, fake_github):
    fake_github.add_runner("/orgs/acme", "r1", busy=True)
    with pytest.raises(GitHubConflict, match="already exists"):
        org_runners.generate_jitconfig("r1", LABELS, runner_group_id=42)


def test_a_name_conflict_is_raised_when_asked_not_to_replace(org_runners):
    org_runners.generate_jitconfig("r1", LABELS, runner_group_id=42)
    with pytest.raises(GitHubConflict, match="already exists"):
        org_runners.generate_jitconfig("r1", LABELS, runner_group_id=42, replace_stale=False)


def test_list_runners_reads_every_page(org_runners, fake_github):
    for n in range(230):
        fake_github.add_runner("/orgs/acme", f"r{n}", busy=n % 2 == 0)
    runners = org_runners.list_runners()
    assert len(runners) == 230
    assert len(fake_github.calls("GET", "/orgs/acme/actions/runners")) == 3
    assert all(isinstance(r, Runner) for r in runners)
    assert runners[0].busy and not runners[1].busy
    assert runners[0].labels == ("self-hosted", "linux")


def test_list_runners_by_name(org_runners, fake_github):
    fake_github.add_runner("/orgs/acme", "wanted")
    fake_github.add_runner("/orgs/acme", "other")
    assert [r.name for r in org_runners.list_runners(name="wanted")] == ["wanted"]


def test_get_runner_and_a_runner_github_no_longer_knows(org_runners, fake_github):
    runner_id = fake_github.add_runner("/orgs/acme", "r1", status="offline")
    runner = org_runners.get_runner(runner_id)
    assert runner is not None and runner.id == runner_id and not runner.online
    assert org_runners.get_runner(999_999) is None


def test_delete_runner_then_deleting_again_reports_it_gone(org_runners, fake_github):
    runner_id = fake_github.add_runner("/orgs/acme", "r1")
    assert org_runners.delete_runner(runner_id) is True
    assert org_runners.delete_runner(runner_id) is False


def test_deleting_a_busy_runner_raises_runner_busy(org_runners, fake_github):
    runner_id = fake_github.add_runner("/orgs/acme", "r1", busy=True)
    with pytest.raises(RunnerBusyError, match="still running a job") as caught:
        org_runners.delete_runner(runner_id)
    assert isinstance(caught.value, GitHubValidationError)
    assert caught.value.status == 422
    assert org_runners.get_runner(runner_id) is not None


def test_runner_group_lookup_by_name(org_runners, fake_github):
    fake_github.add_group("acme", "Default", group_id=1)
    fake_github.add_group("acme", "Fleet A", group_id=42)
    assert org_runners.runner_group_id("fleet a") == 42
    with pytest.raises(LookupError, match=r"no runner group named 'missing'.*Default, Fleet A"):
        org_runners.runner_group_id("missing")


def test_repository_scope_has_only_group_1(repo_runners):
    assert repo_runners.runner_group_id("anything") == 1
    with pytest.raises(ValueError, match="only for organizations"):
        repo_runners.list_runner_groups()


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"org": "acme", "repository": "a/b"}, {"org": "bad org"}, {"repository": "no-slash"}],
)
def test_scope_is_one_valid_org_or_repository(kwargs):
    with pytest.raises(ValueError):
        Scope(**kwargs)


def test_jit_issuance_never_exceeds_the_configured_rate(app, fake_github, clock):
    fake_github.install("acme", 7)
    bucket = TokenBucket(150, burst=5, clock=clock)
    api = RunnersAPI(
        app.client,
        Scope.for_org("acme"),
        app.installation_auth(7),
        jit_bucket=bucket,
        jit_max_wait=60,
        sleep=clock.sleep,
    )
    start = clock()
    for n in range(30):
        api.generate_jitconfig(f"r{n}", LABELS, runner_group_id=42)
    calls = fake_github.calls("POST", "/orgs/acme/actions/runners/generate-jitconfig")
    assert len(calls) == 30
    # 5 at once, then 2.5 per second: 25 more take 10 s.
    assert clock() - start == pytest.approx(10.0)
    times = [c.at for c in calls]
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= 5 + 2.5 * (times[j] - times[i]) + 1e-3  # float clock


def test_jit_rate_limit_raises_before_calling_github_when_the_wait_is_too_long(
    app, fake_github, clock
):
    fake_github.install("acme", 7)
    api = RunnersAPI(
        app.client,
        Scope.for_org("acme"),
        app.installation_auth(7),
        jit_bucket=TokenBucket(6, burst=1, clock=clock),
        jit_max_wait=5,
        sleep=clock.sleep,
    )
    api.generate_jitconfig("r1", LABELS, runner_group_id=42)
    with pytest.raises(RateLimitExceeded):
        api.generate_jitconfig("r2", LABELS, runner_group_id=42)
    assert len(fake_github.calls("POST", "/orgs/acme/actions/runners/generate-jitconfig")) == 1
