"""The control plane's queues: webhook deliveries to the scaler (webhook mode), and the dead
letters every part of the control plane sends what failed all its retries to (alarmed in
``alarms``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.config import ResourceNames

MAX_RECEIVE_COUNT = 5


class Queues:
    """The deliveries queue (SSE, redrive after ``MAX_RECEIVE_COUNT`` receives; webhook mode
    only, ``deliveries`` None otherwise) and the dead-letter queue (every mode: failed events
    and async invocations go there); their resources are children of ``opts``'s parent."""

    def __init__(
        self,
        name: str,
        names: ResourceNames,
        *,
        visibility_timeout: int,
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions,
        webhook: bool = True,
    ) -> None:
        self.dead_letters = aws.sqs.Queue(
            f"{name}-dead-letters",
            name=names.dead_letter_queue,
            message_retention_seconds=14 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            tags=tags,
            opts=opts,
        )
        self.deliveries: aws.sqs.Queue | None = None
        if not webhook:
            return
        self.deliveries = aws.sqs.Queue(
            f"{name}-deliveries",
            name=names.deliveries_queue,
            visibility_timeout_seconds=visibility_timeout,
            message_retention_seconds=4 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dead_letters.arn.apply(
                lambda arn: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
                )
            ),
            tags=tags,
            opts=opts,
        )
