"""The webhook pipeline shared by the Lambda function and the local ``serve`` command.

Pure: headers, raw body, secret and the fleet's labels in; an outcome out (HTTP status, a
reason, and the event to enqueue keyed by ``X-GitHub-Delivery``, or None). No I/O, so the
endpoint can answer within GitHub's 10 s: the real work happens behind the queue.

Order matters: size first (cheap), then the signature over the raw bytes, and only then any
parsing, so unauthenticated input never reaches the JSON parser or the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from fleet.core.github.signature import SIGNATURE_HEADER, WebhookError, verify_signature
from fleet.core.jobs import JOB_ACTIONS, labels_match, parse_workflow_job_event
from fleet.core.ledger import JobEvent

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # workflow_job payloads are a few KiB
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")

ACCEPTED = 202
IGNORED = 204
PONG = 200


@dataclass(frozen=True)
class QueuedDelivery:
    """What goes on the queue: the delivery id (the dedupe key) and the job's event."""

    delivery_id: str
    job: JobEvent

    def to_message(self) -> dict[str, Any]:
        """JSON-safe message body."""
        return {"delivery_id": self.delivery_id, "event": "workflow_job", "job": self.job.to_dict()}

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> QueuedDelivery:
        return cls(delivery_id=str(message["delivery_id"]), job=JobEvent.from_dict(message["job"]))


@dataclass(frozen=True)
class WebhookOutcome:
    """HTTP status and reason to answer with, and the event to enqueue (None: nothing)."""

    status: int
    reason: str
    event: QueuedDelivery | None = None


def _validation_summary(exc: ValidationError) -> str:
    # Field locations only: never echo the payload's values back.
    locations = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
    shown = ", ".join(locations[:5]) + (" ..." if len(locations) > 5 else "")
    return f"invalid workflow_job payload ({exc.error_count()} error(s) at: {shown})"


# Long on purpose: the checks in their security order (size, signature, then parsing), read top to
# bottom.
def handle_delivery(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | bytes | Sequence[str | bytes],
    fleet_labels: Iterable[str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    allowed_owners: Collection[str] | None = None,
) -> WebhookOutcome:
    """Decide what to answer GitHub and what (if anything) to enqueue for one delivery.

    401 forged/missing/malformed signature; 413 body over ``max_body_bytes``; 415 not JSON;
    400 bad JSON, bad payload or missing delivery id; 204 ignored (other events or actions,
    labels this fleet does not serve, owners not allowed); 200 ping; 202 accepted.
    A missing secret is a configuration error and raises ``ValueError``.
    """
    if isinstance(body, str):
        body = body.encode()
    h = {key.lower(): value for key, value in headers.items()}

    if len(body) > max_body_bytes:
        return WebhookOutcome(413, f"payload larger than {max_body_bytes} bytes")
    try:
        verify_signature(secret, body, h.get(SIGNATURE_HEADER.lower()))
    except WebhookError as exc:
        return WebhookOutcome(401, str(exc))

    event_name = h.get("x-github-event", "")
    if event_name == "ping":
        return WebhookOutcome(PONG, "pong")
    if event_name != "workflow_job":
        return WebhookOutcome(IGNORED, f"event {event_name or '(none)'!r} is not handled")
    delivery_id = h.get("x-github-delivery", "").strip()
    if not _DELIVERY_ID.match(delivery_id):
        return WebhookOutcome(400, "missing or malformed X-GitHub-Delivery header")
    content_type = h.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type != "application/json":
        return WebhookOutcome(
            415, f"content type {content_type!r}: set the App's webhook to application/json"
        )

    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return WebhookOutcome(400, f"body is not JSON: {exc.__class__.__name__}")
    if not isinstance(data, dict):
        return WebhookOutcome(400, "body is not a JSON object")
    action = data.get("action")
    if action not in JOB_ACTIONS:
        return WebhookOutcome(IGNORED, f"workflow_job action {str(action)[:40]!r} is not handled")
    try:
        event = parse_workflow_job_event(data)
    except ValidationError as exc:
        return WebhookOutcome(400, _validation_summary(exc))

    if allowed_owners is not None and event.owner.casefold() not in {
        owner.casefold() for owner in allowed_owners
    }:
        return WebhookOutcome(IGNORED, f"owner {event.owner!r} is not served by this fleet")
    if not labels_match(event.workflow_job.labels, fleet_labels):
        return WebhookOutcome(IGNORED, "job labels are not served by this fleet")
    return WebhookOutcome(
        ACCEPTED,
        f"queued {event.action} of job {event.workflow_job.id}",
        QueuedDelivery(delivery_id=delivery_id, job=JobEvent.from_webhook(event)),
    )
