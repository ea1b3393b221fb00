"""IAM documents of the image pipeline: the build instance, the bake function and the image
lifecycle policy's execution role.

Pure functions of names and ARNs, like infra/iam.py (whose bundle statements the build
instance shares with runner instances).
"""

from __future__ import annotations

from typing import Any

from infra.iam import SSM_READ_ACTIONS, read_bundle_statements, ssm_parameter_arn

# What Image Builder's lifecycle policies run with (AWS managed): deregister AMIs tagged
# CreatedBy: EC2 Image Builder, delete their snapshots and Image Builder's image records, and
# the deprecate and disable actions this program does not use. AWS documents what the policy
# may do, not the calls a lifecycle execution makes, so no narrower document is written here.
LIFECYCLE_EXECUTION_POLICY = "service-role/EC2ImageBuilderLifecycleExecutionPolicy"


def lifecycle_execution_policy_arn(partition: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{LIFECYCLE_EXECUTION_POLICY}"


def image_lifecycle_trust_policy(dns_suffix: str) -> dict[str, Any]:
    """The lifecycle policy's execution role: Image Builder may assume it, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": f"imagebuilder.{dns_suffix}"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def image_builder_arn(partition: str, region: str, account_id: str, kind: str, name: str) -> str:
    """ARN of an Image Builder resource (kind: component, image-pipeline, ...) by name;
    Image Builder writes names in ARNs in lowercase."""
    return f"arn:{partition}:imagebuilder:{region}:{account_id}:{kind}/{name.lower()}"


def image_build_instance_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    parameter_root: str,
    kms_key_arn: str,
    bundle_bucket: str,
    bundle_key: str,
    component_name: str,
    log_group: str,
) -> dict[str, Any]:
    """Inline policy of Image Builder's build instance (with AmazonSSMManagedInstanceCore,
    through which Image Builder runs the component): read the bundle, read its own
    component (AWSTOE fetches the document with the instance's credentials), write its build
    log. Nothing of the fleet's secrets or runners: the explicit deny holds whatever the
    managed policy's ssm:GetParameter on * allows."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            *read_bundle_statements(partition, region, kms_key_arn, bundle_bucket, bundle_key),
            {
                "Sid": "ReadOwnComponent",
                "Effect": "Allow",
                "Action": "imagebuilder:GetComponent",
                "Resource": image_builder_arn(
                    partition, region, account_id, "component", f"{component_name}/*"
                ),
            },
            {
                "Sid": "WriteBuildLog",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group}:*",
            },
            {
                "Sid": "DenyFleetParameters",
                "Effect": "Deny",
                "Action": [*SSM_READ_ACTIONS, "ssm:DeleteParameter", "ssm:DeleteParameters"],
                "Resource": [
                    ssm_parameter_arn(partition, region, account_id, parameter_root),
                    ssm_parameter_arn(partition, region, account_id, f"{parameter_root}/*"),
                ],
            },
        ],
    }


def bake_trigger_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    pipeline_name: str,
    log_group: str,
    dead_letter_queue: str,
) -> dict[str, Any]:
    """The bake function starts its own pipeline (StartImagePipelineExecution needs
    GetImagePipeline too), writes its log, and reports an asynchronous invocation that failed
    every retry to its dead-letter queue (Lambda sends it with this role); nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StartOwnPipeline",
                "Effect": "Allow",
                "Action": [
                    "imagebuilder:StartImagePipelineExecution",
                    "imagebuilder:GetImagePipeline",
                ],
                "Resource": image_builder_arn(
                    partition, region, account_id, "image-pipeline", pipeline_name
                ),
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group}:*",
            },
            {
                "Sid": "ReportFailedBakes",
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": f"arn:{partition}:sqs:{region}:{account_id}:{dead_letter_queue}",
            },
        ],
    }
