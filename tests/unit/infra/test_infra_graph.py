"""The Pulumi program under mocks: resource graph and the security properties on resource inputs.

Each test runs the real program (config -> RunnerFleet) with Pulumi.example.yaml's settings
(plus overrides) and inspects what would be sent to AWS. Properties that need real AWS are
asserted here on the inputs, as docs/security.md allows; the numbers refer to its list.
"""

from __future__ import annotations

import base64
import json
import runpy
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import pulumi
import pytest
import yaml
from infra_mocks import (
    ACCOUNT,
    KMS_KEY_ARN,
    MOCKS,
    PROJECT_ROOT,
    REGION,
    SECRETS,
    example_settings,
    set_stack_config,
)

from infra.config import ConfigError, parse_config

pytestmark = pytest.mark.unit

SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"

EXAMPLE_GRAPH = Counter(
    {
        # network: created VPC, 2 zones, one NAT
        "aws:ec2/vpc:Vpc": 1,
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": 1,
        "aws:ec2/internetGateway:InternetGateway": 1,
        "aws:ec2/subnet:Subnet": 4,
        "aws:ec2/routeTable:RouteTable": 2,
        "aws:ec2/routeTableAssociation:RouteTableAssociation": 4,
        "aws:ec2/eip:Eip": 1,
        "aws:ec2/natGateway:NatGateway": 1,
        "aws:ec2/securityGroup:SecurityGroup": 1,
        # key and secrets
        "aws:kms/key:Key": 1,
        "aws:kms/alias:Alias": 1,
        "aws:ssm/parameter:Parameter": 3,
        # playbook bundle
        "aws:s3/bucket:Bucket": 1,
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls": 1,
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 1,
        "aws:s3/bucketVersioning:BucketVersioning": 1,
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 1,
        "aws:s3/bucketPolicy:BucketPolicy": 1,
        "aws:s3/bucketObjectv2:BucketObjectv2": 1,
        # instance identity, template, group
        "aws:iam/role:Role": 1,
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 1,
        "aws:iam/rolePolicy:RolePolicy": 1,
        "aws:iam/instanceProfile:InstanceProfile": 1,
        "aws:ec2/launchTemplate:LaunchTemplate": 1,
        "aws:autoscaling/group:Group": 1,
        # runner agents too old for GitHub (infra/agent_freshness.py)
        "aws:cloudwatch/metricAlarm:MetricAlarm": 1,
    }
)
# The control plane (infra/control_plane.py): four functions with a role, a policy and a log
# group each; queue and dead letters; ledger; webhook URL; schedules and event rules.
CONTROL_PLANE_GRAPH = Counter(
    {
        "aws:iam/role:Role": 4,
        "aws:iam/rolePolicy:RolePolicy": 4,
        "aws:cloudwatch/logGroup:LogGroup": 4,
        "aws:lambda/function:Function": 4,
        "aws:lambda/functionUrl:FunctionUrl": 1,
        "aws:lambda/permission:Permission": 6,
        "aws:lambda/eventSourceMapping:EventSourceMapping": 1,
        "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": 3,
        "aws:sqs/queue:Queue": 2,
        "aws:sqs/queuePolicy:QueuePolicy": 1,
        "aws:dynamodb/table:Table": 1,
        "aws:cloudwatch/eventRule:EventRule": 4,
        "aws:cloudwatch/eventTarget:EventTarget": 4,
        "aws:cloudwatch/metricAlarm:MetricAlarm": 3,
    }
)

# Validation over Session Manager (infra/validation.py): the SSM file-transfer bucket and
# the operator's managed policy.
VALIDATION_GRAPH = Counter(
    {
        "aws:s3/bucket:Bucket": 1,
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls": 1,
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 1,
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 1,
        "aws:s3/bucketPolicy:BucketPolicy": 1,
        "aws:iam/policy:Policy": 1,
    }
)

# Baked images (infra/image_pipeline.py): Image Builder's component, recipe, build
# infrastructure (role, policy, SSM core, profile, log group), distribution and pipeline, the
# image parameter, the bake function (role, policy, log group) with its invocation, its
# dead-letter queue, async settings and two alarms (dead letters, errors), and the lifecycle
# policy with its role and managed policy; with the newest agent (the example's runnerVars),
# the outdated-agent alarm's rule that starts it and its dead letters' queue policy.
IMAGE_PIPELINE_GRAPH = Counter(
    {
        "aws:cloudwatch/eventRule:EventRule": 1,
        "aws:cloudwatch/eventTarget:EventTarget": 1,
        "aws:lambda/permission:Permission": 1,
        "aws:sqs/queuePolicy:QueuePolicy": 1,
        "aws:imagebuilder/component:Component": 1,
        "aws:imagebuilder/imageRecipe:ImageRecipe": 1,
        "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration": 1,
        "aws:imagebuilder/distributionConfiguration:DistributionConfiguration": 1,
        "aws:imagebuilder/imagePipeline:ImagePipeline": 1,
        "aws:imagebuilder/lifecyclePolicy:LifecyclePolicy": 1,
        "aws:ssm/parameter:Parameter": 1,
        "aws:iam/role:Role": 3,
        "aws:iam/rolePolicy:RolePolicy": 2,
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 2,
        "aws:iam/instanceProfile:InstanceProfile": 1,
        "aws:cloudwatch/logGroup:LogGroup": 2,
        "aws:lambda/function:Function": 1,
        "aws:lambda/invocation:Invocation": 1,
        "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": 1,
        "aws:sqs/queue:Queue": 1,
        "aws:cloudwatch/metricAlarm:MetricAlarm": 2,
    }
)

COMPONENTS = Counter(
    {
        "fleet:fleet:RunnerFleet": 1,
        "fleet:network:FleetNetwork": 1,
        "fleet:secrets:FleetSecrets": 1,
        "fleet:bundle:PlaybookBundle": 1,
        "fleet:iam:RunnerInstanceRole": 1,
        "fleet:launch_template:RunnerLaunchTemplate": 1,
        "fleet:autoscaling:RunnerGroup": 1,
        "fleet:control_plane:ControlPlane": 1,
        "fleet:validation:ValidationAccess": 1,
        "fleet:image_pipeline:RunnerImagePipeline": 1,
        "fleet:image_pipeline:BakeFunction": 1,
    }
)


def user_data(graph) -> str:
    template = graph.one("aws:ec2/launchTemplate:LaunchTemplate")
    return base64.b64decode(template["userData"]).decode("utf-8")


def test_example_stack_resource_graph(default_graph, shared_graph):
    graph = default_graph
    assert graph.counts() == (
        EXAMPLE_GRAPH + CONTROL_PLANE_GRAPH + VALIDATION_GRAPH + IMAGE_PIPELINE_GRAPH
    )
    assert graph.counts(custom=False) == COMPONENTS
    # Without the pipeline: the program as before it.
    plain = shared_graph({"imagePipeline": False})
    assert plain.counts() == EXAMPLE_GRAPH + CONTROL_PLANE_GRAPH + VALIDATION_GRAPH
    assert plain.counts(custom=False) == COMPONENTS - Counter(
        {"fleet:image_pipeline:RunnerImagePipeline": 1, "fleet:image_pipeline:BakeFunction": 1}
    )


def test_children_are_named_after_their_component(default_graph):
    graph = default_graph
    assert all(r.name == "main" or r.name.startswith("main-") for r in graph.resources)


def test_property_1_imds_v2_required_hop_limit_1_endpoint_enabled(default_graph):
    options = default_graph.one("aws:ec2/launchTemplate:LaunchTemplate")["metadataOptions"]
    assert options["httpTokens"] == "required"
    assert options["httpPutResponseHopLimit"] == 1
    assert options["httpEndpoint"] == "enabled"
    assert options["instanceMetadataTags"] == "disabled"


def test_property_4_root_and_docker_volumes_encrypted_and_deleted_on_termination(default_graph):
    mappings = default_graph.one("aws:ec2/launchTemplate:LaunchTemplate")["blockDeviceMappings"]
    assert [m["deviceName"] for m in mappings] == ["/dev/xvda", "/dev/xvdb"]  # root from the AMI
    for mapping in mappings:
        assert mapping["ebs"]["encrypted"] is True
        assert mapping["ebs"]["deleteOnTermination"] is True
        assert mapping["ebs"]["volumeType"] == "gp3"
    assert [m["ebs"]["volumeSize"] for m in mappings] == [30, 100]


def test_ebs_volumes_use_the_given_key(build_graph):
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/ebs-key"
    mappings = build_graph({"ebsKmsKeyArn": key}).one("aws:ec2/launchTemplate:LaunchTemplate")[
        "blockDeviceMappings"
    ]
    assert [m["ebs"]["kmsKeyId"] for m in mappings] == [key, key]


def test_no_public_ip_unless_asked(default_graph, build_graph):
    template = default_graph.one("aws:ec2/launchTemplate:LaunchTemplate")
    (interface,) = template["networkInterfaces"]
    assert interface["associatePublicIpAddress"] == "false"
    assert interface["securityGroups"] == ["main-network-runners-id"]
    public = build_graph(
        {"associatePublicIp": True, "subnetIds": ["subnet-0123abcd"]},
        drop=("vpcCidr", "availabilityZoneCount"),
    )
    (interface,) = public.one("aws:ec2/launchTemplate:LaunchTemplate")["networkInterfaces"]
    assert interface["associatePublicIpAddress"] == "true"


def test_property_5_secrets_are_securestrings_under_the_fleets_own_key(default_graph):
    graph = default_graph
    parameters = graph.of_type("aws:ssm/parameter:Parameter")
    assert sorted(p.inputs["name"] for p in parameters) == [
        "/imagebuilder/runner-fleet/main/image-id",  # an image id, no secret (test_infra_images)
        "/runner-fleet/main/github-app/app-id",
        "/runner-fleet/main/github-app/private-key",
        "/runner-fleet/main/github-app/webhook-secret",
    ]
    for parameter in parameters:
        if parameter.inputs["name"].startswith("/imagebuilder/"):
            assert parameter.inputs["type"] == "String"
            assert "value" not in parameter.inputs  # insecureValue: the stock image's id
            continue
        assert parameter.inputs["type"] == "SecureString"
        assert parameter.inputs["keyId"] == KMS_KEY_ARN
        assert "aws/ssm" not in parameter.inputs["keyId"]
        assert SECRET_SIGNATURE in parameter.inputs["value"]  # marked secret in the state
    key = graph.one("aws:kms/key:Key")
    assert key["enableKeyRotation"] is True
    assert graph.one("aws:kms/alias:Alias")["name"] == "alias/runner-fleet-main"
    assert json.loads(key["policy"])["Statement"][0]["Principal"] == {
        "AWS": f"arn:aws:iam::{ACCOUNT}:root"
    }


def test_property_5_with_an_existing_key_no_key_is_created(build_graph):
    existing = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
    graph = build_graph({"kmsKeyArn": existing})
    assert graph.of_type("aws:kms/key:Key") == []
    secure = [
        p
        for p in graph.of_type("aws:ssm/parameter:Parameter")
        if p.inputs["type"] == "SecureString"
    ]
    assert len(secure) == 3
    assert {p.inputs["keyId"] for p in secure} == {existing}
    assert graph.outputs["kmsKeyArn"] == existing


def test_property_7_no_secret_in_user_data_resources_or_stack_outputs(default_graph):
    graph = default_graph
    text = user_data(graph)
    exported = json.dumps(graph.outputs)
    for name, value in SECRETS.items():
        needles = {value, *value.split("\n")} - {"", "-----END"}
        for needle in needles:
            assert needle not in text, name
            assert needle not in exported, name
            for resource in graph.resources:
                if resource.typ == "aws:ssm/parameter:Parameter":
                    continue
                assert needle not in json.dumps(resource.inputs, default=str), (name, resource.name)
    assert "SECRET" not in text and "SECRET" not in exported


def test_property_7_user_data_holds_names_and_paths_only(default_graph):
    document = yaml.safe_load(user_data(default_graph))
    env = next(f for f in document["write_files"] if f["path"] == "/etc/runner-fleet/fleet.env")
    keys = {line.split("=", 1)[0] for line in env["content"].splitlines()}
    assert keys == {
        "FLEET_NAME",
        "AWS_REGION",
        "ASG_NAME",
        "LAUNCH_HOOK_NAME",
        "PARAMETER_ROOT",
        "BUNDLE_BUCKET",
        "BUNDLE_KEY",
        "BAKED_IMAGE",
        "DOCKER_DEVICE",
        "DOCKER_VOLUME_GIB",
        "JIT_WAIT_SECONDS",
        "METRICS_NAMESPACE",
        "ANSIBLE_VERSION",
        "AWSCLI_VERSION",
    }
    assert "PARAMETER_ROOT=/runner-fleet/main\n" in env["content"]
    assert "BUNDLE_BUCKET=main-bundle-bucket-a1b2c3d\n" in env["content"]


def test_property_9_runner_group_closed_to_public_repositories_by_default(default_graph):
    graph = default_graph
    settings = graph.fleet.control_plane.settings
    assert settings["allow_public_repositories"] is False
    assert settings["runner_group"] == "runner-fleet"
    docs = (PROJECT_ROOT / "docs" / "deploy-aws.md").read_text()
    assert "runnerGroupAllowsPublicRepositories" in docs
    assert "public repositor" in docs.lower() and "pull request" in docs.lower()


def test_property_17_busy_runners_are_not_taken_by_the_group(default_graph):
    group = default_graph.one("aws:autoscaling/group:Group")
    assert group["protectFromScaleIn"] is True
    assert "AZRebalance" in group["suspendedProcesses"]
    assert group["instanceRefresh"]["preferences"]["scaleInProtectedInstances"] == "Ignore"
    assert group["capacityRebalance"] is False  # no Spot in the example
    hooks = {h["lifecycleTransition"]: h for h in group["initialLifecycleHooks"]}
    assert hooks["autoscaling:EC2_INSTANCE_TERMINATING"]["name"] == "runner-fleet-main-terminate"


def test_property_17_with_spot_capacity_rebalance_is_on_and_termination_is_hooked(build_graph):
    group = build_graph({"spotPercentage": 60}).one("aws:autoscaling/group:Group")
    assert group["capacityRebalance"] is True
    assert group["protectFromScaleIn"] is True
    assert (
        group["mixedInstancesPolicy"]["instancesDistribution"][
            "onDemandPercentageAboveBaseCapacity"
        ]
        == 40
    )
    hooks = {h["lifecycleTransition"]: h for h in group["initialLifecycleHooks"]}
    assert hooks["autoscaling:EC2_INSTANCE_TERMINATING"]["defaultResult"] == "CONTINUE"


def test_runner_security_group_has_no_inbound_rule(shared_graph):
    graph = shared_graph({"ssmVpcEndpoints": True})
    runners = graph.named("aws:ec2/securityGroup:SecurityGroup", "main-network-runners")
    assert runners["ingress"] == []
    assert runners["egress"][0]["cidrBlocks"] == ["0.0.0.0/0"]
    default = graph.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default["ingress"] == [] and default["egress"] == []
    # No separately managed rule of any kind either (they would escape the inline lists).
    assert not [
        r.typ
        for r in graph.resources
        if "rule" in r.typ.lower() and "securitygroup" in r.typ.lower()
    ]
    # The only ingress anywhere: HTTPS from the runners to the SSM endpoints.
    endpoints = graph.named("aws:ec2/securityGroup:SecurityGroup", "main-network-endpoints")
    (rule,) = endpoints["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["securityGroups"]) == (
        443,
        443,
        ["main-network-runners-id"],
    )


def test_ssm_endpoints_when_enabled(shared_graph):
    graph = shared_graph({"ssmVpcEndpoints": True})
    endpoints = {
        e.inputs["serviceName"]: e.inputs for e in graph.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert set(endpoints) == {
        f"com.amazonaws.{REGION}.{s}" for s in ("ssm", "ssmmessages", "ec2messages", "s3")
    }
    assert endpoints[f"com.amazonaws.{REGION}.ssm"]["privateDnsEnabled"] is True
    assert endpoints[f"com.amazonaws.{REGION}.s3"]["vpcEndpointType"] == "Gateway"


def test_existing_subnets_create_no_network_but_the_security_group(build_graph):
    graph = build_graph(
        {"subnetIds": ["subnet-0123abcd", "subnet-0456cdef"], "ssmVpcEndpoints": True},
        drop=("vpcCidr", "availabilityZoneCount"),
    )
    types = set(graph.counts())
    assert not types & {"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway"}
    runners = graph.named("aws:ec2/securityGroup:SecurityGroup", "main-network-runners")
    assert runners["vpcId"] == "vpc-0existing0000000"
    assert graph.one("aws:autoscaling/group:Group")["vpcZoneIdentifiers"] == [
        "subnet-0123abcd",
        "subnet-0456cdef",
    ]
    # interface endpoints only: the subnets' route tables are not ours to change
    assert len(graph.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")) == 3


def test_s3_bundle_bucket_is_locked_down(default_graph):
    graph = default_graph
    block = graph.named(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "main-bundle-public-access"
    )
    assert [
        block[k]
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    ] == [True, True, True, True]
    (rule,) = graph.named(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "main-bundle-encryption",
    )["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": KMS_KEY_ARN,
    }
    assert rule["bucketKeyEnabled"] is True
    versioning = graph.one("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    ownership = graph.named(
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "main-bundle-ownership"
    )
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    policy = json.loads(
        graph.named("aws:s3/bucketPolicy:BucketPolicy", "main-bundle-policy")["policy"]
    )
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bundle = graph.one("aws:s3/bucketObjectv2:BucketObjectv2")
    assert (bundle["serverSideEncryption"], bundle["kmsKeyId"]) == ("aws:kms", KMS_KEY_ARN)
    assert bundle["key"] == graph.outputs["bundleKey"]
    assert graph.named("aws:s3/bucket:Bucket", "main-bundle-bucket")["forceDestroy"] is True


def test_bundle_is_a_reproducible_zip_of_the_playbooks_and_the_canary(
    build_graph, default_graph, tmp_path
):
    graph = build_graph()
    archive = graph.fleet.bundle.archive
    assert archive.parent == tmp_path / "build"
    with zipfile.ZipFile(archive) as bundle:
        # Paths as in the project, so the roles' default canary path resolves on the instance.
        assert sorted(bundle.namelist()) == [
            "playbooks/bake.yml",
            "playbooks/boot.yml",
            "playbooks/roles/docker_host/tasks/main.yml",
            "runner-vars.yml",
            "tests/canary/test_canary.py",
        ]
        # The example's runnerVars.
        runner_vars = yaml.safe_load(bundle.read("runner-vars.yml"))
        assert runner_vars == {"actions_runner_version": "latest"}
    # The same project built earlier, from another directory (other paths, other file times):
    # the same bytes and key. The tests below compare their changed projects with that build.
    elsewhere = default_graph.fleet.bundle.archive
    assert elsewhere.parent != archive.parent
    assert archive.read_bytes() == elsewhere.read_bytes()
    assert graph.outputs["bundleKey"] == default_graph.outputs["bundleKey"]
    assert graph.one("aws:s3/bucketObjectv2:BucketObjectv2")["contentType"] == "application/zip"


def test_bundle_key_changes_with_the_playbooks(build_graph, default_graph, playbooks_dir):
    before = default_graph.outputs["bundleKey"]  # the same project unchanged (test above)
    (playbooks_dir / "boot.yml").write_text("- hosts: runners\n  tasks: [{meta: noop}]\n")
    after = build_graph().outputs["bundleKey"]
    assert before != after and after.startswith("bundles/playbooks-")


def test_property_3_deployed_instance_policy_is_the_pure_document(
    default_graph, example_instance_policy
):
    graph = default_graph
    deployed = json.loads(
        graph.named("aws:iam/rolePolicy:RolePolicy", "main-instance-policy")["policy"]
    )
    assert deployed == example_instance_policy(graph.outputs["bundleKey"])
    attachment = graph.named(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "main-instance-ssm-core"
    )
    assert attachment["policyArn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    trust = json.loads(graph.named("aws:iam/role:Role", "main-instance-role")["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_group_uses_a_mixed_instances_policy_across_the_types(default_graph):
    graph = default_graph
    group = graph.one("aws:autoscaling/group:Group")
    policy = group["mixedInstancesPolicy"]
    assert [o["instanceType"] for o in policy["launchTemplate"]["overrides"]] == [
        "m7i.xlarge",
        "m6i.xlarge",
        "m6a.xlarge",
    ]
    spec = policy["launchTemplate"]["launchTemplateSpecification"]
    assert (spec["launchTemplateId"], spec["version"]) == ("lt-0123456789abcdef0", "1")
    assert policy["instancesDistribution"]["spotAllocationStrategy"] == "price-capacity-optimized"
    assert group["instanceRefresh"]["strategy"] == "Rolling"
    assert group["maxInstanceLifetime"] == 86_400
    assert (group["minSize"], group["maxSize"]) == (0, 10)
    assert "desiredCapacity" not in group
    assert group["waitForCapacityTimeout"] == "0"
    assert all(tag["propagateAtLaunch"] for tag in group["tags"])
    assert {t["key"]: t["value"] for t in group["tags"]}["runner-fleet"] == "main"
    assert "warmPool" not in group


def test_lifecycle_hook_names_are_exported_for_the_control_plane(default_graph):
    graph = default_graph
    group = graph.one("aws:autoscaling/group:Group")
    hooks = {h["lifecycleTransition"]: h for h in group["initialLifecycleHooks"]}
    launch = hooks["autoscaling:EC2_INSTANCE_LAUNCHING"]
    assert launch["name"] == graph.outputs["launchLifecycleHookName"] == "runner-fleet-main-launch"
    assert launch["defaultResult"] == "ABANDON"
    assert graph.outputs["terminateLifecycleHookName"] == "runner-fleet-main-terminate"
    settings = graph.fleet.control_plane.settings
    assert settings["launch_hook_name"] == "runner-fleet-main-launch"
    assert (
        settings["jit_parameter_template"] == "/runner-fleet/main/runners/{instance_id}/jitconfig"
    )


def test_warm_pool_uses_the_launch_template_directly(shared_graph):
    graph = shared_graph(
        {"warmPoolSize": 2, "instanceTypes": ["m7i.xlarge"], "imagePipeline": False}
    )
    group = graph.one("aws:autoscaling/group:Group")
    assert "mixedInstancesPolicy" not in group
    assert group["launchTemplate"]["id"] == "lt-0123456789abcdef0"
    assert group["warmPool"]["minSize"] == 2
    assert group["warmPool"]["poolState"] == "Stopped"
    assert group["warmPool"]["instanceReusePolicy"]["reuseOnScaleIn"] is False
    assert graph.one("aws:ec2/launchTemplate:LaunchTemplate")["instanceType"] == "m7i.xlarge"


def test_official_image_is_looked_up_by_owner_and_architecture(build_graph, mocks):
    build_graph(
        {"architecture": "arm64", "instanceTypes": ["m7g.xlarge"], "amiFamily": "ubuntu-24.04"}
    )
    (call,) = [c for c in mocks.calls if c.token == "aws:ec2/getAmi:getAmi"]
    assert call.args["owners"] == ["099720109477"]
    filters = {f["name"]: f["values"] for f in call.args["filters"]}
    assert filters["name"] == ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*"]
    assert filters["architecture"] == ["arm64"]


def test_image_of_the_wrong_architecture_fails_before_any_resource(build_graph, mocks):
    mocks.image_architecture = "arm64"
    with pytest.raises(ConfigError, match="amiId: image ami-0aaaaaaaaaaaaaaaa is arm64"):
        build_graph({"amiId": "ami-0aaaaaaaaaaaaaaaa"})
    assert mocks.resources == []


def test_missing_playbooks_fail_before_any_resource(build_graph, playbooks_dir, mocks):
    (playbooks_dir / "bake.yml").unlink()
    with pytest.raises(FileNotFoundError, match=r"playbooks/bake\.yml not found"):
        build_graph()
    assert mocks.resources == []


def test_a_missing_canary_suite_fails_before_any_resource(build_graph, playbooks_dir, mocks):
    shutil.rmtree(playbooks_dir.parent / "tests" / "canary")
    with pytest.raises(FileNotFoundError, match=r"tests/canary/ not found"):
        build_graph()
    assert mocks.resources == []


def test_runner_vars_travel_in_the_bundle_and_change_its_key(build_graph, default_graph):
    before = default_graph.outputs["bundleKey"]
    runner_vars = {"actions_runner_url": "https://mirror.example/agent.tar.gz"}
    graph = build_graph({"runnerVars": runner_vars})
    assert graph.outputs["bundleKey"] != before
    with zipfile.ZipFile(graph.fleet.bundle.archive) as bundle:
        assert yaml.safe_load(bundle.read("runner-vars.yml")) == runner_vars


@pytest.mark.parametrize(
    ("runner_vars", "message"),
    [
        (["a"], "expected a map of role variables"),
        ({"actions_runner_jitconfig": "x"}, "made per instance by the control plane"),
        ({"bad-name": 1}, "'bad-name' is not a variable name"),
    ],
)
def test_bad_runner_vars_are_refused_with_the_fix(build_graph, runner_vars, message):
    with pytest.raises(ConfigError, match=message):
        build_graph({"runnerVars": runner_vars})


def test_a_hibernated_warm_pool_is_refused_with_the_reason(build_graph):
    with pytest.raises(ConfigError, match="Hibernated is not supported: hibernation needs"):
        build_graph(
            {"warmPoolSize": 1, "warmPoolState": "Hibernated", "instanceTypes": ["m7i.xlarge"]}
        )


def test_bundle_key_changes_with_the_canary(build_graph, default_graph, playbooks_dir):
    before = default_graph.outputs["bundleKey"]  # the same project unchanged
    (playbooks_dir.parent / "tests" / "canary" / "test_more.py").write_text("")
    assert build_graph().outputs["bundleKey"] != before


def test_stack_outputs_are_identifiers_only(default_graph):
    outputs = default_graph.outputs
    assert set(outputs) == {
        "vpcId",
        "subnetIds",
        "securityGroupId",
        "kmsKeyArn",
        "githubAppParameterNames",
        "bundleBucket",
        "bundleKey",
        "instanceRoleArn",
        "imageId",
        "imageParameter",
        "imagePipelineArn",
        "launchTemplateId",
        "autoscalingGroupName",
        "autoscalingGroupArn",
        "launchLifecycleHookName",
        "terminateLifecycleHookName",
        "parameterRoot",
        "jitParameterTemplate",
        "webhookUrl",
        "deliveryQueueUrl",
        "deadLetterQueueUrl",
        "ledgerTable",
        "fleetName",
        "region",
        "ssmTransferBucket",
        "inventoryFilters",
        "validationPolicyArn",
    }
    assert outputs["autoscalingGroupName"] == parse_config(example_settings()).asg_name


@pulumi.runtime.test
def test_main_program_reads_config_builds_the_fleet_and_exports(playbooks_dir, monkeypatch):
    set_stack_config(example_settings())
    MOCKS.reset()
    # The project root as __main__ sees it: the stand-in playbooks/, and build/ beside them.
    monkeypatch.setattr("infra.fleet.PROJECT_ROOT", playbooks_dir.parent)
    namespace = runpy.run_path(str(PROJECT_ROOT / "__main__.py"))
    fleet = namespace["fleet"]
    assert namespace["settings"].fleet_name == "main"
    assert (playbooks_dir.parent / "build" / Path(fleet.bundle.key).name).is_file()

    def check(arn: str) -> None:
        assert arn.endswith("autoScalingGroupName/runner-fleet-main")
        assert set(fleet.outputs) >= {"autoscalingGroupName", "launchLifecycleHookName"}

    return fleet.group.arn.apply(check)
