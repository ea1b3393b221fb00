"""Fault scenario 1: forged, unsigned or replayed webhooks are rejected or a no-op; nothing is
launched. Properties 12 (signature) and 14 (deduplication on X-GitHub-Delivery), end to end
through the deployed webhook function, SQS and the scaler (moto, fake GitHub).

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import json

import pytest

from fleet.core.github.signature import compute_signature
from tests.fakes.payloads import signed
from tests.integration.harness import LABELS, REPOSITORY, WEBHOOK_SECRET

pytestmark = pytest.mark.integration


def test_fault_1_forged_unsigned_and_tampered_deliveries_are_rejected_and_launch_nothing(
    make_fleet,
):
    fleet = make_fleet(max_size=3)
    job = fleet.github.new_job(REPOSITORY, LABELS, fleet.clock.now())
    data = fleet.payload(job, "queued")

    forged_headers, body = signed(data, delivery="forged-1", secret="guessed-secret")
    unsigned_headers = {k: v for k, v in forged_headers.items() if k != "X-Hub-Signature-256"}
    sha1_headers = {**forged_headers, "X-Hub-Signature-256": "sha1=" + "0" * 40}
    good_headers, good_body = signed(data, delivery="tampered-1", secret=WEBHOOK_SECRET)
    tampered = json.loads(good_body)
    tampered["workflow_job"]["labels"] = ["self-hosted", "linux", "fleet-a", "gpu"]
    tampered_body = json.dumps(tampered).encode()
    # A signature made with the right secret over a different body.
    other_body = json.dumps({**data, "action": "in_progress"}).encode()
    swapped = {**good_headers, "X-Hub-Signature-256": compute_signature(WEBHOOK_SECRET, other_body)}

    assert fleet.post_raw(forged_headers, body) == 401
    assert fleet.post_raw(unsigned_headers, body) == 401
    assert fleet.post_raw(sha1_headers, body) == 401
    assert fleet.post_raw(good_headers, tampered_body) == 401
    assert fleet.post_raw(swapped, good_body) == 401

    for _ in range(3):
        fleet.step(reaper=True)
    assert fleet.aws.queue_depth() == 0
    assert fleet.aws.ledger_items() == [] or all(
        not item["pk"]["S"].startswith("job#") for item in fleet.aws.ledger_items()
    )
    assert fleet.aws.group()["DesiredCapacity"] == 0
    assert fleet.seen_instances == set()
    assert fleet.github.calls("POST", "/orgs/acme/actions/runners/generate-jitconfig") == []
    # The webhook function did nothing but read its secret: no queue send for any of them.
    assert "sqs:SendMessage" not in fleet.aws.enforcer.actions("role/main-webhook")


def test_fault_1_replayed_delivery_is_a_no_op_property_14(make_fleet):
    fleet = make_fleet(max_size=3)
    (job,) = fleet.queue_jobs(1)
    guid, _, _ = fleet.responses[0]
    _, data = fleet.payloads[guid]
    headers, body = signed(data, delivery=guid, secret=WEBHOOK_SECRET)
    fleet.pump_queue()
    (item,) = fleet.aws.ledger_items()
    assert item["version"]["N"] == "1"

    # The same delivery five more times (GitHub redelivery, or a replay of captured traffic).
    for _ in range(5):
        assert fleet.post_raw(headers, body) == 202
    fleet.pump_queue()
    (item,) = fleet.aws.ledger_items()
    assert item["version"]["N"] == "1"  # every duplicate changed nothing, so wrote nothing
    assert fleet.aws.group()["DesiredCapacity"] == 1

    fleet.run_until(fleet.settled, max_steps=10)
    assert job.status == "completed"
    # Replaying the old "queued" delivery after the job finished launches nothing.
    assert fleet.post_raw(headers, body) == 202
    for _ in range(3):
        fleet.step()
    assert fleet.aws.group()["DesiredCapacity"] == 0
    assert len(fleet.seen_instances) == 1
    states = {i["pk"]["S"]: i["state"]["S"] for i in fleet.aws.ledger_items() if "state" in i}
    assert states == {f"job#{job.id}": "completed"}
    assert fleet.killed_busy == []
