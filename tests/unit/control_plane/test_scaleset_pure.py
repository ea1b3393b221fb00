"""The scale-set client's pure parts: the desired-count rule (by property), message parsing,
targets and config URLs, admin-token expiry."""

from __future__ import annotations

import json

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.github.errors import GitHubError
from fleet.core.github.scaleset.auth import token_expiry
from fleet.core.github.scaleset.errors import AgentExists, AgentNotFound, JobStillRunning, typed
from fleet.core.github.scaleset.messages import MessageFormatError, parse_message
from fleet.core.github.scaleset.models import ScaleSet, Session
from fleet.core.github.scaleset.target import Target, web_url_for
from fleet.core.scaling import desired_runners

pytestmark = pytest.mark.unit

counts = st.integers(min_value=0, max_value=10_000)


@given(assigned=counts, min_idle=counts, max_runners=counts)
def test_desired_is_min_of_max_and_min_idle_plus_assigned(assigned, min_idle, max_runners):
    desired = desired_runners(assigned, min_idle=min_idle, max_runners=max_runners)
    assert desired == min(max_runners, min_idle + assigned)
    assert 0 <= desired <= max_runners


@given(assigned=counts, more=st.integers(1, 100), min_idle=counts, max_runners=counts)
def test_desired_never_falls_when_more_jobs_are_assigned(assigned, more, min_idle, max_runners):
    before = desired_runners(assigned, min_idle=min_idle, max_runners=max_runners)
    after = desired_runners(assigned + more, min_idle=min_idle, max_runners=max_runners)
    assert before <= after


@given(assigned=counts, min_idle=counts, max_runners=counts)
def test_below_the_ceiling_every_assigned_job_has_a_runner_and_min_idle_spare(
    assigned, min_idle, max_runners
):
    desired = desired_runners(assigned, min_idle=min_idle, max_runners=max_runners)
    if min_idle + assigned <= max_runners:
        assert desired - assigned == min_idle


@pytest.mark.parametrize("field", ["assigned_jobs", "min_idle", "max_runners"])
def test_desired_refuses_negative_counts(field):
    values = {"assigned_jobs": 1, "min_idle": 1, "max_runners": 1, field: -1}
    with pytest.raises(ValueError, match=field):
        desired_runners(
            values["assigned_jobs"], min_idle=values["min_idle"], max_runners=values["max_runners"]
        )


def _message(body, message_type="RunnerScaleSetJobMessages"):
    return {
        "messageId": 7,
        "messageType": message_type,
        "body": json.dumps(body),
        "statistics": {"totalAssignedJobs": 2, "totalAvailableJobs": 1},
    }


def test_a_batch_is_parsed_by_type_and_unknown_types_are_kept():
    body = [
        {"messageType": "JobAvailable", "runnerRequestId": 1, "acquireJobUrl": "/a"},
        {"messageType": "JobAssigned", "runnerRequestId": 1},
        {"messageType": "JobStarted", "runnerRequestId": 2, "runnerId": 5, "runnerName": "r5"},
        {
            "messageType": "JobCompleted",
            "runnerRequestId": 3,
            "result": "canceled",
            "runnerName": "r6",
            "finishTime": "0001-01-01T00:00:00Z",
        },
        {"messageType": "SomethingNew", "x": 1},
    ]
    message = parse_message(_message(body))
    assert message.message_id == 7
    assert message.statistics.total_assigned_jobs == 2
    assert [m.runner_request_id for m in message.available] == [1]
    assert message.available[0].acquire_job_url == "/a"
    assert [m.runner_request_id for m in message.assigned] == [1]
    assert (message.started[0].runner_id, message.started[0].runner_name) == (5, "r5")
    assert message.completed[0].result == "canceled"
    assert message.unknown == ({"messageType": "SomethingNew", "x": 1},)


@pytest.mark.parametrize(
    "data, problem",
    [
        (_message([], "SomethingElse"), "reads only"),
        ({"messageId": 1, "messageType": "RunnerScaleSetJobMessages", "body": "{"}, "not JSON"),
        ({"messageId": 1, "messageType": "RunnerScaleSetJobMessages", "body": "{}"}, "array"),
        (_message([{"messageType": "JobStarted"}]), "bad JobStarted"),
        ({"messageType": "RunnerScaleSetJobMessages"}, "not a scale-set message"),
    ],
)
def test_unreadable_messages_are_refused_with_the_reason(data, problem):
    with pytest.raises(MessageFormatError, match=problem):
        parse_message(data)


def test_wire_names_follow_the_service():
    wire = ScaleSet(name="fleet", runnerGroupId=3, labels=()).wire()
    assert wire == {
        "name": "fleet",
        "runnerGroupId": 3,
        "labels": [],
        "RunnerSetting": {"disableUpdate": True},
    }
    session = Session.model_validate(
        {"sessionId": "abc", "messageQueueUrl": "https://q", "messageQueueAccessToken": "secret"}
    )
    assert "secret" not in repr(session)


@pytest.mark.parametrize(
    "text, path, token_path",
    [
        ("my-org", "my-org", "/orgs/my-org/actions/runners/registration-token"),
        ("o/r", "o/r", "/repos/o/r/actions/runners/registration-token"),
        ("enterprises/e1", "enterprises/e1", "/enterprises/e1/actions/runners/registration-token"),
    ],
)
def test_targets_name_their_registration_endpoint_and_config_url(text, path, token_path):
    target = Target.parse(text)
    assert target.path == path
    assert target.registration_token_path == token_path
    assert target.config_url("https://github.com/") == f"https://github.com/{path}"


@pytest.mark.parametrize(
    "api, web",
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.acme.ghe.com/", "https://acme.ghe.com"),
        ("https://ghes.example/api/v3", "https://ghes.example"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_web_url_follows_from_the_api_url(api, web):
    assert web_url_for(api) == web


def test_bad_targets_and_urls_are_refused():
    with pytest.raises(ValueError, match="http"):
        web_url_for("ftp://x")
    with pytest.raises(ValueError, match="enterprise slug"):
        Target(enterprise="bad slug")
    with pytest.raises(ValueError, match="organization/repository or an enterprise"):
        Target()


def test_admin_token_expiry_is_read_without_verifying():
    token = jwt.encode({"exp": 1234}, "any-key-of-the-service-0123456789abc", algorithm="HS256")
    assert token_expiry(token) == 1234.0
    with pytest.raises(ValueError, match="exp"):
        token_expiry(jwt.encode({"x": 1}, "any-key-of-the-service-0123456789abc"))
    with pytest.raises(ValueError, match="not a JWT"):
        token_expiry("nope")


@pytest.mark.parametrize(
    "type_name, cls",
    [
        ("GitHub.DistributedTask.WebApi.JobStillRunningException", JobStillRunning),
        ("AgentNotFoundException", AgentNotFound),
        ("AgentExistsException", AgentExists),
    ],
)
def test_named_exceptions_become_typed_errors(type_name, cls):
    error = typed(GitHubError("DELETE", "/x", 400, "no", type_name=type_name))
    assert isinstance(error, cls) and error.status == 400 and error.type_name == type_name
    plain = GitHubError("DELETE", "/x", 400, "no", type_name="Other")
    assert typed(plain) is plain
