"""The workflow_job model and GitHub's label matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from fleet.core.jobs import labels_match, normalize_labels, parse_workflow_job_event
from tests.fakes.payloads import without, workflow_job

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("action", ["queued", "in_progress", "completed", "waiting"])
def test_each_action_parses(action):
    event = parse_workflow_job_event(workflow_job(action, runner_name="fleet-a-1"))
    assert event.action == action
    assert event.workflow_job.id == 29679449
    assert event.workflow_job.run_id == 2832853555
    assert event.repository.full_name == "acme/app"
    assert event.owner == "acme"
    assert event.installation is not None and event.installation.id == 7
    assert event.workflow_job.created_at.tzinfo is not None


def test_queued_job_has_no_runner_yet_and_in_progress_names_it():
    queued = parse_workflow_job_event(workflow_job("queued"))
    assert queued.workflow_job.runner_name is None and queued.workflow_job.runner_id is None
    running = parse_workflow_job_event(workflow_job("in_progress", runner_name="fleet-a-1"))
    assert running.workflow_job.runner_name == "fleet-a-1"
    assert running.workflow_job.runner_id == 17


def test_completed_job_carries_its_conclusion():
    event = parse_workflow_job_event(
        workflow_job("completed", conclusion="success", completed_at="2026-11-24T12:30:00Z")
    )
    assert event.workflow_job.conclusion == "success"
    assert event.workflow_job.completed_at is not None


def test_user_owned_repository_without_organization_uses_the_repo_owner():
    event = parse_workflow_job_event(workflow_job(org=None))
    assert event.organization is None and event.owner == "acme"


def test_installation_is_optional_for_plain_repository_webhooks():
    assert parse_workflow_job_event(without(workflow_job(), "installation")).installation is None


def test_body_may_be_bytes_or_text():
    import json

    payload = workflow_job()
    assert parse_workflow_job_event(json.dumps(payload).encode()).workflow_job.id == 29679449
    assert parse_workflow_job_event(json.dumps(payload)).workflow_job.id == 29679449


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: without(p, "workflow_job", "id"),
        lambda p: without(p, "workflow_job", "labels"),
        lambda p: without(p, "workflow_job"),
        lambda p: without(p, "repository"),
        lambda p: without(p, "workflow_job", "created_at"),
        lambda p: {**p, "action": "exploded"},
        lambda p: {**p, "workflow_job": {**p["workflow_job"], "id": -1}},
        lambda p: {**p, "workflow_job": {**p["workflow_job"], "id": "abc"}},
        lambda p: {**p, "workflow_job": {**p["workflow_job"], "labels": "self-hosted"}},
        lambda p: {**p, "workflow_job": {**p["workflow_job"], "labels": [""]}},
        lambda p: {**p, "workflow_job": {**p["workflow_job"], "labels": ["x"] * 101}},
        lambda p: {**p, "workflow_job": {**p["workflow_job"], "created_at": "2026-11-24T10:00"}},
        lambda p: {**p, "workflow_job": {**p["workflow_job"], "created_at": "yesterday"}},
        lambda p: {**p, "repository": {"full_name": "not a repo"}},
        lambda p: {**p, "installation": {"id": 0}},
    ],
)
def test_invalid_payloads_are_refused(mutate):
    with pytest.raises(ValidationError):
        parse_workflow_job_event(mutate(workflow_job()))


def test_a_json_array_is_refused():
    with pytest.raises(ValueError, match="JSON object"):
        parse_workflow_job_event(b"[1, 2]")


def test_unknown_statuses_and_conclusions_are_kept_not_refused():
    payload = workflow_job("completed")
    payload["workflow_job"]["status"] = "brand_new_status"
    payload["workflow_job"]["conclusion"] = "brand_new_conclusion"
    event = parse_workflow_job_event(payload)
    assert event.workflow_job.conclusion == "brand_new_conclusion"


FLEET = ["linux", "x64", "fleet-a"]


@pytest.mark.parametrize(
    ("job_labels", "served"),
    [
        (["self-hosted", "linux", "x64"], True),
        (["self-hosted"], True),
        (["fleet-a"], True),
        (["Self-Hosted", "LINUX", "Fleet-A"], True),
        ([" linux "], True),
        (["self-hosted", "linux", "gpu"], False),
        (["ubuntu-latest"], False),
        (["self-hosted", "windows"], False),
        ([], False),
    ],
)
def test_labels_match_like_github(job_labels, served):
    assert labels_match(job_labels, FLEET) is served


def test_self_hosted_is_implied_even_if_the_fleet_does_not_list_it():
    assert labels_match(["self-hosted", "linux"], ["linux"])
    assert labels_match(["self-hosted", "linux"], ["self-hosted", "linux"])


label = st.text(alphabet="abcXYZ-_ 19", min_size=1, max_size=6)


@given(job=st.lists(label, max_size=5), runner=st.lists(label, max_size=5))
def test_match_is_case_insensitive_subset_of_runner_labels_plus_self_hosted(job, runner):
    wanted = normalize_labels(job)
    expected = bool(wanted) and wanted <= normalize_labels(runner) | {"self-hosted"}
    assert labels_match(job, runner) is expected
    assert labels_match([x.upper() for x in job], [x.lower() for x in runner]) is expected


@given(
    job=st.lists(label, max_size=5),
    runner=st.lists(label, max_size=5),
    extra=st.lists(label, max_size=3),
)
def test_more_runner_labels_never_stop_a_match(job, runner, extra):
    if labels_match(job, runner):
        assert labels_match(job, runner + extra)
