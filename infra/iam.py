"""IAM for runner instances: pure policy documents, plus the component that applies them (the
control plane functions' documents are in infra/iam_functions.py).

Every document is a pure function of plain strings returning a dict, so tests (and the control
plane) evaluate exactly what is deployed. The component wraps them with
`Output.all(...).apply(json.dumps)`.

How an instance can only touch its own JIT parameter
-----------------------------------------------------
The control plane creates `/<prefix>/<fleet>/runners/<instance-id>/jitconfig` with the tag
`runner-fleet-instance-arn = arn:...:instance/<instance-id>`. The instance policy allows
`ssm:GetParameter` and `ssm:DeleteParameter` on that path pattern only when the tag equals
`${ec2:SourceInstanceARN}`, the ARN of the instance whose role credentials signed the request,
filled in by IAM (callers cannot set it). An explicit Deny repeats the rule the other way round
(any runner parameter whose tag is not the caller's is denied, whatever else allows it) because
AmazonSSMManagedInstanceCore allows `ssm:GetParameter` on `*`; a second Deny covers the GitHub
App parameters. Decryption is limited the same way: `kms:Decrypt` on the fleet's key only via
SSM (`kms:ViaService`) and only for a runner parameter (`kms:EncryptionContext:PARAMETER_ARN`,
which Parameter Store always sends), plus via S3 for the playbook bundle object.

Self-termination: `autoscaling:TerminateInstanceInAutoScalingGroup` takes the group as its
resource and has no condition key naming the target instance, so the narrowest grant AWS
allows is "instances of this fleet's group" (resource ARN by name, and the group's fleet tag).
A hostile job that escapes to the host could therefore end other runners of the same fleet
(availability, not data); the ledger records interrupted jobs for retry. The script only
ever passes its own instance id. An agent too old for GitHub is reported with one
cloudwatch:PutMetricData into the fleet's own runner namespace (infra/agent_report.py). Nothing
else is granted: no ec2:DescribeTags (the instance reads nothing from tags), no
ec2:TerminateInstances (the shutdown fallback needs no IAM).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.agent_report import report_outdated_agent_statement
from infra.config import FLEET_TAG, JIT_INSTANCE_TAG

SSM_MANAGED_INSTANCE_CORE = "AmazonSSMManagedInstanceCore"

# Read actions the explicit denies cover (everything that returns a parameter value).
SSM_READ_ACTIONS = (
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "ssm:GetParameterHistory",
)


def ssm_parameter_arn(partition: str, region: str, account_id: str, name: str) -> str:
    """ARN of a parameter (or a pattern) from its absolute name."""
    return f"arn:{partition}:ssm:{region}:{account_id}:parameter{name}"


def asg_arn(partition: str, region: str, account_id: str, asg_name: str) -> str:
    """ARN pattern of an Auto Scaling group by name (the middle part is a generated id)."""
    return (
        f"arn:{partition}:autoscaling:{region}:{account_id}:autoScalingGroup:*:"
        f"autoScalingGroupName/{asg_name}"
    )


def service_trust_policy(service: str, dns_suffix: str = "amazonaws.com") -> dict[str, Any]:
    """Trust policy: only the AWS service `service` (e.g. "ec2") may assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": f"{service}.{dns_suffix}"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def instance_trust_policy(dns_suffix: str = "amazonaws.com") -> dict[str, Any]:
    """Trust policy: only EC2 may assume the runner instance role."""
    return service_trust_policy("ec2", dns_suffix)


# Long on purpose: it is one policy document, statement by statement; each statement carries its
# reason.
def instance_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    parameter_root: str,
    kms_key_arn: str,
    bundle_bucket: str,
    bundle_key: str,
    asg_name: str,
    fleet_name: str,
    warm_pool: bool = False,
) -> dict[str, Any]:
    """Inline policy of a runner instance: its own JIT parameter, the bundle, leaving its group,
    reporting an outdated agent (and, with a warm pool, telling the group it is prepared)."""
    runners = ssm_parameter_arn(partition, region, account_id, f"{parameter_root}/runners")
    own_tag = {f"ssm:resourceTag/{JIT_INSTANCE_TAG}": "${ec2:SourceInstanceARN}"}
    policy: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadAndDeleteOwnJitConfig",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:DeleteParameter"],
                "Resource": f"{runners}/*/jitconfig",
                "Condition": {"StringEquals": own_tag},
            },
            {
                "Sid": "DenyOtherRunnersParameters",
                "Effect": "Deny",
                "Action": [*SSM_READ_ACTIONS, "ssm:DeleteParameter", "ssm:DeleteParameters"],
                "Resource": [runners, f"{runners}/*"],
                "Condition": {"StringNotEquals": own_tag},
            },
            {
                "Sid": "DenyFleetSecrets",
                "Effect": "Deny",
                "Action": list(SSM_READ_ACTIONS),
                "Resource": [
                    ssm_parameter_arn(
                        partition, region, account_id, f"{parameter_root}/github-app"
                    ),
                    ssm_parameter_arn(
                        partition, region, account_id, f"{parameter_root}/github-app/*"
                    ),
                ],
            },
            {
                "Sid": "DecryptOwnJitConfigViaSsm",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": kms_key_arn,
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"},
                    "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": f"{runners}/*/jitconfig"},
                },
            },
            *read_bundle_statements(partition, region, kms_key_arn, bundle_bucket, bundle_key),
            {
                "Sid": "LeaveOwnFleetGroup",
                "Effect": "Allow",
                "Action": "autoscaling:TerminateInstanceInAutoScalingGroup",
                "Resource": asg_arn(partition, region, account_id, asg_name),
                "Condition": {"StringEquals": {f"autoscaling:ResourceTag/{FLEET_TAG}": fleet_name}},
            },
            report_outdated_agent_statement(fleet_name),
        ],
    }
    if warm_pool:
        # A warm-pool instance completes its own launch hook once its bake is done; the
        # control plane cannot know when that is.
        policy["Statement"].append(
            {
                "Sid": "CompleteOwnWarmPoolLaunch",
                "Effect": "Allow",
                "Action": "autoscaling:CompleteLifecycleAction",
                "Resource": asg_arn(partition, region, account_id, asg_name),
                "Condition": {"StringEquals": {f"autoscaling:ResourceTag/{FLEET_TAG}": fleet_name}},
            }
        )
    return policy


def read_bundle_statements(
    partition: str, region: str, kms_key_arn: str, bundle_bucket: str, bundle_key: str
) -> list[dict[str, Any]]:
    """Read the one bundle object, and decrypt it with the fleet key only through S3."""
    bucket_arn = f"arn:{partition}:s3:::{bundle_bucket}"
    return [
        {
            "Sid": "ReadPlaybookBundle",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"{bucket_arn}/{bundle_key}",
        },
        {
            "Sid": "DecryptPlaybookBundleViaS3",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": kms_key_arn,
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": f"s3.{region}.amazonaws.com",
                    # With an S3 Bucket Key the context is the bucket ARN; without, the object.
                    "kms:EncryptionContext:aws:s3:arn": [bucket_arn, f"{bucket_arn}/{bundle_key}"],
                }
            },
        },
    ]


def kms_key_policy(*, partition: str, account_id: str) -> dict[str, Any]:
    """Key policy: the account administers the key and grants use through IAM policies only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersKeyThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }


def bundle_bucket_policy(*, bucket_arn: str) -> dict[str, Any]:
    """Bucket policy: refuse any request that is not over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


# The session document Session Manager uses when none is named (the aws_ssm connection's case).
SSM_SESSION_DOCUMENT = "SSM-SessionManagerRunShell"


# Long on purpose: it is one policy document, statement by statement; each statement carries its
# reason.
def validation_operator_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    fleet_name: str,
    transfer_bucket_arn: str,
    kms_key_arn: str,
) -> dict[str, Any]:
    """Managed policy for whoever validates the runners (pytest tests/runner over the aws_ec2
    inventory and the amazon.aws.aws_ssm connection): find the fleet's instances, open Session
    Manager sessions on them only, and move files through the transfer bucket. The instances
    need nothing: the connection hands them presigned URLs signed with these permissions."""
    bucket_via_s3 = {
        "StringEquals": {
            "kms:ViaService": f"s3.{region}.amazonaws.com",
            # With an S3 Bucket Key the context is the bucket ARN.
            "kms:EncryptionContext:aws:s3:arn": transfer_bucket_arn,
        }
    }
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                # The aws_ec2 inventory; DescribeInstances has no resource-level permissions.
                "Sid": "FindRunners",
                "Effect": "Allow",
                "Action": "ec2:DescribeInstances",
                "Resource": "*",
            },
            {
                "Sid": "OpenSessionsOnThisFleet",
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": f"arn:{partition}:ec2:{region}:{account_id}:instance/*",
                "Condition": {"StringEquals": {f"ssm:resourceTag/{FLEET_TAG}": fleet_name}},
            },
            {
                "Sid": "OpenShellSessions",
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": (
                    f"arn:{partition}:ssm:{region}:{account_id}:document/{SSM_SESSION_DOCUMENT}"
                ),
            },
            {
                "Sid": "EndOwnSessions",
                "Effect": "Allow",
                "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
                "Resource": [
                    f"arn:{partition}:ssm:{region}:{account_id}:session/${{aws:userid}}-*",
                    f"arn:{partition}:ssm:{region}:{account_id}:session/${{aws:username}}-*",
                ],
            },
            {
                "Sid": "LocateTransferBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": transfer_bucket_arn,
            },
            {
                "Sid": "TransferFiles",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                "Resource": f"{transfer_bucket_arn}/*",
            },
            {
                "Sid": "EncryptTransfersViaS3",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": kms_key_arn,
                "Condition": bucket_via_s3,
            },
        ],
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunnerInstanceRoleArgs:
    """Inputs of RunnerInstanceRole; plain values or Outputs."""

    partition: str
    dns_suffix: str
    region: str
    account_id: str
    parameter_root: str
    kms_key_arn: pulumi.Input[str]
    bundle_bucket: pulumi.Input[str]
    bundle_key: pulumi.Input[str]
    asg_name: str
    fleet_name: str
    tags: dict[str, str]
    warm_pool: bool = False


class RunnerInstanceRole(pulumi.ComponentResource):
    """Instance role + profile: SSM Session Manager plus the minimal inline policy above."""

    def __init__(
        self, name: str, args: RunnerInstanceRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:iam:RunnerInstanceRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(
            f"{name}-role",
            description="Runner instances: own JIT parameter, playbook bundle, leave own group",
            assume_role_policy=json.dumps(instance_trust_policy(args.dns_suffix)),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-ssm-core",
            role=self.role.name,
            policy_arn=f"arn:{args.partition}:iam::aws:policy/{SSM_MANAGED_INSTANCE_CORE}",
            opts=child,
        )

        def render(values: Sequence[str]) -> str:
            kms_key_arn, bucket, key = values
            return json.dumps(
                instance_policy(
                    partition=args.partition,
                    region=args.region,
                    account_id=args.account_id,
                    parameter_root=args.parameter_root,
                    kms_key_arn=kms_key_arn,
                    bundle_bucket=bucket,
                    bundle_key=key,
                    asg_name=args.asg_name,
                    fleet_name=args.fleet_name,
                    warm_pool=args.warm_pool,
                )
            )

        self.policy_document = pulumi.Output.all(
            args.kms_key_arn, args.bundle_bucket, args.bundle_key
        ).apply(render)
        aws.iam.RolePolicy(
            f"{name}-policy", role=self.role.id, policy=self.policy_document, opts=child
        )
        self.instance_profile = aws.iam.InstanceProfile(
            f"{name}-profile", role=self.role.name, tags=args.tags, opts=child
        )
        self.role_arn = self.role.arn
        self.instance_profile_arn = self.instance_profile.arn
        self.register_outputs(
            {"role_arn": self.role_arn, "instance_profile_arn": self.instance_profile_arn}
        )
