"""Handlers without AWS: the webhook function's answers (properties 12, 13) and the scaler's
partial batch responses (property 25), with a stand-in runtime.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fleet.aws.handlers import lifecycle, scaler, webhook
from fleet.aws.handlers.settings import Settings
from fleet.core.webhook import QueuedDelivery
from tests.fakes.payloads import signed, workflow_job

pytestmark = pytest.mark.unit

SECRET = "webhook-secret-for-tests"
ENV = {
    "FLEET_NAME": "main",
    "FLEET_GITHUB_SCOPE": "acme",
    "FLEET_RUNNER_LABELS": "self-hosted,linux,fleet-a",
    "FLEET_APP_ID_PARAMETER": "/f/app-id",
    "FLEET_APP_PRIVATE_KEY_PARAMETER": "/f/private-key",
    "FLEET_WEBHOOK_SECRET_PARAMETER": "/f/webhook-secret",
    "FLEET_ASG_NAME": "runner-fleet-main",
    "FLEET_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/k",
    "FLEET_JIT_PARAMETER_TEMPLATE": "/f/runners/{instance_id}/jitconfig",
    "FLEET_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
    "FLEET_LEDGER_TABLE": "ledger",
    "FLEET_AWS_ACCOUNT_ID": "123456789012",
    "FLEET_MAX_SIZE": "10",
    "AWS_REGION": "eu-west-1",
}


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Op")


@dataclass
class StubQueue:
    sent: list[QueuedDelivery] = field(default_factory=list)
    fail: bool = False

    def send(self, delivery: QueuedDelivery) -> str:
        if self.fail:
            raise client_error("ServiceUnavailable")
        self.sent.append(delivery)
        return "m-1"


@dataclass
class StubLedger:
    recorded: list[Any] = field(default_factory=list)
    fail_jobs: set[int] = field(default_factory=set)

    def record(self, event):
        if event.job_id in self.fail_jobs:
            raise client_error("ProvisionedThroughputExceededException")
        self.recorded.append(event)
        return None, True


class StubRuntime:
    def __init__(self, env: dict[str, str] | None = None, *, secret: str | None = SECRET) -> None:
        self.settings = Settings.from_env(env or ENV)
        self.queue = StubQueue()
        self.ledger = StubLedger()
        self._secret = secret
        self.secret_reads = 0

    def webhook_secret(self) -> str:
        self.secret_reads += 1
        if self._secret is None:
            raise client_error("ThrottlingException")
        return self._secret

    @property
    def github(self):  # the webhook and the batch path must never need GitHub
        raise AssertionError("GitHub used")


def url_event(headers: dict[str, str], body: bytes, *, b64: bool = True, method: str = "POST"):
    return {
        "version": "2.0",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": method}},
        "body": base64.b64encode(body).decode() if b64 else body.decode(),
        "isBase64Encoded": b64,
    }


def test_property_12_githubs_published_test_vector_is_accepted():
    """docs.github.com, "Validating webhook deliveries": secret, payload and signature."""
    rt = StubRuntime(secret="It's a Secret to Everybody")
    headers = {
        "X-Hub-Signature-256": (
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        ),
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "1",
    }
    answer = webhook.handle(url_event(headers, b"Hello, World!"), rt)
    assert answer["statusCode"] == 200
    headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"][:-1] + "f"
    assert webhook.handle(url_event(headers, b"Hello, World!"), rt)["statusCode"] == 401
    assert rt.queue.sent == []


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h: h.pop("X-Hub-Signature-256"), id="missing signature"),
        pytest.param(lambda h: h.update({"X-Hub-Signature-256": "sha256=" + "0" * 64}), id="bad"),
        pytest.param(lambda h: h.update({"X-Hub-Signature-256": "md5=abc"}), id="malformed"),
    ],
)
def test_property_12_missing_or_bad_signatures_are_rejected(mutate):
    rt = StubRuntime()
    headers, body = signed(workflow_job("queued"))
    mutate(headers)
    assert webhook.handle(url_event(headers, body), rt)["statusCode"] == 401
    assert rt.queue.sent == []


def test_property_13_accepted_delivery_is_one_queue_send_and_nothing_else():
    rt = StubRuntime()
    headers, body = signed(workflow_job("queued"), delivery="d-42")
    started = time.perf_counter()
    answer = webhook.handle(url_event(headers, body), rt)
    elapsed = time.perf_counter() - started
    assert answer["statusCode"] == 202
    assert [d.delivery_id for d in rt.queue.sent] == ["d-42"]
    assert rt.ledger.recorded == []  # the work happens behind the queue
    assert elapsed < 0.5  # the pure pipeline; see bench/control_plane.py for figures
    # A plain (not base64) body is accepted too.
    assert webhook.handle(url_event(headers, body, b64=False), rt)["statusCode"] == 202


def test_webhook_answers_503_when_it_cannot_queue_or_read_its_secret():
    rt = StubRuntime()
    rt.queue.fail = True
    headers, body = signed(workflow_job("queued"))
    assert webhook.handle(url_event(headers, body), rt)["statusCode"] == 503
    rt = StubRuntime(secret=None)
    assert webhook.handle(url_event(headers, body), rt)["statusCode"] == 503


def test_webhook_refuses_other_methods_bad_base64_and_other_repositories():
    rt = StubRuntime()
    headers, body = signed(workflow_job("queued"))
    assert webhook.handle(url_event(headers, body, method="GET"), rt)["statusCode"] == 405
    broken = url_event(headers, body)
    broken["body"] = "***"
    assert webhook.handle(broken, rt)["statusCode"] == 400
    repo_rt = StubRuntime({**ENV, "FLEET_GITHUB_SCOPE": "acme/other"})
    assert webhook.handle(url_event(headers, body), repo_rt)["statusCode"] == 204
    assert repo_rt.queue.sent == []


def sqs_record(message_id: str, body: Any) -> dict[str, Any]:
    return {"messageId": message_id, "body": body if isinstance(body, str) else json.dumps(body)}


def test_property_25_batch_reports_each_failed_record_and_keeps_the_rest(monkeypatch):
    rt = StubRuntime()
    ok = QueuedDelivery.from_message(
        {
            "delivery_id": "a",
            "job": {
                "job_id": 1,
                "state": "queued",
                "run_id": 2,
                "repository": "acme/app",
                "created_at": "2026-11-24T10:00:00+00:00",
            },
        }
    )
    throttled = {**ok.to_message(), "delivery_id": "b"}
    throttled["job"] = {**throttled["job"], "job_id": 9}
    rt.ledger.fail_jobs = {9}
    cycles: list[str] = []

    def failing_cycle(runtime):
        cycles.append("ran")
        raise RuntimeError("GitHub exploded")

    monkeypatch.setattr(scaler, "run_cycle", failing_cycle)
    answer = scaler.handle(
        {
            "Records": [
                sqs_record("m-ok", ok.to_message()),
                sqs_record("m-poison", "not json"),
                sqs_record("m-missing", {"delivery_id": "x"}),
                sqs_record("m-throttled", throttled),
            ]
        },
        rt,
    )
    assert answer == {
        "batchItemFailures": [
            {"itemIdentifier": "m-poison"},
            {"itemIdentifier": "m-missing"},
            {"itemIdentifier": "m-throttled"},
        ]
    }
    assert [e.job_id for e in rt.ledger.recorded] == [1]
    assert cycles == ["ran"]  # a failed cycle after recording does not fail the batch


def test_lifecycle_ignores_other_groups_and_other_events():
    rt = StubRuntime()
    other_group = {
        "detail-type": lifecycle.LAUNCH,
        "detail": {"AutoScalingGroupName": "someone-else", "EC2InstanceId": "i-1"},
    }
    assert lifecycle.handle(other_group, rt) == {"result": "not-this-fleet"}
    assert lifecycle.handle({"detail-type": "EC2 Instance State-change"}, rt) == {
        "result": "ignored"
    }


def test_lifecycle_leaves_a_warm_pool_launch_to_the_instance():
    """Completing it here would let AWS stop the instance in the middle of its bake; the
    instance completes it once prepared (StubRuntime has no group and no GitHub to call)."""
    rt = StubRuntime()
    event = {
        "detail-type": lifecycle.LAUNCH,
        "detail": {
            "AutoScalingGroupName": rt.settings.asg_name,
            "EC2InstanceId": "i-0warm",
            "LifecycleHookName": "launch",
            "LifecycleActionToken": "t-1",
            "Origin": "EC2",
            "Destination": "WarmPool",
        },
    }
    assert lifecycle.handle(event, rt)["result"].startswith("warm-pool")
