"""RunnerFleet: network, key and secrets, bundle, IAM, launch template, group, control plane."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.agent_freshness import AgentFreshness
from infra.autoscaling import RunnerGroup, RunnerGroupArgs
from infra.bundle import BUNDLE_DIRS, PlaybookBundle, PlaybookBundleArgs
from infra.config import (
    FLEET_NAME,
    JIT_INSTANCE_TAG,
    SSM_BUCKET_TAG,
    ConfigError,
    FleetConfig,
    GithubAppSecrets,
)
from infra.control_plane import ControlPlane, ControlPlaneArgs
from infra.iam import RunnerInstanceRole, RunnerInstanceRoleArgs
from infra.image_pipeline import RunnerImagePipeline, RunnerImagePipelineArgs
from infra.launch_template import (
    RunnerLaunchTemplate,
    RunnerLaunchTemplateArgs,
    check_instance_types,
    resolve_image,
    user_data_settings,
)
from infra.network import FleetNetwork, FleetNetworkArgs
from infra.secrets import FleetSecrets, FleetSecretsArgs
from infra.validation import ValidationAccess, ValidationAccessArgs

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class RunnerFleetArgs:
    """Inputs of RunnerFleet: validated settings (`parse_config(FleetSettings(...))` or
    `read_config()`), the GitHub App as secret Outputs, and where the shipped files are."""

    config: FleetConfig
    github_app: GithubAppSecrets
    # Defaults: this project (playbooks/ and tests/canary/ are shipped), and <project>/build
    # for the zip (gitignored).
    project_root: Path | None = None
    build_dir: Path | None = None


def check_bundle_sources(project_root: Path, bakes: bool) -> None:
    """The boot script runs boot.yml (and bake.yml when instances or the image pipeline bake),
    and the bake installs the canary suite: what the bundle ships must exist."""
    needed = ["playbooks/bake.yml", "playbooks/boot.yml"] if bakes else ["playbooks/boot.yml"]
    missing = [name for name in needed if not (project_root / name).is_file()]
    missing += [f"{d}/" for d in BUNDLE_DIRS if not (project_root / d).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found in {project_root}: runner instances run the "
            "playbooks and install the canary suite from the bundle; run pulumi from the "
            "project root, or (another Pulumi program) install this project editable "
            "(pip install -e <checkout>) or pass RunnerFleetArgs(project_root=<checkout>)"
        )


def check_component_name(name: str) -> None:
    """The component's name prefixes every child's name, and autonamed AWS names come from
    those: S3 bucket names are lowercase and at most 63 characters, IAM role and EventBridge
    rule names at most 64 (with Pulumi's 8-character suffix). The fleet-name rule keeps all
    of them legal (tests/unit/infra/test_infra_names.py)."""
    if not FLEET_NAME.fullmatch(name):
        raise ValueError(
            f"RunnerFleet name {name!r}: use 2-24 characters, lowercase letters, digits and "
            "'-', starting with a letter (it prefixes autonamed S3 buckets, IAM roles and "
            "EventBridge rules, which AWS limits to lowercase and 63-64 characters); the "
            "fleetName is a good choice"
        )


def control_plane_args(
    cfg: FleetConfig,
    *,
    kms_key_arn: pulumi.Input[str],
    partition: str,
    region: str,
    account_id: str,
    build_dir: Path | None = None,
) -> ControlPlaneArgs:
    """What the control plane gets from the settings: names are the config's, and the group's
    is its fixed name (the control plane is built before the group and answers its first
    lifecycle hooks)."""
    return ControlPlaneArgs(
        fleet_name=cfg.fleet_name,
        github_scope=cfg.github_scope,
        runner_labels=cfg.runner_labels,
        runner_group=cfg.runner_group,
        allow_public_repositories=cfg.runner_group_allows_public_repositories,
        asg_name=cfg.asg_name,
        launch_hook_name=cfg.launch_hook_name,
        terminate_hook_name=cfg.terminate_hook_name,
        kms_key_arn=kms_key_arn,
        parameter_root=cfg.parameter_root,
        jit_parameter_template=cfg.jit_parameter_template,
        jit_instance_tag=JIT_INSTANCE_TAG,
        github_app_parameter_names=cfg.github_app_parameter_names,
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        warm_idle=cfg.warm_idle,
        job_timeout_minutes=cfg.job_timeout_minutes,
        max_runner_lifetime_minutes=cfg.max_runner_lifetime_minutes,
        registration_timeout_minutes=cfg.registration_timeout_minutes,
        github_mode=cfg.github_mode,
        listener_session_parameter=cfg.names.listener_session_parameter if cfg.scale_set else None,
        name_prefix=cfg.names.prefix,
        partition=partition,
        region=region,
        account_id=account_id,
        tags=cfg.all_tags,
        build_dir=build_dir,
    )


def check_webhook_secret(cfg: FleetConfig, github_app: GithubAppSecrets) -> None:
    """A webhook secret exactly in webhook mode (read_config ensures it for a stack; a program
    that builds ``GithubAppSecrets`` itself is told here)."""
    if cfg.scale_set and github_app.webhook_secret is not None:
        message = "githubMode scaleSet takes no webhooks: pass webhook_secret=None"
    elif not cfg.scale_set and github_app.webhook_secret is None:
        message = "githubMode webhook checks webhook signatures: pass the webhook secret"
    else:
        return
    raise ConfigError([("githubWebhookSecret", message)])


class RunnerFleet(pulumi.ComponentResource):
    """One fleet of one-job runners for one GitHub organisation or repository."""

    # Long on purpose: the top component wires every other one (network, IAM, key, bundle, launch
    # template, group, control plane) in dependency order.
    def __init__(
        self, name: str, args: RunnerFleetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        check_component_name(name)
        cfg = args.config
        project_root = args.project_root or PROJECT_ROOT
        build_dir = args.build_dir or project_root / "build"
        # Everything that can still reject the settings runs before the first resource.
        check_bundle_sources(project_root, bakes=not cfg.baked_image or cfg.image_pipeline)
        image = resolve_image(cfg)
        partition = aws.get_partition()
        account_id = aws.get_caller_identity().account_id
        region = aws.get_region().region
        check_instance_types(cfg, region)
        check_webhook_secret(cfg, args.github_app)
        zones: list[str] = []
        if cfg.creates_vpc:
            zones = list(aws.get_availability_zones(state="available").names)
            if len(zones) < cfg.availability_zone_count:
                raise ConfigError(
                    [
                        (
                            "availabilityZoneCount",
                            f"{region} has {len(zones)} available zones; "
                            f"set availabilityZoneCount to at most {len(zones)}",
                        )
                    ]
                )

        super().__init__("fleet:fleet:RunnerFleet", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = cfg.all_tags

        self.network = FleetNetwork(
            f"{name}-network",
            FleetNetworkArgs(config=cfg, region=region, availability_zones=zones, tags=tags),
            child,
        )
        self.secrets = FleetSecrets(
            f"{name}-secrets",
            FleetSecretsArgs(
                fleet_name=cfg.fleet_name,
                alias_name=cfg.names.kms_alias,
                partition=partition.partition,
                account_id=account_id,
                existing_kms_key_arn=cfg.kms_key_arn,
                parameter_names=cfg.github_app_parameter_names,
                github_app=args.github_app,
                tags=tags,
            ),
            child,
        )
        self.validation = ValidationAccess(
            f"{name}-validation",
            ValidationAccessArgs(
                fleet_name=cfg.fleet_name,
                partition=partition.partition,
                region=region,
                account_id=account_id,
                kms_key_arn=self.secrets.kms_key_arn,
                tags=tags,
            ),
            child,
        )
        self.bundle = PlaybookBundle(
            f"{name}-bundle",
            PlaybookBundleArgs(
                project_root=project_root,
                build_dir=build_dir,
                kms_key_arn=self.secrets.kms_key_arn,
                tags=tags,
                runner_vars=cfg.runner_vars,
            ),
            child,
        )
        self.instance_role = RunnerInstanceRole(
            f"{name}-instance",
            RunnerInstanceRoleArgs(
                partition=partition.partition,
                dns_suffix=partition.dns_suffix,
                region=region,
                account_id=account_id,
                parameter_root=cfg.parameter_root,
                kms_key_arn=self.secrets.kms_key_arn,
                bundle_bucket=self.bundle.bucket_name,
                bundle_key=self.bundle.key,
                asg_name=cfg.asg_name,
                fleet_name=cfg.fleet_name,
                tags=tags,
                warm_pool=cfg.warm_pool_size > 0,
            ),
            child,
        )
        # Baked images: Image Builder bakes on the stock image and writes each new image's id
        # to a parameter the launch template resolves at every launch.
        self.images: RunnerImagePipeline | None = None
        if cfg.image_pipeline:
            self.images = RunnerImagePipeline(
                f"{name}-image",
                RunnerImagePipelineArgs(
                    config=cfg,
                    stock_image=image,
                    user_data_settings=pulumi.Output.all(
                        self.bundle.bucket_name, self.bundle.key
                    ).apply(
                        lambda values: user_data_settings(
                            cfg, region=region, bundle_bucket=values[0], bundle_key=values[1]
                        )
                    ),
                    partition=partition.partition,
                    dns_suffix=partition.dns_suffix,
                    region=region,
                    account_id=account_id,
                    kms_key_arn=self.secrets.kms_key_arn,
                    bundle_bucket=self.bundle.bucket_name,
                    bundle_key=self.bundle.key,
                    bundle_object=self.bundle.object,
                    subnet_ids=self.network.subnet_ids,
                    security_group_id=self.network.security_group_id,
                    tags=tags,
                ),
                child,
            )
        # An agent too old for GitHub: alarmed, and (newest-agent bakes) a bake starts.
        self.agent_freshness = AgentFreshness(
            f"{name}-agent", config=cfg, images=self.images, tags=tags, opts=child
        )
        self.launch_template = RunnerLaunchTemplate(
            f"{name}-template",
            RunnerLaunchTemplateArgs(
                config=cfg,
                image=image,
                region=region,
                instance_profile_arn=self.instance_role.instance_profile_arn,
                security_group_id=self.network.security_group_id,
                bundle_bucket=self.bundle.bucket_name,
                bundle_key=self.bundle.key,
                tags=tags,
                launch_image_id=self.images.launch_image_id if self.images else None,
            ),
            child,
        )
        self.control_plane = ControlPlane(
            f"{name}-control-plane",
            control_plane_args(
                cfg,
                kms_key_arn=self.secrets.kms_key_arn,
                partition=partition.partition,
                region=region,
                account_id=account_id,
                build_dir=build_dir,
            ),
            child,
        )
        self.group = RunnerGroup(
            f"{name}-group",
            RunnerGroupArgs(
                config=cfg,
                launch_template_id=self.launch_template.id,
                launch_template_version=self.launch_template.latest_version,
                subnet_ids=self.network.subnet_ids,
                # Instances also carry the name of the SSM file-transfer bucket, which the
                # validation inventory hands to the aws_ssm connection.
                tags={**tags, SSM_BUCKET_TAG: self.validation.bucket_name},
                # Instances must find their playbooks and be allowed to read them, and the
                # control plane must answer the first launch hooks (minSize > 0, a warm pool);
                # on destroy the group (drained through its terminate hook) goes first.
                depends_on=[self.bundle.object, self.instance_role, self.control_plane],
            ),
            child,
        )
        self.image_id = image.id
        self.fleet_name = cfg.fleet_name
        self.region = region
        self.outputs = stack_outputs(self)
        self.register_outputs(self.outputs)


def stack_outputs(fleet: RunnerFleet) -> dict[str, pulumi.Input[object]]:
    """What the stack exports: identifiers and names only, never a secret value."""
    return {
        "vpcId": fleet.network.vpc_id,
        "subnetIds": fleet.network.subnet_ids,
        "securityGroupId": fleet.network.security_group_id,
        "kmsKeyArn": fleet.secrets.kms_key_arn,
        "githubAppParameterNames": fleet.secrets.parameter_names,
        "bundleBucket": fleet.bundle.bucket_name,
        "bundleKey": fleet.bundle.key,
        "instanceRoleArn": fleet.instance_role.role_arn,
        "imageId": fleet.image_id,
        # With the image pipeline: the parameter runners launch from, and the pipeline
        # (docs/deploy-aws.md: aws imagebuilder start-image-pipeline-execution).
        "imageParameter": fleet.images.image_parameter_name if fleet.images else None,
        "imagePipelineArn": fleet.images.pipeline_arn if fleet.images else None,
        "launchTemplateId": fleet.launch_template.id,
        "autoscalingGroupName": fleet.group.group_name,
        "autoscalingGroupArn": fleet.group.arn,
        "launchLifecycleHookName": fleet.group.launch_hook_name,
        "terminateLifecycleHookName": fleet.group.terminate_hook_name,
        "parameterRoot": fleet.control_plane.settings["parameter_root"],
        "jitParameterTemplate": fleet.control_plane.settings["jit_parameter_template"],
        "webhookUrl": fleet.control_plane.webhook_url_value,
        "deliveryQueueUrl": fleet.control_plane.queue_url,
        "deadLetterQueueUrl": fleet.control_plane.dead_letter_queue_url,
        "ledgerTable": fleet.control_plane.ledger_table,
        # Validation over Session Manager (README, "Validate your own runners"): the inventory
        # reads FLEET_NAME and AWS_REGION.
        "fleetName": fleet.fleet_name,
        "region": fleet.region,
        "ssmTransferBucket": fleet.validation.bucket_name,
        "inventoryFilters": fleet.validation.inventory_filters,
        "validationPolicyArn": fleet.validation.operator_policy_arn,
    }
