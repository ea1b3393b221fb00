"""Baked images that stay current: an EC2 Image Builder pipeline and the SSM parameter runners
launch from.

The life of an image:

* The pipeline's component writes the boot files an instance's user data writes (the boot
  script, fleet.env, the Ansible inventory; rendered by infra/user_data exactly as for the
  launch template) and runs `runner-bootstrap --bake-only`: the tools, the bundle from the
  fleet's bucket, bake.yml, the baked marker. The recipe puts that on the stock image the
  fleet would boot (Debian 13, Ubuntu 24.04 or amiId) with an encrypted gp3 root volume.
* The build instance runs in the fleet's subnets and security group, IMDSv2 only, with a role
  that reads the bundle, its own component and writes its build log: nothing else.
* The distribution writes the new image's id to `/imagebuilder/<prefix>/<fleet>/image-id`
  (data type aws:ec2:image; Image Builder's service-linked role may only write parameters
  under /imagebuilder/). The launch template's image is `resolve:ssm:<that parameter>`, so the
  next instance launches from the new image without a `pulumi up`.
* The parameter starts with the stock image's id (Pulumi ignores its value afterwards: Image
  Builder owns it): until the first bake ends, instances bake at boot as without a pipeline.
  An instance tells a baked image from a stock one by the marker the bake leaves.
* The pipeline bakes on its schedule (imagePipelineSchedule, weekly by default) and whenever
  the recipe changes: the component's and the recipe's versions are digests of what they hold
  (the bundle key, the boot script, the stock image), and a change starts a run through the
  bake function (an `aws.lambda_.Invocation` keyed on the recipe).

AWS limits respected here: a component document is at most 16,000 characters inline
(checked, `COMPONENT_DATA_MAX_CHARS`); semantic versions are three numbers of at most 2^30-1;
Image Builder's cron takes six fields (infra/config.py checks it); a launch template whose
image is an SSM parameter cannot serve a warm pool nor an instance refresh with skip matching
(infra/config.py and infra/autoscaling.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi
import pulumi_aws as aws
import yaml

from infra.config import BAKE_FUNCTION, FleetConfig
from infra.control_plane import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, LOG_RETENTION_DAYS
from infra.iam import (
    SSM_MANAGED_INSTANCE_CORE,
    bake_trigger_policy,
    image_build_instance_policy,
    instance_trust_policy,
    lambda_trust_policy,
)
from infra.launch_template import Image
from infra.user_data import UserDataSettings, cloud_config

# CreateComponent: `data` is 1-16,000 characters.
COMPONENT_DATA_MAX_CHARS = 16_000
# The boot files the bake reads, as the user data writes them (the rest of the user data's
# files are written again by every instance's cloud-init).
BAKE_FILES = (
    "/etc/runner-fleet/fleet.env",
    "/etc/runner-fleet/inventory.yml",
    "/usr/local/sbin/runner-bootstrap",
)
BAKE_COMMAND = "/usr/local/sbin/runner-bootstrap --bake-only"
# The bake installs packages, the toolchain and the agent: minutes, bounded here.
BAKE_TIMEOUT_S = 3600
_HEREDOC = "RUNNER_FLEET_FILE"
# Image Builder: each of the three numbers of a semantic version is at most 2^30 - 1.
_VERSION_NODE_MAX = 2**30 - 1
# The image parameter's data type: SSM checks the value is an AMI id.
IMAGE_DATA_TYPE = "aws:ec2:image"
# Always bake on schedule (the default condition bakes only when a semantic-version filter of
# the recipe finds something newer, which a recipe pinned to versions never does).
SCHEDULE_START_CONDITION = "EXPRESSION_MATCH_ONLY"

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


def bake_files(settings: UserDataSettings) -> list[dict[str, str]]:
    """The user data's write_files entries the bake needs, unchanged."""
    entries = {entry["path"]: entry for entry in cloud_config(settings)["write_files"]}
    return [entries[path] for path in BAKE_FILES]


def _write_file_command(entry: dict[str, str]) -> str:
    content, path = entry["content"], entry["path"]
    if not content.endswith("\n") or _HEREDOC in content.splitlines():
        raise ValueError(f"{path} cannot be written through a here-document as it is")
    if "{{" in content:
        # AWSTOE replaces {{ ... }} in a document's inputs with its variables.
        raise ValueError(f"{path} holds '{{{{', which Image Builder would substitute")
    owner, group = entry["owner"].split(":")
    return (
        f"install -d -m 0755 {path.rsplit('/', 1)[0]}\n"
        f"cat >{path} <<'{_HEREDOC}'\n{content}{_HEREDOC}\n"
        f"chown {owner}:{group} {path}\n"
        f"chmod {entry['permissions']} {path}\n"
    )


def component_document(settings: UserDataSettings, name: str) -> str:
    """The component's YAML: write the boot files, then bake. Raises ValueError if Image
    Builder would refuse its size."""
    script = "set -euo pipefail\numask 077\n" + "".join(
        _write_file_command(entry) for entry in bake_files(settings)
    )
    document = {
        "name": name,
        "description": "Runner image: the fleet's boot files, then runner-bootstrap --bake-only",
        "schemaVersion": 1.0,
        "phases": [
            {
                "name": "build",
                "steps": [
                    {
                        "name": "WriteBootFiles",
                        "action": "ExecuteBash",
                        "inputs": {"commands": [script]},
                    },
                    {
                        "name": "Bake",
                        "action": "ExecuteBash",
                        "timeoutSeconds": BAKE_TIMEOUT_S,
                        "inputs": {"commands": [BAKE_COMMAND]},
                    },
                ],
            }
        ],
    }
    text = yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, width=1000)
    if len(text) > COMPONENT_DATA_MAX_CHARS:
        raise ValueError(
            f"the image component is {len(text)} characters; Image Builder accepts "
            f"{COMPONENT_DATA_MAX_CHARS} inline"
        )
    return text


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks: the script stays the script."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str_representer)


def content_version(*parts: str) -> str:
    """A semantic version that is a digest of `parts`: Image Builder versions are immutable,
    so whatever changes what a component or recipe holds changes its version."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).digest()
    # 1.<a>.<b>: two 30-bit numbers of the digest.
    a = int.from_bytes(digest[:4], "big") & _VERSION_NODE_MAX
    b = int.from_bytes(digest[4:8], "big") & _VERSION_NODE_MAX
    return f"1.{a}.{b}"


class RunnerImagePipelineArgs:
    """Inputs of RunnerImagePipeline."""

    def __init__(
        self,
        *,
        config: FleetConfig,
        stock_image: Image,
        user_data_settings: pulumi.Input[UserDataSettings],
        partition: str,
        dns_suffix: str,
        region: str,
        account_id: str,
        kms_key_arn: pulumi.Input[str],
        bundle_bucket: pulumi.Input[str],
        bundle_key: str,
        bundle_object: pulumi.Resource,
        subnet_ids: pulumi.Input[list[str]],
        security_group_id: pulumi.Input[str],
        tags: dict[str, str],
    ) -> None:
        self.config = config
        self.stock_image = stock_image
        self.user_data_settings = user_data_settings
        self.partition = partition
        self.dns_suffix = dns_suffix
        self.region = region
        self.account_id = account_id
        self.kms_key_arn = kms_key_arn
        self.bundle_bucket = bundle_bucket
        self.bundle_key = bundle_key
        self.bundle_object = bundle_object
        self.subnet_ids = subnet_ids
        self.security_group_id = security_group_id
        self.tags = tags


class RunnerImagePipeline(pulumi.ComponentResource):
    """Component, recipe, build infrastructure, distribution, pipeline, image parameter, and
    the function that starts a bake when the recipe changes."""

    def __init__(
        self, name: str, args: RunnerImagePipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:image_pipeline:RunnerImagePipeline", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        names = cfg.names
        image_name = names.image_builder
        tags = args.tags

        # -- the build instance: minimal role, IMDSv2, the fleet's network -----------------
        self.build_log_group = aws.cloudwatch.LogGroup(
            f"{name}-build-logs",
            name=names.image_build_log_group,
            retention_in_days=LOG_RETENTION_DAYS,
            tags=tags,
            opts=child,
        )
        build_role = aws.iam.Role(
            f"{name}-build-role",
            description=f"runner fleet {cfg.fleet_name}: Image Builder build instance",
            assume_role_policy=json.dumps(instance_trust_policy(args.dns_suffix)),
            tags=tags,
            opts=child,
        )
        ssm_core = aws.iam.RolePolicyAttachment(
            f"{name}-build-ssm-core",
            role=build_role.name,
            policy_arn=f"arn:{args.partition}:iam::aws:policy/{SSM_MANAGED_INSTANCE_CORE}",
            opts=child,
        )

        def render_build_policy(values: list[str]) -> str:
            kms_key_arn, bucket = values
            return json.dumps(
                image_build_instance_policy(
                    partition=args.partition,
                    region=args.region,
                    account_id=args.account_id,
                    parameter_root=cfg.parameter_root,
                    kms_key_arn=kms_key_arn,
                    bundle_bucket=bucket,
                    bundle_key=args.bundle_key,
                    component_name=image_name,
                    log_group=names.image_build_log_group,
                )
            )

        self.build_policy_document = pulumi.Output.all(args.kms_key_arn, args.bundle_bucket).apply(
            render_build_policy
        )
        build_policy = aws.iam.RolePolicy(
            f"{name}-build-policy",
            role=build_role.id,
            policy=self.build_policy_document,
            opts=child,
        )
        build_profile = aws.iam.InstanceProfile(
            f"{name}-build-profile", role=build_role.name, tags=tags, opts=child
        )
        self.infrastructure = aws.imagebuilder.InfrastructureConfiguration(
            f"{name}-infrastructure",
            name=image_name,
            description=f"runner fleet {cfg.fleet_name}: where images are baked",
            instance_profile_name=build_profile.name,
            instance_types=list(cfg.instance_types),
            subnet_id=pulumi.Output.from_input(args.subnet_ids).apply(lambda ids: ids[0]),
            security_group_ids=[args.security_group_id],
            instance_metadata_options=aws.imagebuilder.InfrastructureConfigurationInstanceMetadataOptionsArgs(
                http_tokens="required", http_put_response_hop_limit=1
            ),
            terminate_instance_on_failure=True,
            resource_tags=tags,
            tags=tags,
            # The role must be able to act before a build can start.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ssm_core, build_policy]),
        )

        # -- what is baked: the component and the recipe -----------------------------------
        self.component_data = pulumi.Output.from_input(args.user_data_settings).apply(
            lambda settings: component_document(settings, image_name)
        )
        self.component = aws.imagebuilder.Component(
            f"{name}-component",
            name=image_name,
            description="the fleet's boot files, then runner-bootstrap --bake-only",
            platform="Linux",
            version=self.component_data.apply(content_version),
            data=self.component_data,
            tags=tags,
            opts=child,
        )
        root = aws.imagebuilder.ImageRecipeBlockDeviceMappingArgs(
            device_name=args.stock_image.root_device_name,
            ebs=aws.imagebuilder.ImageRecipeBlockDeviceMappingEbsArgs(
                volume_type="gp3",
                volume_size=cfg.root_volume_gib,
                encrypted=True,
                kms_key_id=cfg.ebs_kms_key_arn,
                delete_on_termination=True,
            ),
        )
        recipe_inputs = [
            args.stock_image.id,
            args.stock_image.root_device_name,
            str(cfg.root_volume_gib),
            cfg.ebs_kms_key_arn or "aws/ebs",
        ]
        self.recipe = aws.imagebuilder.ImageRecipe(
            f"{name}-recipe",
            name=image_name,
            description=f"runner fleet {cfg.fleet_name}: the bake on {args.stock_image.id}",
            parent_image=args.stock_image.id,
            version=self.component_data.apply(lambda data: content_version(data, *recipe_inputs)),
            components=[
                aws.imagebuilder.ImageRecipeComponentArgs(component_arn=self.component.arn)
            ],
            block_device_mappings=[root],
            # Session Manager reaches runners (validation); keep the agent Image Builder uses.
            systems_manager_agent=aws.imagebuilder.ImageRecipeSystemsManagerAgentArgs(
                uninstall_after_build=False
            ),
            tags=tags,
            opts=child,
        )

        # -- where it goes: the image parameter runners launch from ------------------------
        self.image_parameter = aws.ssm.Parameter(
            f"{name}-image-id",
            name=cfg.image_parameter_name,
            description=(
                f"runner fleet {cfg.fleet_name}: the image runners launch from; the stock "
                "image until Image Builder's first bake, then the newest bake"
            ),
            type="String",
            data_type=IMAGE_DATA_TYPE,
            insecure_value=args.stock_image.id,
            tags=tags,
            # Image Builder owns the value after the first bake.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["insecureValue"]),
        )
        self.distribution = aws.imagebuilder.DistributionConfiguration(
            f"{name}-distribution",
            name=image_name,
            description=f"runner fleet {cfg.fleet_name}: the new image's id to its parameter",
            distributions=[
                aws.imagebuilder.DistributionConfigurationDistributionArgs(
                    region=args.region,
                    ami_distribution_configuration=aws.imagebuilder.DistributionConfigurationDistributionAmiDistributionConfigurationArgs(
                        name=f"{image_name}-{{{{ imagebuilder:buildDate }}}}",
                        description=f"runner fleet {cfg.fleet_name}: baked runner image",
                        ami_tags=tags,
                        kms_key_id=cfg.ebs_kms_key_arn,
                    ),
                    ssm_parameter_configurations=[
                        aws.imagebuilder.DistributionConfigurationDistributionSsmParameterConfigurationArgs(
                            parameter_name=self.image_parameter.name,
                            data_type=IMAGE_DATA_TYPE,
                        )
                    ],
                )
            ],
            tags=tags,
            opts=child,
        )

        # -- when: the schedule, and every change of the recipe ----------------------------
        self.pipeline = aws.imagebuilder.ImagePipeline(
            f"{name}-pipeline",
            name=image_name,
            description=f"runner fleet {cfg.fleet_name}: bakes the runner image",
            image_recipe_arn=self.recipe.arn,
            infrastructure_configuration_arn=self.infrastructure.arn,
            distribution_configuration_arn=self.distribution.arn,
            schedule=aws.imagebuilder.ImagePipelineScheduleArgs(
                schedule_expression=cfg.image_pipeline_schedule,
                pipeline_execution_start_condition=SCHEDULE_START_CONDITION,
            ),
            status="ENABLED",
            # The bake runs the playbooks; runners are validated as runners (README).
            image_tests_configuration=aws.imagebuilder.ImagePipelineImageTestsConfigurationArgs(
                image_tests_enabled=False
            ),
            enhanced_image_metadata_enabled=False,
            tags=tags,
            opts=child,
        )
        self.bake = BakeFunction(
            f"{name}-bake",
            config=cfg,
            pipeline=self.pipeline,
            partition=args.partition,
            dns_suffix=args.dns_suffix,
            region=args.region,
            account_id=args.account_id,
            tags=tags,
            opts=child,
        )
        # Bake now: on the first `pulumi up`, and whenever the recipe (the bundle, the boot
        # script, the stock image) changes. The bundle and the parameter exist before.
        self.bake_on_change = aws.lambda_.Invocation(
            f"{name}-bake-on-change",
            function_name=self.bake.function.name,
            input=self.recipe.arn.apply(
                lambda arn: json.dumps({"reason": f"recipe {arn}"}, sort_keys=True)
            ),
            triggers={"recipe": self.recipe.arn},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[args.bundle_object, self.image_parameter, self.bake.policy],
            ),
        )
        self.image_parameter_name = self.image_parameter.name
        self.launch_image_id = self.image_parameter.name.apply(lambda n: f"resolve:ssm:{n}")
        self.pipeline_arn = self.pipeline.arn
        self.register_outputs(
            {
                "image_parameter_name": self.image_parameter_name,
                "pipeline_arn": self.pipeline_arn,
            }
        )


class BakeFunction(pulumi.ComponentResource):
    """A function that starts one run of the fleet's pipeline (and may do nothing else)."""

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
