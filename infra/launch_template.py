"""The runner launch template: image, IMDSv2, encrypted volumes, no public IP, user data.

IMDS: tokens required and a hop limit of 1, so a container on the Docker bridge (one hop
further) cannot get a token and therefore no instance credentials. Instance tags are not
exposed in IMDS: the boot script reads nothing from tags.

Volumes: an encrypted gp3 root and a separate encrypted gp3 Docker volume (mounted at
/var/lib/docker by the boot script), both deleted with the instance. Without `ebsKmsKeyArn`
they use the account's aws/ebs key, which needs no key-policy grant for the Auto Scaling
service-linked role; with it, that key's policy must allow the role
AWSServiceRoleForAutoScaling to use it.
"""

from __future__ import annotations

import base64
import dataclasses

import pulumi
import pulumi_aws as aws

from infra.config import AMI_FILTERS, ConfigError, FleetConfig
from infra.user_data import DOCKER_DEVICE, UserDataSettings, render_user_data


@dataclasses.dataclass(frozen=True)
class Image:
    """The image runners boot from."""

    id: str
    root_device_name: str
    architecture: str


def ami_filters(cfg: FleetConfig) -> tuple[str, list[dict[str, list[str]]]]:
    """Owner and filters of the official image for the configured family and architecture."""
    owner, pattern = AMI_FILTERS[cfg.ami_family]
    arch = "arm64" if cfg.architecture == "arm64" else "amd64"
    return owner, [
        {"name": "name", "values": [pattern.format(arch=arch)]},
        {"name": "architecture", "values": [cfg.architecture]},
        {"name": "root-device-type", "values": ["ebs"]},
        {"name": "virtualization-type", "values": ["hvm"]},
    ]


def resolve_image(cfg: FleetConfig) -> Image:
    """Look the image up (by id, or the newest official one) and check its architecture."""
    if cfg.ami_id:
        found = aws.ec2.get_ami(filters=[{"name": "image-id", "values": [cfg.ami_id]}])
    else:
        owner, filters = ami_filters(cfg)
        found = aws.ec2.get_ami(owners=[owner], most_recent=True, filters=filters)
    if found.architecture != cfg.architecture:
        raise ConfigError(
            [
                (
                    "amiId",
                    f"image {found.id} is {found.architecture} but architecture is "
                    f"{cfg.architecture}; use a matching image or change architecture",
                )
            ]
        )
    return Image(
        id=found.id, root_device_name=found.root_device_name, architecture=found.architecture
    )


def check_instance_types(cfg: FleetConfig, region: str) -> None:
    """Ask EC2 (at preview) about every instance type: it exists in the region, runs the
    configured architecture, and is sold the way the group buys it. No family list to keep:
    a family newer than this program is accepted as soon as EC2 knows it."""
    needs_on_demand = cfg.spot_percentage < 100 or cfg.on_demand_base_capacity > 0
    problems: list[tuple[str, str]] = []
    for instance_type in cfg.instance_types:
        try:
            found = aws.ec2.get_instance_type(instance_type=instance_type)
        except Exception as error:  # the provider's answer when EC2 knows no such type
            problems.append(
                (
                    "instanceTypes",
                    f"EC2 knows no instance type {instance_type!r} in {region} ({error}); check "
                    f"the name (aws ec2 describe-instance-types --region {region}) and set the "
                    "list again: pulumi config set --path 'instanceTypes[0]' <type>",
                )
            )
            continue
        architectures = list(found.supported_architectures or [])
        if cfg.architecture not in architectures:
            problems.append(
                (
                    "instanceTypes",
                    f"{instance_type!r} runs {'/'.join(architectures)}, not {cfg.architecture}; "
                    f"pick {cfg.architecture} types or change the architecture: pulumi config "
                    f"set architecture {architectures[-1] if architectures else '<arch>'}",
                )
            )
        usages = list(found.supported_usages_classes or [])
        if needs_on_demand and "on-demand" not in usages:
            problems.append(
                ("instanceTypes", f"{instance_type!r} is not sold on demand in {region}")
            )
        if cfg.spot_percentage and "spot" not in usages:
            problems.append(
                (
                    "instanceTypes",
                    f"{instance_type!r} is not offered as Spot capacity in {region}, and "
                    f"spotPercentage is {cfg.spot_percentage}: remove the type or run "
                    "pulumi config set spotPercentage 0",
                )
            )
    if problems:
        raise ConfigError(problems)


def user_data_settings(
    cfg: FleetConfig, *, region: str, bundle_bucket: str, bundle_key: str
) -> UserDataSettings:
    """What every instance is told, and what the image pipeline's bake is told."""
    return UserDataSettings(
        fleet_name=cfg.fleet_name,
        region=region,
        asg_name=cfg.asg_name,
        launch_hook_name=cfg.launch_hook_name,
        parameter_root=cfg.parameter_root,
        bundle_bucket=bundle_bucket,
        bundle_key=bundle_key,
        baked_image=cfg.baked_image,
        docker_volume_gib=cfg.docker_volume_gib,
        jit_wait_seconds=cfg.registration_timeout_minutes * 60,
    )


def encode_user_data(text: str) -> str:
    """User data as the launch template wants it (base64)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class RunnerLaunchTemplateArgs:
    """Inputs of RunnerLaunchTemplate."""

    def __init__(
        self,
        *,
        config: FleetConfig,
        image: Image,
        region: str,
        instance_profile_arn: pulumi.Input[str],
        security_group_id: pulumi.Input[str],
        bundle_bucket: pulumi.Input[str],
        bundle_key: pulumi.Input[str],
        tags: dict[str, str],
        launch_image_id: pulumi.Input[str] | None = None,
    ) -> None:
        self.config = config
        self.image = image
        # What the template launches: `resolve:ssm:<parameter>` with the image pipeline,
        # else the image's id.
        self.launch_image_id = launch_image_id if launch_image_id is not None else image.id
        self.region = region
        self.instance_profile_arn = instance_profile_arn
        self.security_group_id = security_group_id
        self.bundle_bucket = bundle_bucket
        self.bundle_key = bundle_key
        self.tags = tags


class RunnerLaunchTemplate(pulumi.ComponentResource):
    """Launch template shared by every runner instance of the fleet."""

    # Long on purpose: a component's resources declared in dependency order in its constructor, as
    # Pulumi's examples do.
    def __init__(
        self, name: str, args: RunnerLaunchTemplateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:launch_template:RunnerLaunchTemplate", name, None, opts)
        cfg = args.config

        self.user_data = pulumi.Output.all(args.bundle_bucket, args.bundle_key).apply(
            lambda values: render_user_data(
                user_data_settings(
                    cfg, region=args.region, bundle_bucket=values[0], bundle_key=values[1]
                )
            )
        )

        def volume(device: str, size: int) -> aws.ec2.LaunchTemplateBlockDeviceMappingArgs:
            return aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=device,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_type="gp3",
                    volume_size=size,
                    encrypted=True,
                    kms_key_id=cfg.ebs_kms_key_arn,
                    delete_on_termination=True,
                ),
            )

        volume_tags = {**args.tags, "Name": f"{name}-runner"}
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            description=f"runner fleet {cfg.fleet_name}",
            image_id=args.launch_image_id,
            # Only a warm pool needs the type here; mixed instances policies override it.
            instance_type=cfg.instance_types[0] if cfg.warm_pool_size else None,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(
                arn=args.instance_profile_arn
            ),
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    device_index=0,
                    associate_public_ip_address="true" if cfg.associate_public_ip else "false",
                    delete_on_termination="true",
                    security_groups=[args.security_group_id],
                )
            ],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=1,
                http_protocol_ipv6="disabled",
                instance_metadata_tags="disabled",
            ),
            block_device_mappings=[
                volume(args.image.root_device_name, cfg.root_volume_gib),
                volume(DOCKER_DEVICE, cfg.docker_volume_gib),
            ],
            # A power-off is a termination: the last-resort exit of a finished runner.
            instance_initiated_shutdown_behavior="terminate",
            user_data=self.user_data.apply(encode_user_data),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=volume_tags)
                for kind in ("volume", "network-interface")
            ],
            update_default_version=True,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.id = self.launch_template.id
        self.latest_version = self.launch_template.latest_version
        self.register_outputs({"id": self.id, "latest_version": self.latest_version})
