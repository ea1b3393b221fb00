"""The stack settings taken together: defaults that follow other settings, the checks that
span settings, the names AWS must accept, and the `pulumi config` command that fixes each
problem. Used by ``stack.FleetConfig``; pure.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from fleet.core.config import rules
from fleet.core.config.defaults import DEFAULT_INSTANCE_TYPES, DEFAULT_VPC_CIDR
from fleet.core.config.names import name_problems
from fleet.core.config.problems import problems_of

if TYPE_CHECKING:
    from fleet.core.config.stack import FleetConfig

Problems = list[tuple[str, str]]


def defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """The raw settings with null as unset and the defaults that depend on other settings:
    the runner group (Default for a repository), the instance types (by architecture) and the
    VPC range (only when no subnets are given)."""
    raw = {key: value for key, value in data.items() if value is not None}
    scope = raw.get("githubScope")
    if "runnerGroup" not in raw and isinstance(scope, str) and "/" in scope:
        raw["runnerGroup"] = "Default"
    if "instanceTypes" not in raw:
        architecture = raw.get("architecture")
        arch = architecture if architecture in DEFAULT_INSTANCE_TYPES else "x86_64"
        raw["instanceTypes"] = DEFAULT_INSTANCE_TYPES[arch]
    if "vpcCidr" not in raw and not raw.get("subnetIds"):
        raw["vpcCidr"] = DEFAULT_VPC_CIDR
    return raw


def _sizes(cfg: FleetConfig) -> Problems:
    problems = []
    if cfg.min_size > cfg.max_size:
        problems.append(
            (
                "maxSize",
                f"maxSize ({cfg.max_size}) is below minSize ({cfg.min_size}); raise maxSize "
                "or lower minSize",
            )
        )
    if cfg.warm_idle > cfg.max_size:
        problems.append(
            (
                "warmIdle",
                f"warmIdle ({cfg.warm_idle}) exceeds maxSize ({cfg.max_size}); idle runners "
                "count against the cap: lower warmIdle or raise maxSize",
            )
        )
    if cfg.on_demand_base_capacity > cfg.max_size:
        problems.append(
            (
                "onDemandBaseCapacity",
                f"onDemandBaseCapacity ({cfg.on_demand_base_capacity}) exceeds maxSize "
                f"({cfg.max_size}); lower it",
            )
        )
    if cfg.warm_pool_size > cfg.max_size:
        problems.append(
            (
                "warmPoolSize",
                f"warmPoolSize ({cfg.warm_pool_size}) exceeds maxSize ({cfg.max_size})",
            )
        )
    return problems


def _warm_pool(cfg: FleetConfig) -> Problems:
    problems = []
    if cfg.warm_pool_size and cfg.image_pipeline:
        problems.append(
            (
                "warmPoolSize",
                "the image pipeline (imagePipeline, on by default) launches runners from an SSM "
                "parameter (resolve:ssm: in the launch template), and AWS Auto Scaling does not "
                "support warm pools with such a launch template: set warmPoolSize to 0, or turn "
                "the pipeline off for a warm pool (pulumi config set imagePipeline false)",
            )
        )
    if cfg.warm_pool_size and (cfg.spot_percentage or len(cfg.instance_types) != 1):
        problems.append(
            (
                "warmPoolSize",
                "AWS warm pools cannot be used with a mixed instances policy or Spot: set "
                "spotPercentage to 0 and a single instanceTypes entry, or set warmPoolSize to 0",
            )
        )
    return problems


def _lifetime(cfg: FleetConfig) -> Problems:
    job, registration = cfg.job_timeout_minutes, cfg.registration_timeout_minutes
    if cfg.max_runner_lifetime_minutes >= job + registration:
        return []
    return [
        (
            "maxRunnerLifetimeMinutes",
            f"maxRunnerLifetimeMinutes ({cfg.max_runner_lifetime_minutes}) must be at least "
            "jobTimeoutMinutes + registrationTimeoutMinutes "
            f"({job} + {registration} = {job + registration}), or the reaper would stop runners "
            "mid-job; raise maxRunnerLifetimeMinutes or lower jobTimeoutMinutes",
        )
    ]


def _scope_and_types(cfg: FleetConfig) -> Problems:
    problems = []
    if cfg.scope_kind == "repo" and cfg.runner_group != "Default":
        problems.append(
            (
                "runnerGroup",
                "runner groups exist only for organisations; with a repository scope leave "
                "runnerGroup unset (or 'Default')",
            )
        )
    if not cfg.instance_types:
        problems.append(
            ("instanceTypes", "is empty: list at least one instance type, e.g. [m7i.xlarge]")
        )
    if len(set(cfg.instance_types)) != len(cfg.instance_types):
        problems.append(("instanceTypes", "lists a type twice; remove the duplicate"))
    return problems


def _network(cfg: FleetConfig) -> Problems:
    given = cfg.model_fields_set
    problems = []
    if "subnet_ids" in given and not cfg.subnet_ids:
        problems.append(("subnetIds", "is empty: list your subnets, or remove it to create a VPC"))
    if len(set(cfg.subnet_ids)) != len(cfg.subnet_ids):
        problems.append(("subnetIds", "lists a subnet twice"))
    if cfg.subnet_ids and cfg.vpc_cidr is not None:
        problems.append(
            (
                "vpcCidr",
                "both vpcCidr and subnetIds are set: give subnetIds to use your network, or "
                "vpcCidr to create a VPC, not both",
            )
        )
    if cfg.subnet_ids and "availability_zone_count" in given:
        problems.append(
            (
                "availabilityZoneCount",
                "only applies to the VPC this program creates; your subnets decide the zones: "
                "remove it",
            )
        )
    if cfg.associate_public_ip and not cfg.subnet_ids:
        problems.append(
            (
                "associatePublicIp",
                "the VPC this program creates keeps runners in private subnets behind NAT: set "
                "it to false, or give public subnetIds",
            )
        )
    return problems


def _image(cfg: FleetConfig) -> Problems:
    problems = []
    if cfg.baked_image and cfg.ami_id is None:
        problems.append(
            (
                "bakedImage",
                "a baked image is your own image: set amiId to it, or set bakedImage to false "
                "to run the bake part at boot",
            )
        )
    if cfg.root_volume_gib == cfg.docker_volume_gib:
        problems.append(
            (
                "dockerVolumeGiB",
                f"dockerVolumeGiB equals rootVolumeGiB ({cfg.root_volume_gib}); the boot "
                "script finds the Docker volume by its size: make them differ",
            )
        )
    return problems


def _names(cfg: FleetConfig) -> Problems:
    """Every name derived from fleetName and ssmParameterPrefix must be one AWS accepts; the
    prefix is the part a user shortens, so it carries the problem (one per kind of name, the
    longest name first: it is the one to fix)."""
    reported: set[str] = set()
    problems = []
    found = name_problems(cfg.names)
    for rule, name, problem in sorted(found, key=lambda item: -len(item[1])):
        if rule in reported:
            continue
        reported.add(rule)
        max_length = rules.NAME_RULES[rule].max_length
        if len(name) > max_length:
            over = len(name) - max_length
            fix = (
                f"shorten ssmParameterPrefix (or fleetName) by at least {over} "
                f"character{'s' if over > 1 else ''}: pulumi config set ssmParameterPrefix "
                "<shorter>"
            )
        elif rule == "parameter" and "levels deep" in problem:
            fix = (
                "use fewer '/'-separated segments in ssmParameterPrefix (at most "
                f"{rules.SSM_PARAMETER_MAX_DEPTH - 4}: the fleet adds /<fleetName>/runners/"
                "<instance-id>/jitconfig)"
            )
        else:
            fix = "use only letters, digits, '-' and '_' in ssmParameterPrefix"
        problems.append(
            (
                "ssmParameterPrefix",
                f"with fleetName {cfg.fleet_name!r} and this prefix, {problem}: {fix}",
            )
        )
    return problems


def check(cfg: FleetConfig) -> Problems:
    """Every problem of settings taken together (the fields are each valid)."""
    return [
        *_scope_and_types(cfg),
        *_sizes(cfg),
        *_warm_pool(cfg),
        *_lifetime(cfg),
        *_network(cfg),
        *_image(cfg),
        *_names(cfg),
    ]


def stack_problems(error: ValidationError, model: type[BaseModel]) -> Problems:
    """The model's ValidationError in the stack's words."""
    keys = [str(field.alias) for field in model.model_fields.values()]

    def missing(key: str) -> str:
        if key == "githubScope":
            return (
                "is required: set it to an organisation ('my-org') or a repository ('owner/repo')"
            )
        return "is required"

    def unknown(key: str) -> str:
        close = difflib.get_close_matches(key, keys, n=1)
        return "unknown setting" + (
            f"; did you mean {close[0]}?" if close else "; see Pulumi.example.yaml"
        )

    return problems_of(error, model, missing=missing, unknown=unknown)


def with_fix(key: str, message: str, model: type[BaseModel]) -> str:
    """``message`` ending with the `pulumi config` command that fixes ``key`` (unless it
    already names one)."""
    if "pulumi config" in message:
        return message
    field = next((f for f in model.model_fields.values() if f.alias == key), None)
    if field is None:
        command = f"pulumi config rm {key}"
        if "is a secret" in message:
            command += f" && pulumi config set --secret {key} <value>"
    else:
        command = f"pulumi config set {_placeholder(key, field)}"
    return f"{message} (fix: {command})"


def _placeholder(key: str, field: Any) -> str:
    annotation = field.annotation
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return f"--path '{key}[0]' <value>"
    if origin is dict:
        return f"--path '{key}.<name>' <value>"
    if annotation is bool:
        return f"{key} true|false"
    choices = typing.get_args(annotation) if origin is typing.Literal else ()
    if choices:
        return f"{key} {'|'.join(choices)}"
    low = high = None
    for item in field.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    if low is not None and high is not None:
        return f"{key} <{low}-{high}>"
    return f"{key} <value>"
