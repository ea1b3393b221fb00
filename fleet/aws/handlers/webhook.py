"""Webhook function: a Lambda function URL request -> ``fleet.core.webhook.handle_delivery`` -> SQS.

The function URL has no AWS auth (GitHub cannot sign AWS requests): the ``X-Hub-Signature-256``
check over the raw body is the authentication, done before anything else looks at the body.
The function does one SQS send and nothing else, so it answers well within GitHub's 10 s; the
real work happens behind the queue. When the send fails it answers 503: GitHub records a failed
delivery, which the reconciler redelivers.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.aws.handlers.runtime import Runtime, shared_runtime
from fleet.core.webhook import handle_delivery

log = logging.getLogger(__name__)


def _response(status: int, reason: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "text/plain; charset=utf-8"},
        "body": reason,
    }


def handle(event: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """Answer one function URL request (payload format 2.0)."""
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "POST")
    if method.upper() != "POST":
        return _response(405, "only POST is accepted")
    headers = {str(k): str(v) for k, v in (event.get("headers") or {}).items()}
    body = event.get("body") or ""
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body
    except (binascii.Error, ValueError):
        return _response(400, "body is not valid base64")
    raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
    try:
        secret = rt.webhook_secret()
    except (BotoCoreError, ClientError) as exc:
        log.error("cannot read the webhook secret: %s", exc)
        return _response(503, "temporarily unavailable")

    s = rt.settings
    outcome = handle_delivery(
        headers, raw_bytes, secret=secret, fleet_labels=s.runner_labels, allowed_owners=[s.owner]
    )
    delivery = outcome.event
    repository = s.scope.repository
    if (
        delivery is not None
        and repository is not None
        and delivery.job.repository.casefold() != repository.casefold()
    ):
        return _response(204, "repository is not served by this fleet")
    if delivery is None:
        if outcome.status >= 400:
            log.warning("webhook refused: %s %s", outcome.status, outcome.reason)
        return _response(outcome.status, outcome.reason)
    try:
        rt.queue.send(delivery)
    except (BotoCoreError, ClientError) as exc:
        log.error("delivery %s not queued: %s", delivery.delivery_id, exc)
        return _response(503, "could not queue the delivery; it will be redelivered")
    log.info(
        "queued delivery %s: job %s %s",
        delivery.delivery_id,
        delivery.job.job_id,
        delivery.job.state,
    )
    return _response(outcome.status, outcome.reason)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return handle(event, shared_runtime())
