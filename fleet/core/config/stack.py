"""The stack configuration: one pydantic model of every `runner-fleet:*` setting.

``parse_config`` is pure (a plain mapping in, a frozen ``FleetConfig`` out): every rule is
unit tested without Pulumi, and infra/config.py's ``read_config`` is only the reader over
``pulumi.Config``. Keys are the camelCase names under the project namespace
(`runner-fleet:maxSize`); each field's description is the key's documentation
(Pulumi.example.yaml and docs/deploy-aws.md say the same). Settings are typed JSON as Pulumi
hands them over, so the model is strict: "5" is not a number, 1 is not true.

The checks that span settings (sizes against each other, the network, the image, the names
AWS must accept) are in ``stack_checks``; the model runs them after the fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from fleet.core.config import fields, rules
from fleet.core.config.cron import DEFAULT_IMAGE_PIPELINE_SCHEDULE
from fleet.core.config.defaults import (
    DEFAULT_INSTANCE_TYPES,
    FLEET_TAG,
    NAMESPACE,
    SCALE_SET_MODE,
    SECRET_KEYS,
    WEBHOOK_SECRET_KEY,
)
from fleet.core.config.names import ResourceNames
from fleet.core.config.stack_checks import check, defaults, stack_problems, with_fix

Architecture = Literal["x86_64", "arm64"]
SpotAllocationStrategy = Literal[
    "price-capacity-optimized",
    "capacity-optimized",
    "capacity-optimized-prioritized",
    "lowest-price",
]
AmiFamily = Literal["debian-13", "ubuntu-24.04"]


def _camel(name: str) -> str:
    return to_camel(name).replace("Gib", "GiB")


class ConfigError(ValueError):
    """Stack configuration is invalid; lists every problem with its key and the fix."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{NAMESPACE}:{key}: {message}" for key, message in problems]
        super().__init__("invalid stack configuration:\n  " + "\n  ".join(lines))


class FleetConfig(BaseModel):
    """Validated settings of one fleet (no secrets: infra.config.GithubAppSecrets)."""

    model_config = ConfigDict(
        strict=True, frozen=True, extra="forbid", alias_generator=_camel, validate_by_name=False
    )

    fleet_name: fields.FleetName = Field(
        "main", description="short name of this fleet; prefixes resource names and SSM paths"
    )
    github_scope: fields.GitHubScope = Field(
        description="GitHub organisation ('my-org') or repository ('owner/repo') served"
    )
    runner_labels: fields.RunnerLabels = Field(
        ("self-hosted", "linux", "dind"),
        description="labels the runners register with; jobs select runners by them",
    )
    runner_group: fields.RunnerGroup = Field(
        "runner-fleet",
        description="runner group (organisation scope); 'Default' for repository scope",
    )
    runner_group_allows_public_repositories: bool = Field(
        False, description="let public repositories use the group (risky)"
    )
    github_mode: fields.GitHubMode = Field(
        "webhook",
        description="webhook, or scaleSet: a runner scale set named fleetName, no public webhook",
    )
    architecture: Architecture = Field(
        "x86_64", description="x86_64 or arm64; every instance type must match"
    )
    instance_types: tuple[fields.InstanceType, ...] = Field(
        DEFAULT_INSTANCE_TYPES["x86_64"],
        strict=False,
        description="instance types for the mixed instances policy, in priority order",
    )
    spot_percentage: int = Field(
        0, ge=0, le=100, description="share of capacity above the on-demand base that is Spot"
    )
    spot_allocation_strategy: SpotAllocationStrategy = Field(
        "price-capacity-optimized",
        description="how Spot capacity is chosen across the instance types",
    )
    on_demand_base_capacity: fields.GroupSize = Field(
        0, description="first N instances always on-demand"
    )
    min_size: fields.GroupSize = Field(0, description="smallest group size")
    max_size: fields.MaxGroupSize = Field(
        10, description="largest group size (hard cap on concurrent runners)"
    )
    warm_idle: fields.GroupSize = Field(
        0, description="idle, registered runners the scaler keeps ready"
    )
    warm_pool_size: fields.GroupSize = Field(
        0, description="stopped, pre-initialised instances (0 = no warm pool)"
    )
    warm_pool_state: fields.WarmPoolState = Field(
        "Stopped", description="state of warm-pool instances: Stopped or Running"
    )
    job_timeout_minutes: fields.JobTimeoutMinutes = Field(
        180, description="longest job the fleet must let finish"
    )
    max_runner_lifetime_minutes: fields.RunnerLifetimeMinutes = Field(
        360, description="reaper terminates runners older than this"
    )
    registration_timeout_minutes: fields.RegistrationTimeoutMinutes = Field(
        20, description="boot deadline: unregistered runners are replaced after it"
    )
    vpc_cidr: fields.VpcCidr | None = Field(
        None, description="CIDR of the VPC to create (omit when subnetIds is given)"
    )
    availability_zone_count: int = Field(
        2, ge=1, le=6, description="availability zones for the created VPC"
    )
    subnet_ids: tuple[fields.SubnetId, ...] = Field(
        (), strict=False, description="existing subnets to run in (omit to create a VPC)"
    )
    ssm_vpc_endpoints: bool = Field(
        False, description="create interface endpoints for SSM (and an S3 gateway endpoint)"
    )
    associate_public_ip: bool = Field(
        False, description="give runners public IPs (only with your own public subnets)"
    )
    ami_id: fields.AmiId | None = Field(
        None, description="image id; when omitted the newest image of amiFamily is used"
    )
    ami_family: AmiFamily = Field(
        "debian-13",
        description="debian-13 or ubuntu-24.04: the official image looked up by filter",
    )
    baked_image: bool = Field(
        False, description="the image already carries the bake part of the playbooks"
    )
    image_pipeline: bool = Field(
        True,
        description="bake images with EC2 Image Builder; runners launch from the newest bake",
    )
    image_pipeline_schedule: fields.ImageBuilderCron = Field(
        DEFAULT_IMAGE_PIPELINE_SCHEDULE,
        description="when the pipeline bakes again: Image Builder cron, six fields, UTC",
    )
    image_retention: fields.ImageRetention = Field(
        3, description="baked images kept per recipe version; older ones are deleted"
    )
    root_volume_gib: int = Field(30, ge=8, le=16384, description="encrypted gp3 root volume size")
    docker_volume_gib: int = Field(
        100, ge=20, le=16384, description="encrypted gp3 volume mounted at /var/lib/docker"
    )
    kms_key_arn: fields.KmsKeyArn | None = Field(
        None, description="existing customer-managed KMS key; omit to create one"
    )
    ebs_kms_key_arn: fields.KmsKeyArn | None = Field(
        None, description="KMS key for EBS volumes; omit to use the account's aws/ebs key"
    )
    ssm_parameter_prefix: fields.SsmPrefix = Field(
        "runner-fleet", description="first segment of every SSM parameter path"
    )
    tags: fields.Tags = Field(
        default_factory=dict,
        description="extra tags for every resource",
        json_schema_extra={"expected": "a map of strings to strings"},
    )
    runner_vars: fields.RunnerVars = Field(
        default_factory=dict,
        description="Ansible role variables for runner hosts, shipped in the playbook bundle",
        json_schema_extra={"expected": "a map of role variables"},
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults_that_follow_other_settings(cls, data: Any) -> Any:
        return defaults(data) if isinstance(data, Mapping) else data

    @model_validator(mode="after")
    def _settings_together(self) -> FleetConfig:
        problems = check(self)
        if problems:
            raise fields.refuse("", problems=problems)
        return self

    # -- derived: one place, so IAM, user data and the control plane agree ----------------------

    @property
    def scope_kind(self) -> str:
        """'org' or 'repo'."""
        return "repo" if "/" in self.github_scope else "org"

    @property
    def scale_set(self) -> bool:
        """githubMode scaleSet: a listener function and a runner scale set, no webhook."""
        return self.github_mode == SCALE_SET_MODE

    @property
    def creates_vpc(self) -> bool:
        return not self.subnet_ids

    @property
    def names(self) -> ResourceNames:
        """Every AWS resource name of the fleet (validated by parse_config)."""
        return ResourceNames.for_fleet(
            self.fleet_name,
            self.ssm_parameter_prefix,
            image_pipeline=self.image_pipeline,
            github_mode=self.github_mode,
            newest_agent_bakes=self.newest_agent_bakes,
        )

    @property
    def newest_agent_bakes(self) -> bool:
        """Bakes install the newest runner agent (runnerVars actions_runner_version latest) and
        the image pipeline is on: the outdated-agent alarm starts a bake."""
        return self.image_pipeline and fields.agent_tracks_latest(self.runner_vars)

    @property
    def parameter_root(self) -> str:
        """SSM path of this fleet, e.g. /runner-fleet/main."""
        return f"/{self.ssm_parameter_prefix}/{self.fleet_name}"

    @property
    def runner_parameter_path(self) -> str:
        return self.names.runner_parameter_path

    @property
    def jit_parameter_template(self) -> str:
        return self.names.jit_parameter_template

    @property
    def github_app_parameter_names(self) -> dict[str, str]:
        return self.names.github_app_parameters

    @property
    def image_parameter_name(self) -> str:
        return self.names.image_parameter

    @property
    def parameter_names(self) -> list[str]:
        return self.names.parameters

    @property
    def asg_name(self) -> str:
        # A fixed name (not autonamed) lets the instance policy and user data name the group
        # without a dependency cycle (role -> launch template -> group), and the control plane
        # exist before the group.
        return self.names.autoscaling_group

    @property
    def launch_hook_name(self) -> str:
        return self.names.launch_hook

    @property
    def terminate_hook_name(self) -> str:
        return self.names.terminate_hook

    @property
    def on_demand_percentage_above_base(self) -> int:
        return 100 - self.spot_percentage

    @property
    def asg_max_instance_lifetime_seconds(self) -> int:
        """Backstop for the reaper: the next whole day strictly beyond the runner lifetime.

        The reaper (control plane) enforces maxRunnerLifetimeMinutes and knows which runners
        are busy. AWS only accepts 0 or 1-365 days here, so the group's own limit is a
        coarser backstop that can never fire before the reaper would have.
        """
        days = math.floor(self.max_runner_lifetime_minutes * 60 / 86_400) + 1
        return min(
            rules.ASG_MAX_INSTANCE_LIFETIME_S,
            max(rules.ASG_MIN_INSTANCE_LIFETIME_S, days * 86_400),
        )

    @property
    def all_tags(self) -> dict[str, str]:
        return {**self.tags, FLEET_TAG: self.fleet_name, "managed-by": "pulumi"}


# What each key means (the model's descriptions); Pulumi.example.yaml documents the same keys.
KEYS: dict[str, str] = {
    str(field.alias): str(field.description) for field in FleetConfig.model_fields.values()
}


def parse_config(raw: Mapping[str, Any]) -> FleetConfig:
    """Turn plain stack settings (camelCase keys, JSON-decoded values) into a FleetConfig.

    Raises ConfigError naming every bad key, what is wrong and the `pulumi config` command
    that fixes it; no Pulumi call is made.
    """
    problems = [
        (key, "is a secret: it is read with require_secret, not as plain config")
        for key in raw
        if key in SECRET_KEYS
    ]
    settings = {key: value for key, value in raw.items() if key not in SECRET_KEYS}
    try:
        config = FleetConfig.model_validate(settings)
    except ValidationError as error:
        problems += stack_problems(error, FleetConfig)
        config = None
    if problems or config is None:
        raise ConfigError([(key, with_fix(key, message, FleetConfig)) for key, message in problems])
    return config


def required_secret_keys(github_mode: Any) -> tuple[str, ...]:
    """The stack secrets ``github_mode`` needs: the App's id and key, and in webhook mode the
    webhook secret (anything but scaleSet is treated as webhook here; the model words a bad
    mode)."""
    if github_mode == SCALE_SET_MODE:
        return tuple(key for key in SECRET_KEYS if key != WEBHOOK_SECRET_KEY)
    return SECRET_KEYS


def secret_problems(github_mode: Any, given: Mapping[str, bool]) -> list[tuple[str, str]]:
    """Problems with the stack's secrets: ``given`` maps each secret key that is set to
    whether it is stored encrypted. A required one missing or in plain text is refused, and so
    is the webhook secret in scaleSet mode: nothing would read it, and an unused secret left in
    the stack file hides which mode the stack is in (strict, like unknown keys)."""
    problems = []
    for key in required_secret_keys(github_mode):
        if key not in given:
            problems.append((key, f"is required: pulumi config set --secret {key} <value>"))
        elif not given[key]:
            problems.append(
                (
                    key,
                    f"is stored in plain text: run pulumi config set --secret "
                    f"{key} <value> so it is encrypted in the stack file",
                )
            )
    if github_mode == SCALE_SET_MODE and WEBHOOK_SECRET_KEY in given:
        problems.append(
            (
                WEBHOOK_SECRET_KEY,
                "is set, but githubMode scaleSet takes no webhooks and nothing reads it: "
                f"pulumi config rm {WEBHOOK_SECRET_KEY} (and leave the GitHub App's webhook "
                "inactive)",
            )
        )
    return problems
