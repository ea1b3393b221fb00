"""RunnerFleet: network, key and secrets, bundle, IAM, launch template, group, control plane."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.autoscaling import RunnerGroup, RunnerGroupArgs
from infra.bundle import PlaybookBundle, PlaybookBundleArgs
from infra.config import JIT_INSTANCE_TAG, ConfigError, FleetConfig, GithubAppSecrets
from infra.control_plane import ControlPlane, ControlPlaneArgs
from infra.iam import RunnerInstanceRole, RunnerInstanceRoleArgs
from infra.launch_template import RunnerLaunchTemplate, RunnerLaunchTemplateArgs, resolve_image
from infra.network import FleetNetwork, FleetNetworkArgs
from infra.secrets import FleetSecrets, FleetSecretsArgs

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class RunnerFleetArgs:
    """Inputs of RunnerFleet: validated settings, secret Outputs and the playbooks to ship."""

    config: FleetConfig
    github_app: GithubAppSecrets
    # Defaults: <project>/playbooks, and <project>/build for the zip (gitignored).
    playbooks_dir: Path | None = None
    build_dir: Path | None = None


def check_playbooks(playbooks_dir: Path, baked_image: bool) -> None:
    """The boot script runs boot.yml (and bake.yml unless the image is baked): they must exist."""
    needed = ["boot.yml"] if baked_image else ["bake.yml", "boot.yml"]
    missing = [name for name in needed if not (playbooks_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found in {playbooks_dir}: runner instances run them at "
            "boot; run pulumi from the project root"
        )


class RunnerFleet(pulumi.ComponentResource):
    """One fleet of one-job runners for one GitHub organisation or repository."""

    def __init__(
        self, name: str, args: RunnerFleetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        cfg = args.config
        playbooks_dir = args.playbooks_dir or PROJECT_ROOT / "playbooks"
        build_dir = args.build_dir or PROJECT_ROOT / "build"
        # Everything that can still reject the settings runs before the first resource.
        check_playbooks(playbooks_dir, cfg.baked_image)
        image = resolve_image(cfg)
        partition = aws.get_partition()
        account_id = aws.get_caller_identity().account_id
        region = aws.get_region().region
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
                alias_name=f"alias/{cfg.asg_name}",
                partition=partition.partition,
                account_id=account_id,
                existing_kms_key_arn=cfg.kms_key_arn,
                parameter_names=cfg.github_app_parameter_names,
                github_app=args.github_app,
                tags=tags,
            ),
            child,
        )
        self.bundle = PlaybookBundle(
            f"{name}-bundle",
            PlaybookBundleArgs(
                source_dir=playbooks_dir,
                build_dir=build_dir,
                kms_key_arn=self.secrets.kms_key_arn,
                tags=tags,
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
            ),
            child,
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
                tags=tags,
                # Instances must find their playbooks and be allowed to read them.
                depends_on=[self.bundle.object, self.instance_role],
            ),
            child,
        )
        self.control_plane = ControlPlane(
            f"{name}-control-plane",
            ControlPlaneArgs(
                fleet_name=cfg.fleet_name,
                github_scope=cfg.github_scope,
                runner_labels=cfg.runner_labels,
                runner_group=cfg.runner_group,
                allow_public_repositories=cfg.runner_group_allows_public_repositories,
                asg_name=self.group.group_name,
                asg_arn=self.group.arn,
                launch_hook_name=self.group.launch_hook_name,
                terminate_hook_name=self.group.terminate_hook_name,
                kms_key_arn=self.secrets.kms_key_arn,
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
                name_prefix=cfg.asg_name,
                partition=partition.partition,
                region=region,
                account_id=account_id,
                tags=tags,
                build_dir=build_dir,
            ),
            child,
        )
        self.image_id = image.id
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
    }
