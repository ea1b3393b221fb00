"""Property 3: the runner instance role allows only its own JIT parameter (read, delete), the
playbook bundle, and leaving its own fleet's group; everything else is denied.

Proved on the pure policy documents the program deploys (infra/iam.py), with exact statements
and with a small evaluator for the conditions (moto ignores Condition blocks). The policies'
use in the deployed graph is checked in test_infra_graph.py.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import pytest
from infra_mocks import ACCOUNT, KMS_KEY_ARN, REGION

from infra.config import FLEET_TAG, JIT_INSTANCE_TAG
from infra.iam import bundle_bucket_policy, instance_policy, instance_trust_policy, kms_key_policy
from tests.fakes.iam_policy import Request, decide, statements_by_sid

pytestmark = pytest.mark.unit

# The example fleet's names (the `policy` fixture is its instance policy under the mocks).
KEY = KMS_KEY_ARN
ROOT = "/runner-fleet/main"
BUCKET = "main-bundle-bucket-a1b2c3d"
BUNDLE_KEY = "bundles/playbooks-0123456789abcdef0123.zip"
ASG = "runner-fleet-main"
SELF_ID = "i-0aaaaaaaaaaaaaaaa"
OTHER_ID = "i-0bbbbbbbbbbbbbbbb"
SELF_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{SELF_ID}"
OTHER_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{OTHER_ID}"
PARAM = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
ASG_ARN = (
    f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:6d1f-42:autoScalingGroupName/{ASG}"
)

# What AmazonSSMManagedInstanceCore allows that matters here: parameter reads on every resource.
SSM_MANAGED_INSTANCE_CORE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ssm:DescribeAssociation",
                "ssm:GetDeployablePatchSnapshotForInstance",
                "ssm:GetDocument",
                "ssm:DescribeDocument",
                "ssm:GetManifest",
                "ssm:GetParameter",
                "ssm:GetParameters",
                "ssm:ListAssociations",
                "ssm:ListInstanceAssociations",
                "ssm:PutInventory",
                "ssm:PutComplianceItems",
                "ssm:PutConfigurePackageResult",
                "ssm:UpdateAssociationStatus",
                "ssm:UpdateInstanceAssociationStatus",
                "ssm:UpdateInstanceInformation",
            ],
            "Resource": "*",
        },
        {"Effect": "Allow", "Action": ["ssmmessages:*", "ec2messages:*"], "Resource": "*"},
    ],
}


@pytest.fixture
def policy(example_instance_policy) -> dict:
    return example_instance_policy(BUNDLE_KEY)


def caller(**extra: str) -> dict[str, str]:
    """Request context of a call signed with this instance's role credentials."""
    return {"ec2:SourceInstanceARN": SELF_ARN, **extra}


def jit(instance_id: str) -> str:
    return f"{PARAM}{ROOT}/runners/{instance_id}/jitconfig"


def test_instance_policy_has_exactly_these_statements(policy):
    statements = statements_by_sid(policy)
    assert len(statements) == len(policy["Statement"])
    assert {sid: (s["Effect"], s["Action"]) for sid, s in statements.items()} == {
        "ReadAndDeleteOwnJitConfig": ("Allow", ["ssm:GetParameter", "ssm:DeleteParameter"]),
        "DenyOtherRunnersParameters": (
            "Deny",
            [
                "ssm:GetParameter",
                "ssm:GetParameters",
                "ssm:GetParametersByPath",
                "ssm:GetParameterHistory",
                "ssm:DeleteParameter",
                "ssm:DeleteParameters",
            ],
        ),
        "DenyFleetSecrets": (
            "Deny",
            [
                "ssm:GetParameter",
                "ssm:GetParameters",
                "ssm:GetParametersByPath",
                "ssm:GetParameterHistory",
            ],
        ),
        "DecryptOwnJitConfigViaSsm": ("Allow", "kms:Decrypt"),
        "ReadPlaybookBundle": ("Allow", "s3:GetObject"),
        "DecryptPlaybookBundleViaS3": ("Allow", "kms:Decrypt"),
        "LeaveOwnFleetGroup": ("Allow", "autoscaling:TerminateInstanceInAutoScalingGroup"),
        "ReportOutdatedAgent": ("Allow", "cloudwatch:PutMetricData"),
    }


def test_a_warm_pool_instance_may_complete_a_launch_of_its_own_group_only(example_instance_policy):
    policy = example_instance_policy(BUNDLE_KEY)
    assert "CompleteOwnWarmPoolLaunch" not in statements_by_sid(policy), "only with a warm pool"
    warm = instance_policy(
        partition="aws",
        region=REGION,
        account_id=ACCOUNT,
        parameter_root=ROOT,
        kms_key_arn=KEY,
        bundle_bucket=BUCKET,
        bundle_key=BUNDLE_KEY,
        asg_name=ASG,
        fleet_name="main",
        warm_pool=True,
    )
    complete = statements_by_sid(warm)["CompleteOwnWarmPoolLaunch"]
    assert complete["Action"] == "autoscaling:CompleteLifecycleAction"
    assert complete["Resource"] == statements_by_sid(warm)["LeaveOwnFleetGroup"]["Resource"]
    assert complete["Condition"] == {
        "StringEquals": {f"autoscaling:ResourceTag/{FLEET_TAG}": "main"}
    }


def test_no_allow_uses_a_wildcard_action_or_every_resource(policy):
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all("*" not in action for action in actions)
        if actions == ["cloudwatch:PutMetricData"]:
            # No resource-level permissions exist for it: its condition key is the bound.
            assert statement["Condition"] == {
                "StringEquals": {"cloudwatch:namespace": "RunnerFleet/Runners/main"}
            }
            continue
        assert statement["Resource"] != "*"


def test_jit_statement_is_scoped_to_runner_path_and_bound_to_the_callers_arn(policy):
    statement = statements_by_sid(policy)["ReadAndDeleteOwnJitConfig"]
    assert statement["Resource"] == f"{PARAM}{ROOT}/runners/*/jitconfig"
    assert statement["Condition"] == {
        "StringEquals": {f"ssm:resourceTag/{JIT_INSTANCE_TAG}": "${ec2:SourceInstanceARN}"}
    }
    deny = statements_by_sid(policy)["DenyOtherRunnersParameters"]
    assert deny["Condition"] == {
        "StringNotEquals": {f"ssm:resourceTag/{JIT_INSTANCE_TAG}": "${ec2:SourceInstanceARN}"}
    }


def test_kms_decrypt_only_via_ssm_for_runner_parameters_and_via_s3_for_the_bundle(policy):
    ssm = statements_by_sid(policy)["DecryptOwnJitConfigViaSsm"]
    assert ssm["Resource"] == KEY
    assert ssm["Condition"]["StringEquals"] == {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}
    assert ssm["Condition"]["StringLike"] == {
        "kms:EncryptionContext:PARAMETER_ARN": f"{PARAM}{ROOT}/runners/*/jitconfig"
    }
    s3 = statements_by_sid(policy)["DecryptPlaybookBundleViaS3"]
    assert s3["Resource"] == KEY
    assert s3["Condition"]["StringEquals"]["kms:ViaService"] == f"s3.{REGION}.amazonaws.com"


def test_bundle_read_is_one_object_and_termination_is_the_fleets_own_group(policy):
    statements = statements_by_sid(policy)
    assert statements["ReadPlaybookBundle"]["Resource"] == f"arn:aws:s3:::{BUCKET}/{BUNDLE_KEY}"
    leave = statements["LeaveOwnFleetGroup"]
    assert leave["Resource"] == (
        f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{ASG}"
    )
    assert leave["Condition"] == {"StringEquals": {f"autoscaling:ResourceTag/{FLEET_TAG}": "main"}}


def signed(action: str, resource: str, context: dict[str, str] | None = None) -> Request:
    """A request signed with this instance's role credentials, with more `context` keys."""
    return Request(action, resource, caller(**(context or {})))


OWN_TAG = f"ssm:resourceTag/{JIT_INSTANCE_TAG}"
GROUP_TAG = f"autoscaling:ResourceTag/{FLEET_TAG}"
VIA_SSM = {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}
VIA_S3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
PARAMETER_CONTEXT = "kms:EncryptionContext:PARAMETER_ARN"
BUNDLE_ARN = f"arn:aws:s3:::{BUCKET}/{BUNDLE_KEY}"

# Case id -> request, for each outcome.
ALLOW = {
    "read own JIT parameter": signed("ssm:GetParameter", jit(SELF_ID), {OWN_TAG: SELF_ARN}),
    "delete own JIT parameter": signed("ssm:DeleteParameter", jit(SELF_ID), {OWN_TAG: SELF_ARN}),
    "decrypt own JIT parameter via SSM": signed(
        "kms:Decrypt", KEY, {**VIA_SSM, PARAMETER_CONTEXT: jit(SELF_ID)}
    ),
    "download the bundle": signed("s3:GetObject", BUNDLE_ARN),
    "decrypt the bundle via S3": signed(
        "kms:Decrypt", KEY, {**VIA_S3, "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{BUCKET}"}
    ),
    "leave its own group": signed(
        "autoscaling:TerminateInstanceInAutoScalingGroup", ASG_ARN, {GROUP_TAG: "main"}
    ),
}
EXPLICIT_DENY = {  # a Deny statement matches
    "read another runner's JIT parameter": signed(
        "ssm:GetParameter", jit(OTHER_ID), {OWN_TAG: OTHER_ARN}
    ),
    "read an untagged parameter on its own path": signed("ssm:GetParameter", jit(SELF_ID)),
    "delete another runner's JIT parameter": signed(
        "ssm:DeleteParameter", jit(OTHER_ID), {OWN_TAG: OTHER_ARN}
    ),
    "list every runner parameter": signed("ssm:GetParametersByPath", f"{PARAM}{ROOT}/runners"),
    "read the GitHub App private key": signed(
        "ssm:GetParameter", f"{PARAM}{ROOT}/github-app/private-key"
    ),
    "read the webhook secret": signed(
        "ssm:GetParameter", f"{PARAM}{ROOT}/github-app/webhook-secret"
    ),
}
IMPLICIT_DENY = {  # no Allow statement matches
    "decrypt directly, not via a service": signed("kms:Decrypt", KEY),
    "decrypt the App key via SSM": signed(
        "kms:Decrypt", KEY, {**VIA_SSM, PARAMETER_CONTEXT: f"{PARAM}{ROOT}/github-app/private-key"}
    ),
    "another object in the bucket": signed("s3:GetObject", f"arn:aws:s3:::{BUCKET}/other.zip"),
    "overwrite the bundle": signed("s3:PutObject", BUNDLE_ARN),
    "terminate in another group": signed(
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        ASG_ARN.replace(ASG, "other-fleet"),
        {GROUP_TAG: "other"},
    ),
    "change capacity": signed("autoscaling:SetDesiredCapacity", ASG_ARN),
    "terminate an instance directly": signed("ec2:TerminateInstances", OTHER_ARN),
    "describe tags": signed("ec2:DescribeTags", "*"),
    "write a JIT parameter": signed("ssm:PutParameter", jit(SELF_ID)),
    "pass a role": signed("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin"),
}
ALLOWED = [pytest.param(request, id=case) for case, request in ALLOW.items()]
DENIED = [
    pytest.param(request, decision, id=case)
    for decision, cases in (("ExplicitDeny", EXPLICIT_DENY), ("ImplicitDeny", IMPLICIT_DENY))
    for case, request in cases.items()
]


@pytest.mark.parametrize("request_", ALLOWED)
def test_instance_role_allows(policy, request_):
    assert decide([policy, SSM_MANAGED_INSTANCE_CORE], request_) == "Allow"


@pytest.mark.parametrize(("request_", "decision"), DENIED)
def test_instance_role_denies(policy, request_, decision):
    assert decide([policy, SSM_MANAGED_INSTANCE_CORE], request_) == decision


def test_only_ec2_may_assume_the_instance_role():
    assert instance_trust_policy() == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def test_key_policy_delegates_to_iam_of_this_account_only():
    policy = kms_key_policy(partition="aws", account_id=ACCOUNT)
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert statement["Effect"] == "Allow"


def test_bundle_bucket_refuses_requests_without_tls():
    policy = bundle_bucket_policy(bucket_arn=f"arn:aws:s3:::{BUCKET}")
    request = Request(
        "s3:GetObject", f"arn:aws:s3:::{BUCKET}/{BUNDLE_KEY}", {"aws:SecureTransport": "false"}
    )
    assert decide([policy], request) == "ExplicitDeny"
    request = Request(
        "s3:GetObject", f"arn:aws:s3:::{BUCKET}/{BUNDLE_KEY}", {"aws:SecureTransport": "true"}
    )
    assert decide([policy], request) == "ImplicitDeny"


def test_an_instance_reports_an_outdated_agent_into_its_own_fleets_namespace_only(policy):
    """The one metric write a runner may make: its fleet's runner namespace; never the control
    plane's namespace (its alarms) nor another fleet's."""

    def put(namespace: str) -> str:
        return decide(
            [policy],
            Request(
                "cloudwatch:PutMetricData",
                "*",
                {"cloudwatch:namespace": namespace, "ec2:SourceInstanceARN": SELF_ARN},
            ),
        )

    assert put("RunnerFleet/Runners/main") == "Allow"
    assert put("RunnerFleet") == "ImplicitDeny"
    assert put("RunnerFleet/Runners/other") == "ImplicitDeny"
    assert put("RunnerFleet/Runners/main/x") == "ImplicitDeny"
