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
# What lands in a dead-letter queue stays 14 days (SQS's longest).
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600


def dead_letter_queue(
    resource_name: str, queue_name: str, *, tags: Mapping[str, str], opts: pulumi.ResourceOptions
) -> aws.sqs.Queue:
    """A dead-letter queue: encrypted (SSE), what lands there kept as long as SQS keeps
    anything. The control plane's and the bake function's."""
    return aws.sqs.Queue(
        resource_name,
        name=queue_name,
        message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
        sqs_managed_sse_enabled=True,
        tags=tags,
        opts=opts,
    )


def failed_invocations_to(
    resource_name: str,
    function: aws.lambda_.Function,
    dead_letters: aws.sqs.Queue,
    *,
    retries: int,
    max_event_age_seconds: int,
    opts: pulumi.ResourceOptions,
) -> aws.lambda_.FunctionEventInvokeConfig:
    """``function``'s asynchronous invocations: retried ``retries`` times while younger than
    ``max_event_age_seconds``, then sent to ``dead_letters``."""
    return aws.lambda_.FunctionEventInvokeConfig(
        resource_name,
        function_name=function.name,
        maximum_retry_attempts=retries,
        maximum_event_age_in_seconds=max_event_age_seconds,
        destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
            on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                destination=dead_letters.arn
            )
        ),
        opts=opts,
    )


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
        self.dead_letters = dead_letter_queue(
            f"{name}-dead-letters", names.dead_letter_queue, tags=tags, opts=opts
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
