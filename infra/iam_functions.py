"""IAM for the control plane's functions: pure policy documents, one role per function, each
with exactly what its code calls (infra/control_plane.py applies them).

The integration tests run the functions under moto's IAM enforcement with these documents and
check that every granted action is used. Actions without resource-level permissions
(Describe*, PutMetricData) take "*", narrowed by condition keys where AWS has them. KMS use is
limited to the fleet's key through SSM and to the parameter it protects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from infra.config import CONTROL_PLANE_FUNCTIONS, FLEET_TAG, JIT_INSTANCE_TAG, LISTENER_FUNCTION
from infra.iam import asg_arn, service_trust_policy, ssm_parameter_arn

FUNCTIONS = CONTROL_PLANE_FUNCTIONS
WEBHOOK, SCALER, LIFECYCLE, REAPER = FUNCTIONS
OPEN_JOBS_INDEX = "open-jobs"


@dataclasses.dataclass(frozen=True)
class ControlPlaneResources:
    """Names and ARNs the function policies are written for (plain strings)."""

    partition: str
    region: str
    account_id: str
    fleet_name: str
    asg_name: str
    parameter_root: str
    kms_key_arn: str
    queue_arn: str | None  # the deliveries queue: webhook mode only
    dead_letter_queue_arn: str
    table_arn: str | None  # the job ledger: webhook mode only
    metrics_namespace: str
    github_app_parameter_names: Mapping[str, str]
    function_names: Mapping[str, str]
    # scaleSet mode: the SSM String parameter where the listener remembers its session.
    listener_session_parameter: str | None = None

    def parameter_arn(self, name: str) -> str:
        return ssm_parameter_arn(self.partition, self.region, self.account_id, name)

    @property
    def jit_parameters_arn(self) -> str:
        return self.parameter_arn(f"{self.parameter_root}/runners/*/jitconfig")

    @property
    def asg_arn(self) -> str:
        return asg_arn(self.partition, self.region, self.account_id, self.asg_name)

    def log_group_arn(self, function: str) -> str:
        return (
            f"arn:{self.partition}:logs:{self.region}:{self.account_id}:log-group:"
            f"/aws/lambda/{self.function_names[function]}:*"
        )


def lambda_trust_policy(dns_suffix: str = "amazonaws.com") -> dict[str, Any]:
    """Trust policy: only Lambda may assume a control plane function's role."""
    return service_trust_policy("lambda", dns_suffix)


def _decrypt_via_ssm(r: ControlPlaneResources, sid: str, parameter_arns: list[str]) -> dict:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": r.kms_key_arn,
        "Condition": {
            "StringEquals": {
                "kms:ViaService": f"ssm.{r.region}.amazonaws.com",
                "kms:EncryptionContext:PARAMETER_ARN": parameter_arns,
            }
        },
    }


def _github_app(r: ControlPlaneResources) -> list[dict[str, Any]]:
    names = r.github_app_parameter_names
    arns = [r.parameter_arn(names["app_id"]), r.parameter_arn(names["private_key"])]
    return [
        {
            "Sid": "ReadGitHubApp",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": arns,
        },
        _decrypt_via_ssm(r, "DecryptGitHubApp", arns),
    ]


def _ledger(r: ControlPlaneResources) -> list[dict[str, Any]]:
    if r.table_arn is None:
        return []  # scaleSet mode: no ledger
    return [
        {
            "Sid": "ReadWriteLedger",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": r.table_arn,
        },
        {
            "Sid": "QueryOpenJobs",
            "Effect": "Allow",
            "Action": "dynamodb:Query",
            "Resource": f"{r.table_arn}/index/{OPEN_JOBS_INDEX}",
        },
    ]


def _own_group(r: ControlPlaneResources, sid: str, actions: list[str]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": r.asg_arn,
        "Condition": {"StringEquals": {f"autoscaling:ResourceTag/{FLEET_TAG}": r.fleet_name}},
    }


def _scale_own_group(r: ControlPlaneResources) -> dict[str, Any]:
    """Capacity, scale-in protection and termination in the fleet's own group (scaler, reaper)."""
    return _own_group(
        r,
        "ScaleOwnGroup",
        [
            "autoscaling:SetDesiredCapacity",
            "autoscaling:SetInstanceProtection",
            "autoscaling:TerminateInstanceInAutoScalingGroup",
        ],
    )


def _common(r: ControlPlaneResources, function: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": r.log_group_arn(function),
        }
    ]
    if function != WEBHOOK:
        statements += [
            {
                "Sid": "PublishFleetMetrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": r.metrics_namespace}},
            },
            {
                # Lambda sends events that failed every retry here, with this role.
                "Sid": "ReportFailedEvents",
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": r.dead_letter_queue_arn,
            },
        ]
    return statements


def _policy(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def webhook_policy(r: ControlPlaneResources) -> dict[str, Any]:
    """The webhook reads the webhook secret and queues deliveries; nothing else."""
    secret = r.parameter_arn(r.github_app_parameter_names["webhook_secret"])
    return _policy(
        [
            {
                "Sid": "ReadWebhookSecret",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": secret,
            },
            _decrypt_via_ssm(r, "DecryptWebhookSecret", [secret]),
            {
                "Sid": "QueueDeliveries",
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": r.queue_arn,
            },
            *_common(r, WEBHOOK),
        ]
    )


def scaler_policy(r: ControlPlaneResources, function: str = SCALER) -> dict[str, Any]:
    """The scaler consumes deliveries, keeps the ledger and sizes its own group (``function``:
    whose log group; the listener runs the same cycle)."""
    deliveries = [
        {
            # What the SQS event source mapping does with this role.
            "Sid": "ConsumeDeliveries",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": r.queue_arn,
        }
    ]
    return _policy(
        [
            *(deliveries if r.queue_arn is not None else []),
            *_github_app(r),
            *_ledger(r),
            {
                "Sid": "ReadFleet",
                "Effect": "Allow",
                "Action": ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"],
                "Resource": "*",
            },
            _scale_own_group(r),
            *_common(r, function),
        ]
    )


def lifecycle_policy(r: ControlPlaneResources) -> dict[str, Any]:
    """The lifecycle function writes and deletes JIT parameters and completes hooks."""
    instance_arns = f"arn:{r.partition}:ec2:{r.region}:{r.account_id}:instance/i-*"
    return _policy(
        [
            *_github_app(r),
            {
                "Sid": "WriteJitConfigs",
                "Effect": "Allow",
                "Action": ["ssm:PutParameter", "ssm:AddTagsToResource"],
                "Resource": r.jit_parameters_arn,
                # The tag that binds a parameter to its instance, when one is set, names an
                # instance of this account and region.
                "Condition": {
                    "StringLikeIfExists": {f"aws:RequestTag/{JIT_INSTANCE_TAG}": instance_arns}
                },
            },
            {
                "Sid": "DeleteJitConfigs",
                "Effect": "Allow",
                "Action": "ssm:DeleteParameter",
                "Resource": r.jit_parameters_arn,
            },
            {
                "Sid": "EncryptJitConfigs",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                "Resource": r.kms_key_arn,
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"ssm.{r.region}.amazonaws.com"},
                    "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": r.jit_parameters_arn},
                },
            },
            _own_group(r, "CompleteLifecycleActions", ["autoscaling:CompleteLifecycleAction"]),
            {
                "Sid": "IdentifySpotInstances",
                "Effect": "Allow",
                "Action": "ec2:DescribeInstances",
                "Resource": "*",
            },
            *_ledger(r),
            *_common(r, LIFECYCLE),
        ]
    )


def reaper_policy(r: ControlPlaneResources) -> dict[str, Any]:
    """The reaper ends dead, offline and expired runners' instances and cleans parameters."""
    return _policy(
        [
            *_github_app(r),
            {
                "Sid": "ReadFleet",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "ec2:DescribeInstances",
                    "ssm:DescribeParameters",
                ],
                "Resource": "*",
            },
            _scale_own_group(r),
            {
                "Sid": "DeleteLeftoverJitConfigs",
                "Effect": "Allow",
                "Action": "ssm:DeleteParameter",
                "Resource": r.jit_parameters_arn,
            },
            *_ledger(r),
            *_common(r, REAPER),
        ]
    )


LISTENER = LISTENER_FUNCTION  # githubMode scaleSet only


def listener_policy(r: ControlPlaneResources) -> dict[str, Any]:
    """The scale-set listener runs the scaler's cycle in-process: the scaler's permissions,
    without the deliveries queue and the ledger (scaleSet mode has neither), writing its own
    log group; and it reads and writes the one String parameter where it remembers its
    session (no key: not a secret)."""
    if not r.listener_session_parameter:
        raise ValueError("the listener policy needs listener_session_parameter")
    policy = scaler_policy(r, LISTENER)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "RememberListenerSession",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:PutParameter"],
            "Resource": r.parameter_arn(r.listener_session_parameter),
        }
    ]
    statements += [s for s in policy["Statement"] if s.get("Sid") != "ConsumeDeliveries"]
    return {**policy, "Statement": statements}


POLICIES = {
    WEBHOOK: webhook_policy,
    SCALER: scaler_policy,
    LIFECYCLE: lifecycle_policy,
    REAPER: reaper_policy,
    LISTENER: listener_policy,
}


def function_policies(r: ControlPlaneResources) -> dict[str, dict[str, Any]]:
    """The inline policy of each function ``r`` names (those its githubMode deploys)."""
    return {fn: make(r) for fn, make in POLICIES.items() if fn in r.function_names}


def dead_letter_queue_policy(*, queue_arn: str, rule_arns: Sequence[str]) -> dict[str, Any]:
    """Queue policy: EventBridge may send events its rules could not deliver, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeDeadLetters",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": list(rule_arns)}},
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }
