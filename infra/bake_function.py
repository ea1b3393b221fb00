"""The function that starts one run of the fleet's image pipeline (on a new recipe, or when the
outdated-agent alarm fires), and what keeps a bake trigger from being lost: an asynchronous
invocation (EventBridge's) that fails Lambda's retries lands in the function's dead-letter
queue, where EventBridge also puts what it could not deliver (infra/agent_freshness.py), and
alarms fire on anything there and on the function's errors. Like the control plane's alarms
they have no actions: subscribe your paging to them."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from fleet.core.config.names import BAKE_DEAD_LETTERS_ALARM, BAKE_ERRORS_ALARM
from infra.alarms import nonzero_alarm
from infra.config import BAKE_FUNCTION, FleetConfig, ResourceNames
from infra.functions import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, LOG_RETENTION_DAYS
from infra.iam_functions import lambda_trust_policy
from infra.iam_images import bake_trigger_policy
from infra.queues import dead_letter_queue, failed_invocations_to

BAKE_FUNCTION_CODE = '''"""Starts one run of the fleet's image pipeline."""

import os

import boto3


def handler(event, context):
    pipeline = os.environ["IMAGE_PIPELINE_ARN"]
    client = boto3.client("imagebuilder")
    started = client.start_image_pipeline_execution(imagePipelineArn=pipeline)
    reason = event.get("reason", "no reason given")
    print(f"started {started['imageBuildVersionArn']}: {reason}")
    return {"imageBuildVersionArn": started["imageBuildVersionArn"]}
'''
# Lambda's retries of an asynchronous invocation that fails (its default, written out), and how
# long an event may wait: a bake the outdated-agent alarm asked for is still wanted an hour on.
ASYNC_RETRIES = 2
ASYNC_MAX_EVENT_AGE_SECONDS = 3600


class BakeFunction(pulumi.ComponentResource):
    """A function that starts one run of the fleet's pipeline (and may do nothing else)."""

    # Long on purpose: a component's resources declared in dependency order, as Pulumi's
    # examples do.
    def __init__(
        self,
        name: str,
        *,
        config: FleetConfig,
        pipeline: aws.imagebuilder.ImagePipeline,
        partition: str,
        dns_suffix: str,
        region: str,
        account_id: str,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("fleet:image_pipeline:BakeFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = config.names
        log_group_name = names.log_group(BAKE_FUNCTION)
        self.policy_document: dict[str, Any] = bake_trigger_policy(
            partition=partition,
            region=region,
            account_id=account_id,
            pipeline_name=names.image_builder,
            log_group=log_group_name,
            dead_letter_queue=names.bake_dead_letter_queue,
        )
        self.dead_letters = dead_letter_queue(
            f"{name}-dead-letters", names.bake_dead_letter_queue, tags=tags, opts=child
        )
        role = aws.iam.Role(
            f"{name}-role",
            description=f"runner fleet {config.fleet_name}: starts an image bake",
            assume_role_policy=json.dumps(lambda_trust_policy(dns_suffix)),
            tags=tags,
            opts=child,
        )
        self.policy = aws.iam.RolePolicy(
            f"{name}-policy", role=role.id, policy=json.dumps(self.policy_document), opts=child
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=log_group_name,
            retention_in_days=LOG_RETENTION_DAYS,
            tags=tags,
            opts=child,
        )
        self.function = aws.lambda_.Function(
            name,
            name=names.bake_function,
            description="starts one run of the fleet's image pipeline",
            runtime=LAMBDA_RUNTIME,
            architectures=[LAMBDA_ARCHITECTURE],
            handler="bake.handler",
            code=pulumi.AssetArchive({"bake.py": pulumi.StringAsset(BAKE_FUNCTION_CODE)}),
            role=role.arn,
            timeout=30,
            memory_size=128,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={"IMAGE_PIPELINE_ARN": pipeline.arn}
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=log_group.name
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy, log_group]),
        )
        failed_invocations_to(
            f"{name}-async",
            self.function,
            self.dead_letters,
            retries=ASYNC_RETRIES,
            max_event_age_seconds=ASYNC_MAX_EVENT_AGE_SECONDS,
            opts=child,
        )
        self.alarms = self._alarms(name, names, tags, child)
        self.register_outputs(
            {"function_name": self.function.name, "dead_letters": self.dead_letters.url}
        )

    def _alarms(
        self, name: str, names: ResourceNames, tags: dict[str, str], child: pulumi.ResourceOptions
    ) -> dict[str, aws.cloudwatch.MetricAlarm]:
        """A bake trigger in the dead-letter queue; the function failing (either way a bake
        did not start: start one by hand, docs/deploy-aws.md)."""
        return {
            "dead-letters": nonzero_alarm(
                f"{name}-dead-letters-alarm",
                alarm_name=names.alarm(BAKE_DEAD_LETTERS_ALARM),
                description="A bake trigger failed every retry (EventBridge or Lambda): no bake "
                "started; see the message in the queue and start a bake by hand",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": self.dead_letters.name},
                statistic="Maximum",
                tags=tags,
                opts=child,
            ),
            "errors": nonzero_alarm(
                f"{name}-errors-alarm",
                alarm_name=names.alarm(BAKE_ERRORS_ALARM),
                description="The bake function failed: a bake may not have started; see its "
                f"log {names.log_group(BAKE_FUNCTION)}",
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions={"FunctionName": self.function.name},
                statistic="Sum",
                tags=tags,
                opts=child,
            ),
        }
