"""Validating AWS runners: the inventory finds the hosts the program tags, the aws_ssm
connection has its bucket, and the operator's policy allows that and no more.

The inventory test runs the real `amazon.aws.aws_ec2` plugin (ansible-core's
InventoryManager, in process) against moto's EC2, with instances tagged exactly as the group
in the mock graph tags them.
"""

from __future__ import annotations

import json

import boto3
import pytest
from ansible import constants
from ansible.errors import AnsibleError
from ansible.inventory import manager as inventory_manager
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.vars.manager import VariableManager
from infra_mocks import ACCOUNT, KMS_KEY_ARN, PROJECT_ROOT, REGION
from moto import mock_aws

from infra.iam import validation_operator_policy
from tests.fakes.iam_policy import Request, decide

pytestmark = pytest.mark.unit

INVENTORY = PROJECT_ROOT / "playbooks" / "inventories" / "aws_ec2.yml"
GROUP = "aws:autoscaling/group:Group"
TRANSFER_BUCKET_ARN = "arn:aws:s3:::main-validation-ssm-bucket-a1b2c3d"
INSTANCE_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"
SHELL_DOCUMENT = f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/SSM-SessionManagerRunShell"
POLICY = validation_operator_policy(
    partition="aws",
    region=REGION,
    account_id=ACCOUNT,
    fleet_name="main",
    transfer_bucket_arn=TRANSFER_BUCKET_ARN,
    kms_key_arn=KMS_KEY_ARN,
)


def instance_tags(graph) -> dict[str, str]:
    """The tags the group puts on every instance it launches."""
    tags = graph.one(GROUP)["tags"]
    return {t["key"]: t["value"] for t in tags if t["propagateAtLaunch"]}


@pytest.fixture
def fake_ec2(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        # Not moto's ~13,000 stock images: building them was most of each test's time, and
        # moto launches from an image id it does not know (it validates none by default).
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        image = "ami-0123456789abcdef0"

        def launch(tags: dict[str, str], running: bool = True) -> str:
            (instance,) = ec2.run_instances(
                ImageId=image,
                MinCount=1,
                MaxCount=1,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                    }
                ],
            )["Instances"]
            if not running:
                ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
            return instance["InstanceId"]

        yield launch


def read_inventory(monkeypatch, **env: str) -> tuple[list[str], dict[str, dict]]:
    """Hosts of group `runners` and their variables, as ansible-inventory would list them."""
    for key in ("AWS_REGION", "FLEET_NAME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # A source no plugin can parse is an error, not a warning and an empty inventory.
    monkeypatch.setattr(constants, "INVENTORY_ANY_UNPARSED_IS_FAILED", True)
    init_plugin_loader()
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(INVENTORY)])
    variables = VariableManager(loader=loader, inventory=inventory)
    hosts = inventory.get_hosts("runners")
    return [h.name for h in hosts], {h.name: variables.get_vars(host=h) for h in hosts}


def test_the_inventory_finds_exactly_the_fleets_running_instances(
    default_graph, fake_ec2, monkeypatch
):
    graph = default_graph
    tags = instance_tags(graph)
    ours = fake_ec2(tags)
    fake_ec2(tags, running=False)
    fake_ec2({**tags, "runner-fleet": "other"})
    fake_ec2({"Name": "unrelated"})
    hosts, hostvars = read_inventory(
        monkeypatch, AWS_REGION=graph.outputs["region"], FLEET_NAME=graph.outputs["fleetName"]
    )
    assert hosts == [ours]
    host = hostvars[ours]
    assert host["ansible_connection"] == "amazon.aws.aws_ssm"
    assert host["ansible_aws_ssm_bucket_name"] == graph.outputs["ssmTransferBucket"]
    assert host["ansible_aws_ssm_region"] == REGION
    assert host["ansible_become"] is True


def test_the_inventory_refuses_to_guess_the_fleet(default_graph, fake_ec2, monkeypatch):
    fake_ec2(instance_tags(default_graph))
    reasons: list[str] = []
    monkeypatch.setattr(
        inventory_manager.display,
        "error_as_warning",
        lambda msg, exception: reasons.append(f"{msg} {exception}"),
    )
    with pytest.raises(AnsibleError, match="Completely failed to parse inventory source"):
        read_inventory(monkeypatch, AWS_REGION=REGION)
    assert any("export FLEET_NAME" in reason for reason in reasons), reasons


def test_the_inventory_filters_output_matches_the_instance_tags(build_graph):
    graph = build_graph({"fleetName": "gpu"})
    filters = graph.outputs["inventoryFilters"]
    tags = instance_tags(graph)
    tag_filters = {k.removeprefix("tag:"): v for k, v in filters.items() if k.startswith("tag:")}
    assert tag_filters == {"runner-fleet": "gpu"}
    assert tag_filters.items() <= tags.items()
    assert filters["instance-state-name"] == "running"
    assert tags["runner-fleet-ssm-bucket"] == graph.outputs["ssmTransferBucket"]


def test_the_transfer_bucket_is_private_encrypted_unversioned_and_expires(default_graph):
    graph = default_graph
    block = graph.named(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "main-validation-ssm-public-access",
    )
    assert all(
        block[k]
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    ownership = graph.named(
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "main-validation-ssm-ownership"
    )
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    (rule,) = graph.named(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "main-validation-ssm-encryption",
    )["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": KMS_KEY_ARN,
    }
    assert rule["bucketKeyEnabled"] is True
    (lifecycle,) = graph.named(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "main-validation-ssm-lifecycle",
    )["rules"]
    assert lifecycle["status"] == "Enabled"
    assert lifecycle["expiration"]["days"] == 1
    assert lifecycle["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 1
    policy = json.loads(
        graph.named("aws:s3/bucketPolicy:BucketPolicy", "main-validation-ssm-policy")["policy"]
    )
    assert policy["Statement"][0]["Effect"] == "Deny"
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # The connection deletes each file after the transfer; versioning would keep copies.
    versioned = {r.name for r in graph.of_type("aws:s3/bucketVersioning:BucketVersioning")}
    assert versioned == {"main-bundle-versioning"}


def test_the_deployed_operator_policy_is_the_pure_document(default_graph):
    graph = default_graph
    deployed = json.loads(
        graph.named("aws:iam/policy:Policy", "main-validation-operator")["policy"]
    )
    assert deployed == POLICY
    assert graph.outputs["validationPolicyArn"].endswith("main-validation-operator")


@pytest.mark.parametrize(
    ("action", "resource", "context", "decision"),
    [
        ("ec2:DescribeInstances", "*", {}, "Allow"),
        ("ssm:StartSession", INSTANCE_ARN, {"ssm:resourceTag/runner-fleet": "main"}, "Allow"),
        (
            "ssm:StartSession",
            INSTANCE_ARN,
            {"ssm:resourceTag/runner-fleet": "other"},
            "ImplicitDeny",
        ),
        ("ssm:StartSession", INSTANCE_ARN, {}, "ImplicitDeny"),
        ("ssm:StartSession", SHELL_DOCUMENT, {}, "Allow"),
        (
            "ssm:StartSession",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/AWS-StartPortForwardingSession",
            {},
            "ImplicitDeny",
        ),
        (
            "ssm:TerminateSession",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/AIDAOPERATOR-0abc",
            {"aws:userid": "AIDAOPERATOR"},
            "Allow",
        ),
        (
            "ssm:TerminateSession",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/AIDAOTHER-0abc",
            {"aws:userid": "AIDAOPERATOR", "aws:username": "operator"},
            "ImplicitDeny",
        ),
        ("ssm:SendCommand", INSTANCE_ARN, {"ssm:resourceTag/runner-fleet": "main"}, "ImplicitDeny"),
        ("s3:PutObject", f"{TRANSFER_BUCKET_ARN}/i-0123/tmp/x", {}, "Allow"),
        ("s3:GetObject", f"{TRANSFER_BUCKET_ARN}/i-0123/tmp/x", {}, "Allow"),
        ("s3:DeleteObject", f"{TRANSFER_BUCKET_ARN}/i-0123/tmp/x", {}, "Allow"),
        ("s3:ListBucket", TRANSFER_BUCKET_ARN, {}, "Allow"),
        (
            "s3:GetObject",
            "arn:aws:s3:::main-bundle-bucket-a1b2c3d/bundles/x.zip",
            {},
            "ImplicitDeny",
        ),
        ("s3:PutBucketPolicy", TRANSFER_BUCKET_ARN, {}, "ImplicitDeny"),
        (
            "kms:GenerateDataKey",
            KMS_KEY_ARN,
            {
                "kms:ViaService": f"s3.{REGION}.amazonaws.com",
                "kms:EncryptionContext:aws:s3:arn": TRANSFER_BUCKET_ARN,
            },
            "Allow",
        ),
        (
            "kms:Decrypt",
            KMS_KEY_ARN,
            {
                "kms:ViaService": f"s3.{REGION}.amazonaws.com",
                "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::main-bundle-bucket-a1b2c3d",
            },
            "ImplicitDeny",
        ),
        (
            "kms:Decrypt",
            KMS_KEY_ARN,
            {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"},
            "ImplicitDeny",
        ),
    ],
)
def test_the_operator_may_validate_this_fleet_and_nothing_more(action, resource, context, decision):
    assert decide([POLICY], Request(action, resource, context)) == decision


def test_the_instances_get_no_permission_for_the_transfer_bucket(default_graph):
    # The aws_ssm connection hands the instance presigned URLs signed by the operator.
    graph = default_graph
    instance_policy = graph.named("aws:iam/rolePolicy:RolePolicy", "main-instance-policy")
    assert "validation-ssm-bucket" not in instance_policy["policy"]
