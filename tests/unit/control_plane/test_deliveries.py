"""Finding failed webhook deliveries and redelivering them (property 15), against the fake.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.core.github.deliveries import (
    HookDelivery,
    failed_deliveries,
    list_deliveries,
    redeliver_failed,
)
from fleet.core.github.errors import GitHubServerError

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def at(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


def delivery(guid: str, code: int, minutes_ago: float, *, id: int, event: str = "workflow_job"):
    return HookDelivery(
        id=id, guid=guid, delivered_at=at(minutes_ago), status_code=code, event=event
    )


def test_list_stops_paging_once_deliveries_are_older_than_since(app, fake_github):
    for n in range(250):
        fake_github.add_delivery(f"g{n}", 200, at(n))
    found = list_deliveries(app.client, app.jwt_auth, since=at(120))
    assert len(found) == 121
    assert found[0].guid == "g0", "newest first"
    # 121 items at 100 per page: two pages read, the third never asked for.
    assert len(fake_github.calls("GET", "/app/hook/deliveries")) == 2


def test_list_needs_an_aware_since(app):
    with pytest.raises(ValueError, match="timezone"):
        list_deliveries(app.client, app.jwt_auth, since=datetime(2026, 1, 1))


def test_a_guid_is_failed_only_if_no_attempt_succeeded():
    deliveries = [
        delivery("ok", 202, 10, id=1),
        delivery("failed-then-ok", 500, 9, id=2),
        delivery("failed-then-ok", 202, 8, id=3),
        delivery("failed", 500, 7, id=4),
        delivery("failed", 502, 6, id=5),
        delivery("timed-out", 0, 5, id=6),
        delivery("other-event", 500, 4, id=7, event="push"),
    ]
    retry, gave_up = failed_deliveries(deliveries)
    assert [(d.guid, d.id) for d in retry] == [("failed", 5), ("timed-out", 6)]
    assert gave_up == []


def test_a_guid_failing_every_time_is_given_up_after_max_attempts():
    deliveries = [delivery("poison", 401, n, id=n) for n in range(1, 6)]
    retry, gave_up = failed_deliveries(deliveries, max_attempts=5)
    assert retry == [] and gave_up == ["poison"]


def test_redeliver_failed_posts_attempts_for_failed_workflow_jobs_only(app, fake_github):
    fake_github.add_delivery("ok", 202, at(30))
    failed = fake_github.add_delivery("lost", 502, at(20))
    fake_github.add_delivery("recovered", 500, at(15))
    fake_github.add_delivery("recovered", 202, at(14), redelivery=True)
    fake_github.add_delivery("push", 500, at(10), event="push")
    report = redeliver_failed(app.client, app.jwt_auth, since=at(60), now=NOW)
    assert fake_github.redelivered == [failed]
    assert report.redelivered == ("lost",)
    assert report.examined == 5
    assert report.errors == ()


def test_redelivery_looks_back_at_most_githubs_three_days(app, fake_github):
    fake_github.add_delivery("too-old", 500, NOW - timedelta(days=3, minutes=1))
    fake_github.add_delivery("recent", 500, at(1))
    report = redeliver_failed(app.client, app.jwt_auth, since=NOW - timedelta(days=30), now=NOW)
    assert report.redelivered == ("recent",)


def test_a_transient_github_error_stops_the_pass_and_is_raised(app, fake_github):
    fake_github.add_delivery("lost", 502, at(20))
    fake_github.fail_next(503, times=100, path_prefix="/app/hook/deliveries/")
    with pytest.raises(GitHubServerError):
        redeliver_failed(app.client, app.jwt_auth, since=at(60), now=NOW)


def test_a_refused_redelivery_is_recorded_and_the_pass_goes_on(app, fake_github):
    fake_github.add_delivery("refused", 502, at(20))
    second = fake_github.add_delivery("lost", 502, at(10))
    fake_github.fail_next(422, message="delivery too old", path_prefix="/app/hook/deliveries/")
    report = redeliver_failed(app.client, app.jwt_auth, since=at(60), now=NOW)
    assert report.redelivered == ("lost",)
    assert fake_github.redelivered == [second]
    assert len(report.errors) == 1 and report.errors[0].startswith("refused: ")


def test_redeliveries_per_pass_are_limited(app, fake_github):
    for n in range(10):
        fake_github.add_delivery(f"lost-{n}", 500, at(n + 1))
    report = redeliver_failed(app.client, app.jwt_auth, since=at(60), now=NOW, limit=3)
    assert report.redelivered == ("lost-9", "lost-8", "lost-7"), "oldest first"
