"""Baked images that stay current (infra/image_pipeline.py), under the mocks and for real where
it can run here: the component's script, the bake function's code, the policies' decisions.

What AWS holds the program to, and where each rule is asserted:
* a component document is at most 16,000 characters inline (CreateComponent);
* semantic versions are three numbers of at most 2^30 - 1, and immutable: whatever changes
  what a component or recipe holds must change its version;
* Image Builder's service-linked role writes parameters under /imagebuilder/ only, and an
  aws:ec2:image parameter holds an AMI id (SsmParameterConfiguration);
* a launch template resolves `resolve:ssm:<name>` at each launch; the parameter must exist
  first, and the group can then have no warm pool (test_infra_config) and no instance refresh
  with skip matching;
* the schedule is Image Builder's six-field cron, and EXPRESSION_MATCH_ONLY bakes on every
  match (the default condition waits for newer versions of semver-filtered inputs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from infra_mocks import ACCOUNT, KMS_KEY_ARN, REGION, example_settings

from infra.bake_function import BAKE_FUNCTION_CODE
from infra.config import parse_config
from infra.iam_images import bake_trigger_policy, image_build_instance_policy
from infra.image_component import (
    BAKE_COMMAND,
    COMPONENT_DATA_MAX_CHARS,
    bake_files,
    component_document,
    content_version,
)
from infra.launch_template import user_data_settings
from infra.user_data import UserDataSettings, cloud_config
from tests.fakes.iam_policy import Request, decide

pytestmark = pytest.mark.unit

STOCK_IMAGE = "ami-0123456789abcdef0"  # what the mocks answer for the official image
IMAGE_NAME = "runner-fleet-main-image"
IMAGE_PARAMETER = "/imagebuilder/runner-fleet/main/image-id"
PIPELINE_ARN = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image-pipeline/{IMAGE_NAME}"
BUCKET = "main-bundle-bucket-a1b2c3d"  # the mocks' name for the bundle bucket

COMPONENT = "aws:imagebuilder/component:Component"
RECIPE = "aws:imagebuilder/imageRecipe:ImageRecipe"
INFRASTRUCTURE = "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration"
DISTRIBUTION = "aws:imagebuilder/distributionConfiguration:DistributionConfiguration"
PIPELINE = "aws:imagebuilder/imagePipeline:ImagePipeline"
PARAMETER = "aws:ssm/parameter:Parameter"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def settings_for(graph) -> UserDataSettings:
    """What the example fleet's instances are told (the launch template's user data)."""
    cfg = parse_config(example_settings())
    return user_data_settings(
        cfg,
        region=REGION,
        bundle_bucket=graph.outputs["bundleBucket"],
        bundle_key=graph.outputs["bundleKey"],
    )


def steps(document_text: str) -> list[dict]:
    document = yaml.safe_load(document_text)
    assert document["schemaVersion"] == 1.0
    (phase,) = document["phases"]
    assert phase["name"] == "build"
    return phase["steps"]


def write_script(document_text: str) -> str:
    write, _ = steps(document_text)
    assert (write["name"], write["action"]) == ("WriteBootFiles", "ExecuteBash")
    (script,) = write["inputs"]["commands"]
    return script


SETTINGS = UserDataSettings(
    fleet_name="main",
    region=REGION,
    asg_name="runner-fleet-main",
    launch_hook_name="runner-fleet-main-launch",
    parameter_root="/runner-fleet/main",
    bundle_bucket=BUCKET,
    bundle_key="bundles/playbooks-0123456789abcdef0123.zip",
    baked_image=False,
    docker_volume_gib=100,
    jit_wait_seconds=1200,
)


# -- the component: the boot files, then the bake ---------------------------------------------


def test_the_component_writes_the_boot_files_then_bakes():
    document = component_document(SETTINGS, IMAGE_NAME)
    write, bake = steps(document)
    assert (bake["name"], bake["action"]) == ("Bake", "ExecuteBash")
    assert bake["inputs"]["commands"] == [BAKE_COMMAND]
    assert BAKE_COMMAND == "/usr/local/sbin/runner-bootstrap --bake-only"
    assert bake["timeoutSeconds"] == 3600
    assert yaml.safe_load(document)["name"] == IMAGE_NAME
    assert write["inputs"]["commands"] == [write_script(document)]


def moved_under(script: str, root: Path) -> str:
    """The script with the paths of its commands under root; here-documents untouched."""
    lines, delimiter = [], None
    for line in script.split("\n"):
        if delimiter is None:
            for top in ("/etc/runner-fleet", "/usr/local/sbin"):
                line = line.replace(f" {top}", f" {root}{top}").replace(f">{top}", f">{root}{top}")
            if "<<'" in line:
                delimiter = line.split("<<'")[1].rstrip("'")
        elif line == delimiter:
            delimiter = None
        lines.append(line)
    return "\n".join(lines)


def test_the_component_script_writes_the_user_datas_files_byte_for_byte(tmp_path):
    """Run the component's first step with its paths under tmp_path: every file it writes is
    the user data's, with the user data's mode."""
    script = write_script(component_document(SETTINGS, IMAGE_NAME))
    root = tmp_path / "root"
    script = moved_under(script, root)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "chown").write_text('#!/bin/sh\nprintf "%s\\n" "$*" >>"$CALLS"\n')
    (stubs / "chown").chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "CALLS": str(tmp_path / "chown-calls")}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = {e["path"]: e for e in cloud_config(SETTINGS)["write_files"]}
    written = bake_files(SETTINGS)
    assert [e["path"] for e in written] == [
        "/etc/runner-fleet/fleet.env",
        "/etc/runner-fleet/inventory.yml",
        "/usr/local/sbin/runner-bootstrap",
    ]
    for entry in written:
        target = Path(f"{root}{entry['path']}")
        assert target.read_text() == expected[entry["path"]]["content"]
        assert (
            oct(target.stat().st_mode & 0o777) == "0o" + expected[entry["path"]]["permissions"][1:]
        )
    assert (tmp_path / "chown-calls").read_text().split("\n")[:-1] == [
        f"root:root {root}{entry['path']}" for entry in written
    ]


def test_the_component_script_passes_shellcheck(tmp_path):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is required (apt-get install shellcheck)"
    script = tmp_path / "write-boot-files.sh"
    script.write_text(write_script(component_document(SETTINGS, IMAGE_NAME)))
    result = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_component_fits_image_builders_inline_limit_with_the_longest_names():
    longest = parse_config(
        {"githubScope": "my-org", "fleetName": "f" * 24, "ssmParameterPrefix": "p" * 29}
    )
    settings = user_data_settings(
        longest,
        region="ap-southeast-7",
        bundle_bucket="f" * 24 + "-bundle-bucket-a1b2c3d",
        bundle_key="bundles/playbooks-0123456789abcdef0123.zip",
    )
    assert len(component_document(settings, longest.names.image_builder)) < (
        COMPONENT_DATA_MAX_CHARS
    )


def test_a_component_image_builder_would_refuse_fails_at_preview():
    oversized = UserDataSettings(**{**SETTINGS.__dict__, "bundle_key": "k" * 2500})
    with pytest.raises(ValueError, match="Image Builder accepts 16000 inline"):
        component_document(oversized, IMAGE_NAME)
    # AWSTOE substitutes {{ ... }} in a document's inputs: such a file would not arrive as is.
    templated = UserDataSettings(**{**SETTINGS.__dict__, "bundle_key": "bundles/{{x}}.zip"})
    with pytest.raises(ValueError, match="Image Builder would substitute"):
        component_document(templated, IMAGE_NAME)


def test_versions_are_digests_within_image_builders_semantic_versions():
    versions = {content_version("a"), content_version("b"), content_version("a", "b")}
    assert len(versions) == 3
    assert content_version("a") == content_version("a")
    for version in versions:
        major, minor, patch = (int(node) for node in version.split("."))
        assert major == 1
        assert 0 <= minor <= 2**30 - 1 and 0 <= patch <= 2**30 - 1


# -- the graph ---------------------------------------------------------------------------------


def test_the_component_is_the_fleets_boot_files_and_bundle(default_graph):
    graph = default_graph
    component = graph.one(COMPONENT)
    assert component["name"] == IMAGE_NAME
    assert component["platform"] == "Linux"
    assert component["data"] == component_document(settings_for(graph), IMAGE_NAME)
    assert component["version"] == content_version(component["data"])
    # The bake fetches the bundle the instances fetch.
    assert f"BUNDLE_KEY={graph.outputs['bundleKey']}\n" in component["data"]
    assert f"BUNDLE_BUCKET={graph.outputs['bundleBucket']}\n" in component["data"]


def test_the_recipe_bakes_on_the_stock_image_with_an_encrypted_gp3_root(default_graph):
    graph = default_graph
    recipe = graph.one(RECIPE)
    assert recipe["parentImage"] == STOCK_IMAGE == graph.outputs["imageId"]
    (root,) = recipe["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda"  # the stock image's root device
    assert root["ebs"] == {
        "volumeType": "gp3",
        "volumeSize": 30,
        "encrypted": True,
        "deleteOnTermination": True,
    }
    component = graph.of_type(COMPONENT)[0]
    (entry,) = recipe["components"]
    assert entry["componentArn"] == (
        f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:component/{IMAGE_NAME}/"
        f"{component.inputs['version']}/1"
    )
    assert recipe["systemsManagerAgent"] == {"uninstallAfterBuild": False}


def test_the_recipe_uses_the_given_image_and_volume_key(build_graph):
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/ebs-key"
    graph = build_graph({"amiId": "ami-0fedcba9876543210", "ebsKmsKeyArn": key})
    recipe = graph.one(RECIPE)
    assert recipe["parentImage"] == "ami-0fedcba9876543210"
    assert recipe["blockDeviceMappings"][0]["ebs"]["kmsKeyId"] == key
    (distribution,) = graph.one(DISTRIBUTION)["distributions"]
    assert distribution["amiDistributionConfiguration"]["kmsKeyId"] == key


def test_component_recipe_and_bake_change_with_the_bundle(build_graph, default_graph):
    before = default_graph  # this project as it is (the bundle is reproducible: test_infra_graph)
    after = build_graph({"runnerVars": {"docker_host_registry_mirrors": ["https://m.example"]}})
    assert before.outputs["bundleKey"] != after.outputs["bundleKey"]
    for typ in (COMPONENT, RECIPE):
        assert before.one(typ)["version"] != after.one(typ)["version"]
    invocations = [
        graph.one("aws:lambda/invocation:Invocation")["triggers"] for graph in (before, after)
    ]
    assert invocations[0] != invocations[1]
    # ... and stay put when nothing changed: no needless bake.
    again = build_graph()
    assert again.one(RECIPE)["version"] == before.one(RECIPE)["version"]


def test_the_build_instance_runs_in_the_fleets_network_imdsv2_only(default_graph):
    graph = default_graph
    infrastructure = graph.one(INFRASTRUCTURE)
    assert infrastructure["name"] == IMAGE_NAME
    assert infrastructure["subnetId"] == graph.outputs["subnetIds"][0]
    assert infrastructure["securityGroupIds"] == [graph.outputs["securityGroupId"]]
    assert infrastructure["instanceMetadataOptions"] == {
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }
    assert infrastructure["terminateInstanceOnFailure"] is True
    assert infrastructure["instanceTypes"] == ["m7i.xlarge", "m6i.xlarge", "m6a.xlarge"]
    profile = graph.named("aws:iam/instanceProfile:InstanceProfile", "main-image-build-profile")
    assert infrastructure["instanceProfileName"] == "main-image-build-profile-a1b2c3d"
    assert profile["role"] == "main-image-build-role-a1b2c3d"


def build_policy(bundle_key: str) -> dict:
    return image_build_instance_policy(
        partition="aws",
        region=REGION,
        account_id=ACCOUNT,
        parameter_root="/runner-fleet/main",
        kms_key_arn=KMS_KEY_ARN,
        bundle_bucket=BUCKET,
        bundle_key=bundle_key,
        component_name=IMAGE_NAME,
        log_group=f"/aws/imagebuilder/{IMAGE_NAME}",
    )


def test_the_build_role_is_ssm_core_plus_the_pure_document(default_graph):
    graph = default_graph
    deployed = json.loads(
        graph.named("aws:iam/rolePolicy:RolePolicy", "main-image-build-policy")["policy"]
    )
    assert deployed == build_policy(graph.outputs["bundleKey"])
    attachment = graph.named(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "main-image-build-ssm-core"
    )
    assert attachment["policyArn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    trust = json.loads(
        graph.named("aws:iam/role:Role", "main-image-build-role")["assumeRolePolicy"]
    )
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    log_group = graph.named("aws:cloudwatch/logGroup:LogGroup", "main-image-build-logs")
    assert (log_group["name"], log_group["retentionInDays"]) == (
        f"/aws/imagebuilder/{IMAGE_NAME}",
        30,
    )


KEY = "bundles/playbooks-0123456789abcdef0123.zip"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
PARAMETERS = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
VIA_S3 = {
    "kms:ViaService": f"s3.{REGION}.amazonaws.com",
    "kms:EncryptionContext:aws:s3:arn": BUCKET_ARN,
}


@pytest.mark.parametrize(
    ("request_", "decision"),
    [
        (Request("s3:GetObject", f"{BUCKET_ARN}/{KEY}"), "Allow"),
        (Request("s3:GetObject", f"{BUCKET_ARN}/bundles/other.zip"), "ImplicitDeny"),
        (Request("s3:PutObject", f"{BUCKET_ARN}/{KEY}"), "ImplicitDeny"),
        (Request("kms:Decrypt", KMS_KEY_ARN, VIA_S3), "Allow"),
        (Request("kms:Decrypt", KMS_KEY_ARN, {**VIA_S3, "kms:ViaService": "ssm"}), "ImplicitDeny"),
        (Request("kms:Decrypt", KMS_KEY_ARN), "ImplicitDeny"),
        (
            Request(
                "imagebuilder:GetComponent",
                f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:component/{IMAGE_NAME}/1.2.3/1",
            ),
            "Allow",
        ),
        (
            Request(
                "imagebuilder:GetComponent",
                f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:component/someone-else/1.2.3/1",
            ),
            "ImplicitDeny",
        ),
        (
            Request(
                "logs:PutLogEvents",
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/imagebuilder/{IMAGE_NAME}:"
                "log-stream:1.2.3/1",
            ),
            "Allow",
        ),
        (
            Request(
                "logs:PutLogEvents",
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/x:log-stream:y",
            ),
            "ImplicitDeny",
        ),
        # The managed SSM core policy allows ssm:GetParameter on *: the fleet's are denied.
        (
            Request("ssm:GetParameter", f"{PARAMETERS}/runner-fleet/main/github-app/private-key"),
            "ExplicitDeny",
        ),
        (
            Request("ssm:GetParameter", f"{PARAMETERS}/runner-fleet/main/runners/i-1/jitconfig"),
            "ExplicitDeny",
        ),
        (Request("ssm:PutParameter", f"{PARAMETERS}{IMAGE_PARAMETER}"), "ImplicitDeny"),
        (Request("autoscaling:TerminateInstanceInAutoScalingGroup", "*"), "ImplicitDeny"),
        (Request("ec2:CreateImage", "*"), "ImplicitDeny"),
    ],
)
def test_the_build_instance_may_read_the_bundle_and_its_component_and_nothing_else(
    request_, decision
):
    managed_ssm_core = {
        "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"}]
    }
    assert decide([build_policy(KEY), managed_ssm_core], request_) == decision


def test_the_distribution_writes_the_new_image_to_the_parameter(default_graph):
    graph = default_graph
    distribution = graph.one(DISTRIBUTION)
    (target,) = distribution["distributions"]
    assert target["region"] == REGION
    assert target["ssmParameterConfigurations"] == [
        {"parameterName": IMAGE_PARAMETER, "dataType": "aws:ec2:image"}
    ]
    assert target["amiDistributionConfiguration"]["name"] == (
        f"{IMAGE_NAME}-{{{{ imagebuilder:buildDate }}}}"
    )
    assert "kmsKeyId" not in target["amiDistributionConfiguration"]  # the account's aws/ebs


def test_the_parameter_starts_with_the_stock_image_and_belongs_to_image_builder(default_graph):
    graph = default_graph
    parameter = graph.named(PARAMETER, "main-image-image-id")
    assert parameter["name"] == IMAGE_PARAMETER == graph.outputs["imageParameter"]
    assert parameter["type"] == "String"
    assert parameter["dataType"] == "aws:ec2:image"
    assert parameter["insecureValue"] == STOCK_IMAGE
    # Where AWSServiceRoleForImageBuilder may write (ssm:PutParameter on parameter/imagebuilder/*).
    assert parameter["name"].startswith("/imagebuilder/")
    registration = graph.registration(PARAMETER, "main-image-image-id")
    assert registration.ignore_changes == ("insecureValue",)


def test_the_pipeline_bakes_weekly_on_every_match(default_graph, build_graph):
    graph = default_graph
    pipeline = graph.one(PIPELINE)
    assert pipeline["name"] == IMAGE_NAME
    assert pipeline["schedule"] == {
        "scheduleExpression": "cron(0 4 ? * sun *)",
        "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY",
    }
    assert pipeline["status"] == "ENABLED"
    assert pipeline["imageRecipeArn"] == (
        f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image-recipe/{IMAGE_NAME}/"
        f"{graph.one(RECIPE)['version']}"
    )
    assert pipeline["infrastructureConfigurationArn"].endswith(
        f":infrastructure-configuration/{IMAGE_NAME}"
    )
    assert pipeline["distributionConfigurationArn"].endswith(
        f":distribution-configuration/{IMAGE_NAME}"
    )
    assert graph.outputs["imagePipelineArn"] == PIPELINE_ARN
    daily = build_graph({"imagePipelineSchedule": "cron(30 1 * * ? *)"})
    assert daily.one(PIPELINE)["schedule"]["scheduleExpression"] == "cron(30 1 * * ? *)"


def test_runners_launch_from_the_parameter(default_graph):
    graph = default_graph
    template = graph.one(TEMPLATE)
    assert template["imageId"] == f"resolve:ssm:{IMAGE_PARAMETER}"
    # EC2 resolves the parameter when the template is created: it exists first.
    parameter = graph.registration(PARAMETER, "main-image-image-id")
    assert parameter.urn in graph.registration(TEMPLATE, "main-template-lt").dependencies
    # The root volume is the stock image's device, as the recipe bakes it.
    assert template["blockDeviceMappings"][0]["deviceName"] == "/dev/xvda"
    # AWS refuses an instance refresh with skip matching for such a template.
    group = graph.one("aws:autoscaling/group:Group")
    assert group["instanceRefresh"]["preferences"]["skipMatching"] is False


def test_without_the_pipeline_runners_launch_from_the_image_directly(shared_graph):
    graph = shared_graph({"imagePipeline": False})
    assert graph.one(TEMPLATE)["imageId"] == STOCK_IMAGE
    assert not [r for r in graph.resources if r.typ.startswith("aws:imagebuilder/")]
    assert graph.outputs["imageParameter"] is None
    assert graph.outputs["imagePipelineArn"] is None
    group = graph.one("aws:autoscaling/group:Group")
    assert group["instanceRefresh"]["preferences"]["skipMatching"] is True


# -- the bake function: starts this pipeline, on every change of the recipe --------------------


def test_the_bake_function_may_start_its_own_pipeline_only(default_graph):
    graph = default_graph
    function = graph.named("aws:lambda/function:Function", "main-image-bake")
    assert function["name"] == "runner-fleet-main-bake"
    assert function["environment"]["variables"] == {"IMAGE_PIPELINE_ARN": PIPELINE_ARN}
    assert function["loggingConfig"]["logGroup"] == "/aws/lambda/runner-fleet-main-bake"
    deployed = json.loads(
        graph.named("aws:iam/rolePolicy:RolePolicy", "main-image-bake-policy")["policy"]
    )
    expected = bake_trigger_policy(
        partition="aws",
        region=REGION,
        account_id=ACCOUNT,
        pipeline_name=IMAGE_NAME,
        log_group="/aws/lambda/runner-fleet-main-bake",
        dead_letter_queue="runner-fleet-main-bake-dead-letters",
    )
    assert deployed == expected
    # Lambda reports a failed asynchronous invocation with the function's role: to the bake
    # dead letters only, not the control plane's.
    queue = graph.named("aws:sqs/queue:Queue", "main-image-bake-dead-letters")
    bake_dead_letters = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue['name']}"
    assert decide([deployed], Request("sqs:SendMessage", bake_dead_letters)) == "Allow"
    others = bake_dead_letters.replace("-bake-dead-letters", "-dead-letters")
    assert decide([deployed], Request("sqs:SendMessage", others)) == "ImplicitDeny"
    # The ARN the policy names is the pipeline's.
    assert (
        decide([deployed], Request("imagebuilder:StartImagePipelineExecution", PIPELINE_ARN))
        == "Allow"
    )
    assert decide([deployed], Request("imagebuilder:GetImagePipeline", PIPELINE_ARN)) == "Allow"
    other = PIPELINE_ARN.replace(IMAGE_NAME, "another-fleet-image")
    assert decide([deployed], Request("imagebuilder:StartImagePipelineExecution", other)) == (
        "ImplicitDeny"
    )
    assert decide([deployed], Request("imagebuilder:CreateImage", "*")) == "ImplicitDeny"


def test_a_bake_starts_when_the_recipe_changes_after_the_bundle_and_parameter_exist(default_graph):
    graph = default_graph
    invocation = graph.one("aws:lambda/invocation:Invocation")
    recipe_arn = graph.one(PIPELINE)["imageRecipeArn"]
    assert invocation["functionName"] == "runner-fleet-main-bake"
    assert invocation["triggers"] == {"recipe": recipe_arn}
    assert json.loads(invocation["input"]) == {"reason": f"recipe {recipe_arn}"}
    dependencies = graph.registration(
        "aws:lambda/invocation:Invocation", "main-image-bake-on-change"
    ).dependencies
    for typ, name in [
        ("aws:s3/bucketObjectv2:BucketObjectv2", "main-bundle-playbooks"),
        (PARAMETER, "main-image-image-id"),
        ("aws:iam/rolePolicy:RolePolicy", "main-image-bake-policy"),
    ]:
        assert graph.registration(typ, name).urn in dependencies


def test_the_bake_function_code_starts_the_pipeline_named_in_its_environment(monkeypatch):
    started: list[dict] = []

    class ImageBuilder:
        def start_image_pipeline_execution(self, **kwargs):
            started.append(kwargs)
            return {"imageBuildVersionArn": f"{PIPELINE_ARN}/1.0.0/7"}

    fake_boto3 = types.ModuleType("boto3")
    fake_boto3.client = lambda service: {"imagebuilder": ImageBuilder()}[service]
    monkeypatch.setitem(sys.modules, "boto3", fake_boto3)
    monkeypatch.setenv("IMAGE_PIPELINE_ARN", PIPELINE_ARN)
    namespace: dict = {}
    exec(compile(BAKE_FUNCTION_CODE, "bake.py", "exec"), namespace)  # noqa: S102
    # Whatever the event says, only the fleet's own pipeline is started.
    answer = namespace["handler"]({"reason": "test", "imagePipelineArn": "arn:other"}, None)
    assert started == [{"imagePipelineArn": PIPELINE_ARN}]
    assert answer == {"imageBuildVersionArn": f"{PIPELINE_ARN}/1.0.0/7"}


def test_an_image_the_pipeline_bakes_needs_the_bake_playbook(build_graph, playbooks_dir, mocks):
    (playbooks_dir / "bake.yml").unlink()
    baked = {"amiId": "ami-0fedcba9876543210", "bakedImage": True}
    with pytest.raises(FileNotFoundError, match=r"playbooks/bake\.yml"):
        build_graph(baked)
    assert mocks.resources == []
    # A baked image without the pipeline never runs the bake.
    assert build_graph({**baked, "imagePipeline": False}).one(TEMPLATE)["imageId"] == (
        "ami-0fedcba9876543210"
    )
