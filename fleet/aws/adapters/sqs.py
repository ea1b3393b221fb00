"""SQS: the queue between the webhook function and the scaler."""

from __future__ import annotations

import json
from typing import Any

from fleet.core.webhook import QueuedDelivery


class DeliveryQueue:
    """The queue between the webhook and the scaler. Messages carry the delivery id as an
    attribute (and, on a FIFO queue, as the deduplication id)."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url
        self.fifo = url.endswith(".fifo")

    def send(self, delivery: QueuedDelivery) -> str:
        """Queue one delivery; returns the message id."""
        params: dict[str, Any] = {
            "QueueUrl": self.url,
            "MessageBody": json.dumps(delivery.to_message(), separators=(",", ":")),
            "MessageAttributes": {
                "delivery_id": {"DataType": "String", "StringValue": delivery.delivery_id},
                "job_id": {"DataType": "Number", "StringValue": str(delivery.job.job_id)},
            },
        }
        if self.fifo:
            params["MessageDeduplicationId"] = delivery.delivery_id
            params["MessageGroupId"] = str(delivery.job.job_id)
        return str(self.client.send_message(**params)["MessageId"])
