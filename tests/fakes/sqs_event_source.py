"""A stand-in for Lambda's SQS event source mapping: what AWS does between the deliveries
queue and the scaler (receive a batch, hand it over, delete what the function did not report
failed). The product only sends (``fleet.aws.adapters.sqs.DeliveryQueue``); these calls run
with the scaler's own client, whose role the mapping uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1


def receive(
    client: Any, url: str, max_messages: int = 10, *, visibility_timeout: int | None = None
) -> list[QueueMessage]:
    params: dict[str, Any] = {
        "QueueUrl": url,
        "MaxNumberOfMessages": max(1, min(10, max_messages)),
        "WaitTimeSeconds": 0,
        "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
    }
    if visibility_timeout is not None:
        params["VisibilityTimeout"] = visibility_timeout
    answer = client.receive_message(**params)
    return [
        QueueMessage(
            message_id=m["MessageId"],
            receipt_handle=m["ReceiptHandle"],
            body=m["Body"],
            receive_count=int((m.get("Attributes") or {}).get("ApproximateReceiveCount", 1)),
        )
        for m in answer.get("Messages") or ()
    ]


def delete(client: Any, url: str, messages: Sequence[QueueMessage]) -> list[str]:
    """Delete messages (10 per call); returns the ids SQS failed to delete."""
    failed: list[str] = []
    items = list(messages)
    for start in range(0, len(items), 10):
        chunk = items[start : start + 10]
        answer = client.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m.receipt_handle} for n, m in enumerate(chunk)
            ],
        )
        failed += [chunk[int(f["Id"])].message_id for f in answer.get("Failed") or ()]
    return failed


def depth(client: Any, url: str) -> int:
    """Messages waiting (approximate)."""
    answer = client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(answer["Attributes"]["ApproximateNumberOfMessages"])
