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
* Old images do not pile up: a lifecycle policy keeps the newest imageRetention images of the
  recipe (per recipe version) and deletes older ones with their AMIs and snapshots, never the
  one the parameter names (infra/image_retention.py).

AWS limits respected here: a component document is at most 16,000 characters inline
(checked, `COMPONENT_DATA_MAX_CHARS`); semantic versions are three numbers of at most 2^30-1;
Image Builder's cron takes six fields (infra/config.py checks it); a launch template whose
image is an SSM parameter cannot serve a warm pool nor an instance refresh with skip matching
(infra/config.py and infra/autoscaling.py).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.bake_function import BakeFunction
from infra.config import FleetConfig
from infra.functions import LOG_RETENTION_DAYS
from infra.iam import SSM_MANAGED_INSTANCE_CORE, instance_trust_policy
from infra.iam_images import image_build_instance_policy
from infra.image_component import component_document, content_version
from infra.image_retention import image_lifecycle_policy
from infra.launch_template import Image
from infra.user_data import UserDataSettings

# The image parameter's data type: SSM checks the value is an AMI id.
IMAGE_DATA_TYPE = "aws:ec2:image"
# Always bake on schedule (the default condition bakes only when a semantic-version filter of
# the recipe finds something newer, which a recipe pinned to versions never does).
SCHEDULE_START_CONDITION = "EXPRESSION_MATCH_ONLY"


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
    """Component, recipe, build infrastructure, distribution, pipeline, image parameter, the
    function that starts a bake when the recipe changes, and the lifecycle policy."""

    def __init__(
        self, name: str, args: RunnerImagePipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:image_pipeline:RunnerImagePipeline", name, None, opts)
        self._build_infrastructure(name, args)
        self._recipe(name, args)
        self._distribution(name, args)
        self._pipeline(name, args)
        self.lifecycle_policy = image_lifecycle_policy(
            name,
            config=args.config,
            recipe=self.recipe,
            partition=args.partition,
            dns_suffix=args.dns_suffix,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
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

    def _scope(
        self, args: RunnerImagePipelineArgs
    ) -> tuple[pulumi.ResourceOptions, FleetConfig, str, dict[str, str]]:
        """What every part declares with: children of this component, the settings, the
        Image Builder name, the tags."""
        return (
            pulumi.ResourceOptions(parent=self),
            args.config,
            args.config.names.image_builder,
            args.tags,
        )

    # Long on purpose: a component's resources declared in dependency order, as Pulumi's
    # examples do.
    def _build_infrastructure(self, name: str, args: RunnerImagePipelineArgs) -> None:
        child, cfg, image_name, tags = self._scope(args)
        names = cfg.names

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

    def _recipe(self, name: str, args: RunnerImagePipelineArgs) -> None:
        child, cfg, image_name, tags = self._scope(args)

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

    def _distribution(self, name: str, args: RunnerImagePipelineArgs) -> None:
        child, cfg, image_name, tags = self._scope(args)

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

    def _pipeline(self, name: str, args: RunnerImagePipelineArgs) -> None:
        child, cfg, image_name, tags = self._scope(args)

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
