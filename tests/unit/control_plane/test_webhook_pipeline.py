"""The webhook pipeline (properties 12-14, fault scenario 1): every bad delivery gets the right
status and enqueues nothing; a good one enqueues one compact event keyed by its delivery id.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import json

import pytest

from fleet.core import webhook as pipeline
from fleet.core.ledger import JobState
from fleet.core.webhook import QueuedDelivery, handle_delivery
from tests.fakes.payloads import FLEET_LABELS, SECRET, signed, without, workflow_job

pytestmark = pytest.mark.unit

DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"


def handle(headers, body, **kwargs):
    return handle_delivery(headers, body, secret=SECRET, fleet_labels=FLEET_LABELS, **kwargs)


def test_a_signed_queued_job_for_our_labels_is_accepted_and_enqueued():
    outcome = handle(*signed(workflow_job("queued")))
    assert outcome.status == 202
    event = outcome.event
    assert isinstance(event, QueuedDelivery)
    assert event.delivery_id == DELIVERY
    assert event.job.job_id == 29679449
    assert event.job.state is JobState.QUEUED
    assert event.job.repository == "acme/app"
    assert event.job.owner == "acme"
    assert event.job.installation_id == 7
    assert event.job.labels == ("self-hosted", "linux", "fleet-a")


def test_the_enqueued_message_is_json_and_round_trips():
    outcome = handle(*signed(workflow_job("in_progress", runner_name="fleet-a-1")))
    message = json.loads(json.dumps(outcome.event.to_message()))
    assert message["delivery_id"] == DELIVERY and message["event"] == "workflow_job"
    assert QueuedDelivery.from_message(message) == outcome.event
    assert len(json.dumps(message)) < 2048, "compact: far below SQS's 256 KiB"


def test_header_names_are_case_insensitive_like_api_gateway_sends_them():
    headers, body = signed(workflow_job())
    outcome = handle({k.lower(): v for k, v in headers.items()}, body)
    assert outcome.status == 202


def test_a_redelivery_keeps_its_delivery_id_so_the_queue_can_dedupe_it():
    first = handle(*signed(workflow_job()))
    again = handle(*signed(workflow_job()))
    assert first.event == again.event
    assert first.event.delivery_id == again.event.delivery_id


def forged(headers):
    return {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}


def wrong_secret(_headers):
    return signed(workflow_job(), secret="attacker-guess")[0]


def unsigned(headers):
    return {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}


def sha1_only(headers):
    return {**unsigned(headers), "X-Hub-Signature": "sha1=0123456789abcdef0123456789abcdef01234567"}


@pytest.mark.parametrize("tamper", [forged, wrong_secret, unsigned, sha1_only])
def test_forged_or_unsigned_deliveries_get_401_and_enqueue_nothing(tamper):
    headers, body = signed(workflow_job())
    outcome = handle(tamper(headers), body)
    assert (outcome.status, outcome.event) == (401, None)


def test_a_body_changed_after_signing_gets_401():
    headers, body = signed(workflow_job(labels=["self-hosted", "ubuntu-latest"]))
    tampered = body.replace(b"ubuntu-latest", b"fleet-a")
    assert handle(headers, tampered).status == 401


def test_the_signature_is_checked_before_any_parsing(monkeypatch):
    def explode(*_args, **_kwargs):
        raise AssertionError("parsed before the signature was checked")

    monkeypatch.setattr(pipeline.json, "loads", explode)
    monkeypatch.setattr(pipeline, "parse_workflow_job_event", explode)
    headers, body = signed(workflow_job())
    assert handle(unsigned(headers), b"{not json").status == 401
    assert handle(forged(headers), body).status == 401


def test_oversized_bodies_get_413_even_when_signed():
    headers, body = signed(workflow_job())
    outcome = handle(headers, body, max_body_bytes=len(body) - 1)
    assert (outcome.status, outcome.event) == (413, None)
    assert handle(headers, body, max_body_bytes=len(body)).status == 202


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"\xff\xfe\x00", b"", b"[]", b'"a string"', b"null"],
)
def test_bodies_that_are_not_a_json_object_get_400(raw):
    headers, body = signed(None, body=raw)
    outcome = handle(headers, body)
    assert (outcome.status, outcome.event) == (400, None)


@pytest.mark.parametrize(
    "payload",
    [
        without(workflow_job(), "workflow_job"),
        without(workflow_job(), "workflow_job", "id"),
        without(workflow_job(), "repository"),
        {**workflow_job(), "workflow_job": {**workflow_job()["workflow_job"], "labels": "x"}},
        {**workflow_job(), "workflow_job": {**workflow_job()["workflow_job"], "id": "DROP"}},
    ],
)
def test_payloads_that_fail_the_model_get_400_without_echoing_values(payload):
    outcome = handle(*signed(payload))
    assert (outcome.status, outcome.event) == (400, None)
    assert "workflow_job" in outcome.reason or "repository" in outcome.reason
    assert "DROP" not in outcome.reason


def test_missing_or_malformed_delivery_id_gets_400():
    headers, body = signed(workflow_job())
    for bad in (
        {k: v for k, v in headers.items() if k != "X-GitHub-Delivery"},
        {**headers, "X-GitHub-Delivery": "not a guid!"},
    ):
        outcome = handle(bad, body)
        assert (outcome.status, outcome.event) == (400, None)


def test_form_encoded_webhooks_get_415_with_a_hint():
    headers, body = signed(workflow_job())
    outcome = handle({**headers, "Content-Type": "application/x-www-form-urlencoded"}, body)
    assert (outcome.status, outcome.event) == (415, None)
    assert "application/json" in outcome.reason


@pytest.mark.parametrize("event_name", ["push", "workflow_run", "check_run", ""])
def test_other_events_are_ignored_with_204(event_name):
    outcome = handle(*signed({"zen": "x"}, event=event_name))
    assert (outcome.status, outcome.event) == (204, None)


def test_ping_gets_200():
    outcome = handle(*signed({"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping"))
    assert (outcome.status, outcome.event) == (200, None)


def test_unknown_workflow_job_actions_are_ignored_not_refused():
    outcome = handle(*signed({**workflow_job(), "action": "some_future_action"}))
    assert (outcome.status, outcome.event) == (204, None)


@pytest.mark.parametrize(
    "labels", [["ubuntu-latest"], ["self-hosted", "linux", "gpu"], ["self-hosted", "windows"], []]
)
def test_jobs_whose_labels_this_fleet_does_not_serve_are_ignored(labels):
    outcome = handle(*signed(workflow_job(labels=labels)))
    assert (outcome.status, outcome.event) == (204, None)


def test_jobs_of_owners_the_fleet_does_not_serve_are_ignored():
    headers, body = signed(workflow_job())
    assert handle(headers, body, allowed_owners=["ACME"]).status == 202
    outcome = handle(headers, body, allowed_owners=["someone-else"])
    assert (outcome.status, outcome.event) == (204, None)


def test_every_action_of_a_served_job_is_enqueued():
    for action, state in [
        ("waiting", JobState.WAITING),
        ("queued", JobState.QUEUED),
        ("in_progress", JobState.IN_PROGRESS),
        ("completed", JobState.COMPLETED),
    ]:
        outcome = handle(*signed(workflow_job(action, runner_name="r1", conclusion="success")))
        assert outcome.status == 202 and outcome.event.job.state is state


def test_no_secret_configured_is_an_error_not_an_open_door():
    headers, body = signed(workflow_job())
    with pytest.raises(ValueError, match="secret"):
        handle_delivery(headers, body, secret="", fleet_labels=FLEET_LABELS)
