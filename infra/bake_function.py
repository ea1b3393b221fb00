"""The function that starts one run of the fleet's image pipeline (on a new recipe)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import BAKE_FUNCTION, FleetConfig
from infra.functions import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, LOG_RETENTION_DAYS
from infra.iam_functions import lambda_trust_policy
from infra.iam_images import bake_trigger_policy

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
        self.register_outputs({"function_name": self.function.name})
