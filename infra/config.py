"""Stack configuration: one typed, validated object, built before any resource is declared.

`parse_config` is pure (a plain mapping in, a frozen `FleetConfig` out) so every rule is unit
tested without Pulumi. `read_config` is the thin reader over `pulumi.Config`; the GitHub App
secrets never enter the mapping: they come through `Config.require_secret` and stay Outputs.

Keys are the camelCase names under the project namespace (`runner-fleet:maxSize`).
Every key is documented, with its default, in Pulumi.example.yaml.

Size: over 400 lines on purpose. It is the one place every stack setting is declared, read,
checked and explained when wrong (about 60 settings); split by setting, a reader would chase
one key across modules, and split by step (model, reader, checks), every new setting would
touch three files.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

NAMESPACE = "runner-fleet"

# Tag on every resource; the instance policy's terminate statement is conditioned on it.
FLEET_TAG = "runner-fleet"
# Tag the control plane puts on each JIT parameter (value: the instance's ARN). The instance
# policy only lets a caller whose ec2:SourceInstanceARN equals this tag read or delete it.
JIT_INSTANCE_TAG = "runner-fleet-instance-arn"
# Tag on each instance naming the SSM file-transfer bucket of its fleet; the validation
# inventory (playbooks/inventories/aws_ec2.yml) reads it for the aws_ssm connection.
SSM_BUCKET_TAG = "runner-fleet-ssm-bucket"

SECRET_KEYS = ("githubAppId", "githubAppPrivateKey", "githubWebhookSecret")

ARCHITECTURES = ("x86_64", "arm64")
SPOT_ALLOCATION_STRATEGIES = (
    "price-capacity-optimized",
    "capacity-optimized",
    "capacity-optimized-prioritized",
    "lowest-price",
)
WARM_POOL_STATES = ("Stopped", "Running")
# The role variable the boot part gets per instance; never a stack setting.
RUNNER_VARS_REFUSED = ("actions_runner_jitconfig",)
RUNNER_VARS_MAX_BYTES = 256 * 1024
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
AMI_FAMILIES = ("debian-13", "ubuntu-24.04")

# Official image owners and name patterns; {arch} is amd64 or arm64.
AMI_FILTERS: dict[str, tuple[str, str]] = {
    "debian-13": ("136693071363", "debian-13-{arch}-*"),
    "ubuntu-24.04": (
        "099720109477",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*",
    ),
}

DEFAULT_INSTANCE_TYPES = {
    "x86_64": ("m7i.xlarge", "m6i.xlarge", "m6a.xlarge"),
    "arm64": ("m7g.xlarge", "m6g.xlarge", "m8g.xlarge"),
}

# Networks Docker creates on runners (docker0 and the docker_host role's default address pool).
DOCKER_ADDRESS_POOLS = ("172.17.0.0/16", "10.210.0.0/16")

# When the image pipeline bakes by default: Sundays 04:00 UTC. Image Builder's cron takes six
# fields (minute hour day-of-month month day-of-week year) inside cron(...).
DEFAULT_IMAGE_PIPELINE_SCHEDULE = "cron(0 4 ? * sun *)"

# AWS bounds for an Auto Scaling group's max_instance_lifetime (when set): 1 day to 365 days.
ASG_MIN_INSTANCE_LIFETIME_S = 86_400
ASG_MAX_INSTANCE_LIFETIME_S = 31_536_000

# -- Names AWS accepts ------------------------------------------------------------------------
#
# Every name the program gives an AWS resource is derived from the settings here, in
# `ResourceNames`, and checked as a whole against these rules before any resource is declared
# (the control plane and the fleet take their names from the same class).

# The control plane functions (fleet/handlers/<name>.py), one Lambda function each.
CONTROL_PLANE_FUNCTIONS = ("webhook", "scaler", "lifecycle", "reaper")
# The image pipeline's function (infra/image_pipeline.py): starts a bake.
BAKE_FUNCTION = "bake"
# Name suffixes of the control plane's alarms (infra/control_plane.py).
ALARM_SUFFIXES = ("dead-letters-not-empty", "jobs-queued-too-long", "boot-failures")
# The longest instance id EC2 hands out (i- and 17 hex digits), for the JIT parameter's name.
LONGEST_INSTANCE_ID = "i-" + "f" * 17
# The longest parameter ARN prefix (partition aws-us-gov, the longest region names), which
# counts against SSM's 1011-character limit.
LONGEST_PARAMETER_ARN_PREFIX = "arn:aws-us-gov:ssm:ap-southeast-7:123456789012:parameter"
SSM_PARAMETER_MAX_ARN_LENGTH = 1011
SSM_PARAMETER_MAX_DEPTH = 15
# A Lambda function's environment variables, keys and values, in all.
LAMBDA_ENVIRONMENT_MAX_BYTES = 4096
# What runnerLabels may take of that: the rest (names, ARNs, URLs, numbers) stays below
# 2 KB for any accepted config (tests/unit/infra/test_infra_names.py proves it).
RUNNER_LABELS_MAX_CHARACTERS = 2048


@dataclasses.dataclass(frozen=True)
class NameRule:
    """What AWS accepts for one kind of name (API reference: length and pattern)."""

    what: str
    max_length: int
    pattern: re.Pattern[str]
    allowed: str
    min_length: int = 1

    def problem(self, name: str) -> str | None:
        """Why AWS would refuse `name`, or None."""
        if not self.min_length <= len(name) <= self.max_length:
            return (
                f"the {self.what} {name!r} is {len(name)} characters; AWS allows "
                f"{self.min_length}-{self.max_length}"
            )
        if not self.pattern.fullmatch(name):
            return f"the {self.what} {name!r} has characters AWS refuses; it allows {self.allowed}"
        return None


NAME_RULES: dict[str, NameRule] = {
    "autoscaling_group": NameRule(
        "Auto Scaling group name", 255, re.compile(r"[^\x00-\x1f\x7f]+"), "printable characters"
    ),
    "lifecycle_hook": NameRule(
        "lifecycle hook name", 255, re.compile(r"[A-Za-z0-9_/-]+"), "letters, digits, - _ /"
    ),
    "function": NameRule(
        "Lambda function name", 64, re.compile(r"[A-Za-z0-9_-]+"), "letters, digits, - _"
    ),
    "log_group": NameRule(
        "CloudWatch log group name",
        512,
        re.compile(r"[A-Za-z0-9_./#-]+"),
        "letters, digits, - _ . / #",
    ),
    "queue": NameRule("SQS queue name", 80, re.compile(r"[A-Za-z0-9_-]+"), "letters, digits, - _"),
    "table": NameRule(
        "DynamoDB table name", 255, re.compile(r"[A-Za-z0-9_.-]+"), "letters, digits, - _ .", 3
    ),
    "alarm": NameRule(
        "CloudWatch alarm name", 255, re.compile(r"[^\x00-\x1f\x7f]+"), "printable characters"
    ),
    "kms_alias": NameRule(
        "KMS alias",
        256,
        re.compile(r"alias/(?!aws/)[A-Za-z0-9/_-]+"),
        "alias/ then letters, digits, - _ / (not alias/aws/)",
    ),
    "image_builder": NameRule(
        "Image Builder resource name",
        128,
        re.compile(r"[-_A-Za-z0-9][-_A-Za-z0-9 ]{1,126}[-_A-Za-z0-9]"),
        "letters, digits, - and _ (spaces inside)",
        3,
    ),
    "parameter": NameRule(
        "SSM parameter name",
        SSM_PARAMETER_MAX_ARN_LENGTH - len(LONGEST_PARAMETER_ARN_PREFIX),
        re.compile(r"(/[A-Za-z0-9_.-]+)+"),
        "/-separated segments of letters, digits, - _ .",
    ),
}


def ssm_parameter_problem(name: str) -> str | None:
    """Why SSM would refuse the parameter name `name`, or None."""
    problem = NAME_RULES["parameter"].problem(name)
    if problem:
        return problem
    depth = name.count("/")
    if depth > SSM_PARAMETER_MAX_DEPTH:
        return (
            f"the SSM parameter name {name!r} is {depth} levels deep; SSM allows "
            f"{SSM_PARAMETER_MAX_DEPTH}"
        )
    if name[1:].lower().startswith(("aws", "ssm")):
        return f"the SSM parameter name {name!r} starts with 'aws' or 'ssm', which SSM reserves"
    return None


@dataclasses.dataclass(frozen=True)
class ResourceNames:
    """The names of the fleet's named AWS resources, all from one prefix (the group's name)."""

    prefix: str

    @property
    def autoscaling_group(self) -> str:
        return self.prefix

    @property
    def launch_hook(self) -> str:
        return f"{self.prefix}-launch"

    @property
    def terminate_hook(self) -> str:
        return f"{self.prefix}-terminate"

    @property
    def kms_alias(self) -> str:
        return f"alias/{self.prefix}"

    def function(self, function: str) -> str:
        return f"{self.prefix}-{function}"

    def log_group(self, function: str) -> str:
        return f"/aws/lambda/{self.function(function)}"

    @property
    def deliveries_queue(self) -> str:
        return f"{self.prefix}-deliveries"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-dead-letters"

    @property
    def ledger_table(self) -> str:
        return f"{self.prefix}-ledger"

    def alarm(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    @property
    def image_builder(self) -> str:
        """The image pipeline's component, recipe, configurations and pipeline (one name per
        kind). Lowercase: Image Builder lowercases names in ARNs and log group names."""
        return f"{self.prefix.lower()}-image"

    @property
    def image_build_log_group(self) -> str:
        """Where Image Builder's build instance writes its logs (/aws/imagebuilder/<image>)."""
        return f"/aws/imagebuilder/{self.image_builder}"

    @property
    def bake_function(self) -> str:
        """The function that starts a pipeline run when the bundle or the recipe changes."""
        return self.function(BAKE_FUNCTION)

    def every_name(self) -> list[tuple[str, str]]:
        """(rule, name) for every name above."""
        names = [
            ("autoscaling_group", self.autoscaling_group),
            ("lifecycle_hook", self.launch_hook),
            ("lifecycle_hook", self.terminate_hook),
            ("kms_alias", self.kms_alias),
            ("queue", self.deliveries_queue),
            ("queue", self.dead_letter_queue),
            ("table", self.ledger_table),
        ]
        for function in CONTROL_PLANE_FUNCTIONS:
            names += [
                ("function", self.function(function)),
                ("log_group", self.log_group(function)),
            ]
        names += [("alarm", self.alarm(suffix)) for suffix in ALARM_SUFFIXES]
        names += [
            ("image_builder", self.image_builder),
            ("log_group", self.image_build_log_group),
            ("function", self.bake_function),
            ("log_group", self.log_group(BAKE_FUNCTION)),
        ]
        return names


# What each key means; Pulumi.example.yaml documents the same keys (a unit test keeps them equal).
KEYS: dict[str, str] = {
    "fleetName": "short name of this fleet; prefixes resource names and SSM paths",
    "githubScope": "GitHub organisation ('my-org') or repository ('owner/repo') served",
    "runnerLabels": "labels the runners register with; jobs select runners by them",
    "runnerGroup": "runner group (organisation scope); 'Default' for repository scope",
    "runnerGroupAllowsPublicRepositories": "let public repositories use the group (risky)",
    "architecture": "x86_64 or arm64; every instance type must match",
    "instanceTypes": "instance types for the mixed instances policy, in priority order",
    "spotPercentage": "share of capacity above the on-demand base that is Spot (0-100)",
    "spotAllocationStrategy": "how Spot capacity is chosen across the instance types",
    "onDemandBaseCapacity": "first N instances always on-demand",
    "minSize": "smallest group size",
    "maxSize": "largest group size (hard cap on concurrent runners)",
    "warmIdle": "idle, registered runners the scaler keeps ready",
    "warmPoolSize": "stopped, pre-initialised instances (0 = no warm pool)",
    "warmPoolState": "state of warm-pool instances: Stopped or Running",
    "jobTimeoutMinutes": "longest job the fleet must let finish",
    "maxRunnerLifetimeMinutes": "reaper terminates runners older than this",
    "registrationTimeoutMinutes": "boot deadline: unregistered runners are replaced after it",
    "vpcCidr": "CIDR of the VPC to create (omit when subnetIds is given)",
    "availabilityZoneCount": "availability zones for the created VPC",
    "subnetIds": "existing subnets to run in (omit to create a VPC)",
    "ssmVpcEndpoints": "create interface endpoints for SSM (and an S3 gateway endpoint)",
    "associatePublicIp": "give runners public IPs (only with your own public subnets)",
    "amiId": "image id; when omitted the newest image of amiFamily is used",
    "amiFamily": "debian-13 or ubuntu-24.04: the official image looked up by filter",
    "bakedImage": "the image already carries the bake part of the playbooks",
    "imagePipeline": "bake images with EC2 Image Builder; runners launch from the newest bake",
    "imagePipelineSchedule": "when the pipeline bakes again: Image Builder cron, six fields, UTC",
    "rootVolumeGiB": "encrypted gp3 root volume size",
    "dockerVolumeGiB": "encrypted gp3 volume mounted at /var/lib/docker",
    "kmsKeyArn": "existing customer-managed KMS key; omit to create one",
    "ebsKmsKeyArn": "KMS key for EBS volumes; omit to use the account's aws/ebs key",
    "ssmParameterPrefix": "first segment of every SSM parameter path",
    "tags": "extra tags for every resource",
    "runnerVars": "Ansible role variables for runner hosts, shipped in the playbook bundle",
}


class _RequiredSettings(TypedDict):
    githubScope: str


class FleetSettings(_RequiredSettings, total=False):
    """The stack settings as typed keyword data, for programs that build fleets in code
    (`parse_config(FleetSettings(githubScope="my-org", architecture="arm64"))`); the same keys,
    rules and defaults as the stack config (KEYS, Pulumi.example.yaml). Only githubScope is
    required."""

    fleetName: str
    runnerLabels: list[str]
    runnerGroup: str
    runnerGroupAllowsPublicRepositories: bool
    architecture: Literal["x86_64", "arm64"]
    instanceTypes: list[str]
    spotPercentage: int
    spotAllocationStrategy: Literal[
        "price-capacity-optimized",
        "capacity-optimized",
        "capacity-optimized-prioritized",
        "lowest-price",
    ]
    onDemandBaseCapacity: int
    minSize: int
    maxSize: int
    warmIdle: int
    warmPoolSize: int
    warmPoolState: Literal["Stopped", "Running"]
    jobTimeoutMinutes: int
    maxRunnerLifetimeMinutes: int
    registrationTimeoutMinutes: int
    vpcCidr: str
    availabilityZoneCount: int
    subnetIds: list[str]
    ssmVpcEndpoints: bool
    associatePublicIp: bool
    amiId: str
    amiFamily: Literal["debian-13", "ubuntu-24.04"]
    bakedImage: bool
    imagePipeline: bool
    imagePipelineSchedule: str
    rootVolumeGiB: int
    dockerVolumeGiB: int
    kmsKeyArn: str
    ebsKmsKeyArn: str
    ssmParameterPrefix: str
    tags: dict[str, str]
    runnerVars: dict[str, Any]


class ConfigError(ValueError):
    """Stack configuration is invalid; lists every problem with its key and the fix."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{NAMESPACE}:{key}: {message}" for key, message in problems]
        super().__init__("invalid stack configuration:\n  " + "\n  ".join(lines))


@dataclasses.dataclass(frozen=True)
class FleetConfig:
    """Validated settings of one fleet (no secrets: see `GithubAppSecrets`)."""

    fleet_name: str
    github_scope: str
    runner_labels: tuple[str, ...]
    runner_group: str
    runner_group_allows_public_repositories: bool
    architecture: str
    instance_types: tuple[str, ...]
    spot_percentage: int
    spot_allocation_strategy: str
    on_demand_base_capacity: int
    min_size: int
    max_size: int
    warm_idle: int
    warm_pool_size: int
    warm_pool_state: str
    job_timeout_minutes: int
    max_runner_lifetime_minutes: int
    registration_timeout_minutes: int
    vpc_cidr: str | None
    availability_zone_count: int
    subnet_ids: tuple[str, ...]
    ssm_vpc_endpoints: bool
    associate_public_ip: bool
    ami_id: str | None
    ami_family: str
    baked_image: bool
    root_volume_gib: int
    docker_volume_gib: int
    kms_key_arn: str | None
    ebs_kms_key_arn: str | None
    ssm_parameter_prefix: str
    tags: Mapping[str, str]
    runner_vars: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    image_pipeline: bool = True
    image_pipeline_schedule: str = DEFAULT_IMAGE_PIPELINE_SCHEDULE

    # Derived names: one place, so IAM, user data and the control plane agree.

    @property
    def creates_vpc(self) -> bool:
        return not self.subnet_ids

    @property
    def parameter_root(self) -> str:
        """SSM path of this fleet, e.g. /runner-fleet/main."""
        return f"/{self.ssm_parameter_prefix}/{self.fleet_name}"

    @property
    def runner_parameter_path(self) -> str:
        return f"{self.parameter_root}/runners"

    @property
    def jit_parameter_template(self) -> str:
        """Name of an instance's JIT parameter, with {instance_id} to fill in."""
        return f"{self.runner_parameter_path}/{{instance_id}}/jitconfig"

    @property
    def github_app_parameter_names(self) -> dict[str, str]:
        base = f"{self.parameter_root}/github-app"
        return {
            "app_id": f"{base}/app-id",
            "private_key": f"{base}/private-key",
            "webhook_secret": f"{base}/webhook-secret",
        }

    @property
    def image_parameter_name(self) -> str:
        """The SSM parameter (data type aws:ec2:image) runners launch from: Image Builder's
        distribution writes each new image's id into it. Under /imagebuilder/ because that is
        where Image Builder's service-linked role may write parameters
        (AWSServiceRoleForImageBuilder: ssm:PutParameter on parameter/imagebuilder/*)."""
        return f"/imagebuilder{self.parameter_root}/image-id"

    @property
    def names(self) -> ResourceNames:
        """Every explicit AWS resource name of the fleet (validated by parse_config)."""
        return ResourceNames(f"{self.ssm_parameter_prefix.replace('/', '-')}-{self.fleet_name}")

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
    def parameter_names(self) -> list[str]:
        """Every SSM parameter name the fleet uses (a JIT config with the longest instance id)."""
        names = [
            *self.github_app_parameter_names.values(),
            self.jit_parameter_template.format(instance_id=LONGEST_INSTANCE_ID),
        ]
        if self.image_pipeline:
            names.append(self.image_parameter_name)
        return names

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
        lifetime_s = self.max_runner_lifetime_minutes * 60
        days = math.floor(lifetime_s / 86_400) + 1
        return min(ASG_MAX_INSTANCE_LIFETIME_S, max(ASG_MIN_INSTANCE_LIFETIME_S, days * 86_400))

    @property
    def all_tags(self) -> dict[str, str]:
        return {**self.tags, FLEET_TAG: self.fleet_name, "managed-by": "pulumi"}


@dataclasses.dataclass(frozen=True)
class GithubAppSecrets:
    """GitHub App credentials as Pulumi secret Outputs; never plain strings."""

    app_id: Any
    private_key: Any
    webhook_secret: Any


FLEET_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")
_GITHUB_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_INSTANCE_TYPE = re.compile(r"^([a-z][a-z0-9-]*)\.([a-z0-9-]+)$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_SSM_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class _Reader:
    """Reads typed values from the mapping and collects every problem instead of stopping."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[tuple[str, str]] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append((key, message))

    def given(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def string(
        self, key: str, default: str | None, pattern: re.Pattern[str] | None = None, hint: str = ""
    ) -> str | None:
        value = self.raw.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {value!r}")
            return default
        if pattern is not None and not pattern.match(value):
            self.fail(key, f"{value!r} is not valid: {hint}")
            return default
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw.get(key, default)
        if value not in choices:
            self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected a whole number, got {value!r}")
            return default
        if not low <= value <= high:
            self.fail(key, f"{value} is outside {low}-{high}; set a value in that range")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
            return default
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"expected a list of strings, got {value!r}")
            return default
        return tuple(value)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.fail(key, f"expected a map of strings to strings, got {value!r}")
            return {}
        return dict(value)


# Long on purpose: every stack setting read and checked in the order of Pulumi.example.yaml, so a
# setting's check sits where its documentation does.
def parse_config(raw: Mapping[str, Any]) -> FleetConfig:
    """Turn plain stack settings (camelCase keys, JSON-decoded values) into a FleetConfig.

    Raises ConfigError naming every bad key and how to fix it; no Pulumi call is made.
    """
    r = _Reader(raw)
    for key in raw:
        if key in SECRET_KEYS:
            r.fail(key, "is a secret: it is read with require_secret, not as plain config")
        elif key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f"; did you mean {close[0]}?" if close else "; see Pulumi.example.yaml"
            r.fail(key, f"unknown setting{hint}")

    fleet_name = r.string(
        "fleetName",
        "main",
        FLEET_NAME_PATTERN,
        "use 2-24 characters: lowercase letters, digits and '-', starting with a letter",
    )
    scope = _github_scope(r)
    labels = _labels(r)
    runner_group = _runner_group(r, scope)
    architecture = r.choice("architecture", "x86_64", ARCHITECTURES)
    instance_types = _instance_types(r, architecture)

    spot = r.integer("spotPercentage", 0, 0, 100)
    min_size = r.integer("minSize", 0, 0, 1000)
    max_size = r.integer("maxSize", 10, 1, 1000)
    warm_idle = r.integer("warmIdle", 0, 0, 1000)
    on_demand_base = r.integer("onDemandBaseCapacity", 0, 0, 1000)
    warm_pool = r.integer("warmPoolSize", 0, 0, 1000)
    if min_size > max_size:
        r.fail(
            "maxSize",
            f"maxSize ({max_size}) is below minSize ({min_size}); raise maxSize or lower minSize",
        )
    if warm_idle > max_size:
        r.fail(
            "warmIdle",
            f"warmIdle ({warm_idle}) exceeds maxSize ({max_size}); idle runners "
            "count against the cap: lower warmIdle or raise maxSize",
        )
    if on_demand_base > max_size:
        r.fail(
            "onDemandBaseCapacity",
            f"onDemandBaseCapacity ({on_demand_base}) exceeds maxSize ({max_size}); lower it",
        )
    if warm_pool > max_size:
        r.fail("warmPoolSize", f"warmPoolSize ({warm_pool}) exceeds maxSize ({max_size})")
    image_pipeline = r.boolean("imagePipeline", True)
    if warm_pool and image_pipeline:
        r.fail(
            "warmPoolSize",
            "the image pipeline (imagePipeline, on by default) launches runners from an SSM "
            "parameter (resolve:ssm: in the launch template), and AWS Auto Scaling does not "
            "support warm pools with such a launch template: set warmPoolSize to 0, or turn the "
            "pipeline off for a warm pool (pulumi config set imagePipeline false)",
        )
    if warm_pool and (spot or len(instance_types) != 1):
        r.fail(
            "warmPoolSize",
            "AWS warm pools cannot be used with a mixed instances policy or "
            "Spot: set spotPercentage to 0 and a single instanceTypes entry, "
            "or set warmPoolSize to 0",
        )

    job_timeout = r.integer("jobTimeoutMinutes", 180, 1, 7200)
    registration = r.integer("registrationTimeoutMinutes", 20, 5, 120)
    lifetime = r.integer("maxRunnerLifetimeMinutes", 360, 10, 364 * 1440)
    if lifetime < job_timeout + registration:
        r.fail(
            "maxRunnerLifetimeMinutes",
            f"maxRunnerLifetimeMinutes ({lifetime}) must be at least jobTimeoutMinutes + "
            f"registrationTimeoutMinutes ({job_timeout} + {registration} = "
            f"{job_timeout + registration}), or the reaper would stop runners mid-job; raise "
            "maxRunnerLifetimeMinutes or lower jobTimeoutMinutes",
        )

    vpc_cidr, subnet_ids, az_count, public_ip = _network(r)
    ami_id = r.string("amiId", None, _AMI_ID, "expected ami- followed by 8-17 hex digits")
    baked = r.boolean("bakedImage", False)
    if baked and ami_id is None:
        r.fail(
            "bakedImage",
            "a baked image is your own image: set amiId to it, or set "
            "bakedImage to false to run the bake part at boot",
        )
    root_gib = r.integer("rootVolumeGiB", 30, 8, 16384)
    docker_gib = r.integer("dockerVolumeGiB", 100, 20, 16384)
    if root_gib == docker_gib:
        r.fail(
            "dockerVolumeGiB",
            f"dockerVolumeGiB equals rootVolumeGiB ({root_gib}); the boot "
            "script finds the Docker volume by its size: make them differ",
        )
    kms_hint = "expected arn:aws:kms:<region>:<account>:key/<key-id> (not an alias)"
    config = FleetConfig(
        fleet_name=fleet_name or "main",
        github_scope=scope or "",
        runner_labels=labels,
        runner_group=runner_group,
        runner_group_allows_public_repositories=r.boolean(
            "runnerGroupAllowsPublicRepositories", False
        ),
        architecture=architecture,
        instance_types=instance_types,
        spot_percentage=spot,
        spot_allocation_strategy=r.choice(
            "spotAllocationStrategy", "price-capacity-optimized", SPOT_ALLOCATION_STRATEGIES
        ),
        on_demand_base_capacity=on_demand_base,
        min_size=min_size,
        max_size=max_size,
        warm_idle=warm_idle,
        warm_pool_size=warm_pool,
        warm_pool_state=_warm_pool_state(r),
        job_timeout_minutes=job_timeout,
        max_runner_lifetime_minutes=lifetime,
        registration_timeout_minutes=registration,
        vpc_cidr=vpc_cidr,
        availability_zone_count=az_count,
        subnet_ids=subnet_ids,
        ssm_vpc_endpoints=r.boolean("ssmVpcEndpoints", False),
        associate_public_ip=public_ip,
        ami_id=ami_id,
        ami_family=r.choice("amiFamily", "debian-13", AMI_FAMILIES),
        baked_image=baked,
        root_volume_gib=root_gib,
        docker_volume_gib=docker_gib,
        kms_key_arn=r.string("kmsKeyArn", None, _KMS_KEY_ARN, kms_hint),
        ebs_kms_key_arn=r.string("ebsKmsKeyArn", None, _KMS_KEY_ARN, kms_hint),
        ssm_parameter_prefix=_ssm_prefix(r),
        tags=_tags(r),
        runner_vars=_runner_vars(r),
        image_pipeline=image_pipeline,
        image_pipeline_schedule=_image_pipeline_schedule(r),
    )
    if not any(key in ("fleetName", "ssmParameterPrefix") for key, _ in r.problems):
        _check_names(r, config)
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _image_pipeline_schedule(r: _Reader) -> str:
    # Checked even with the pipeline off, so turning it on later cannot fail on it.
    schedule = r.string("imagePipelineSchedule", DEFAULT_IMAGE_PIPELINE_SCHEDULE)
    problem = image_builder_cron_problem(schedule or "")
    if problem:
        r.fail(
            "imagePipelineSchedule",
            f"{schedule!r} {problem}; for example weekly on Sunday at 04:00 UTC: pulumi config "
            f"set imagePipelineSchedule '{DEFAULT_IMAGE_PIPELINE_SCHEDULE}'",
        )
        return DEFAULT_IMAGE_PIPELINE_SCHEDULE
    return schedule or DEFAULT_IMAGE_PIPELINE_SCHEDULE


# Image Builder's cron (docs: "Use cron expressions in Image Builder"): six fields, each a
# list of values, ranges and increments, plus ? L W # where the field allows them.
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _WEEKDAYS),
    ("year", 1970, 2199, ()),
)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    if text.lower() in names:
        return True
    return text.isdigit() and low <= int(text) <= high


def _cron_item(field: str, item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    """One comma-separated item of a field."""
    if field == "day-of-month" and (item in ("L", "LW") or item.endswith("W")):
        return item in ("L", "LW") or _cron_value(item[:-1], low, high, ())
    if field == "day-of-week":
        if item == "L" or (item.endswith("L") and _cron_value(item[:-1], low, high, names)):
            return True
        if "#" in item:
            day, _, week = item.partition("#")
            return _cron_value(day, low, high, names) and week in ("1", "2", "3", "4", "5")
    base, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return False
    if base == "*":
        return True
    start, dash, end = base.partition("-")
    return _cron_value(start, low, high, names) and (not dash or _cron_value(end, low, high, names))


def image_builder_cron_problem(expression: str) -> str | None:
    """Why Image Builder would refuse `expression` as a pipeline schedule, or None."""
    if not (expression.startswith("cron(") and expression.endswith(")")):
        return "is not a cron(...) expression"
    fields = expression[len("cron(") : -1].split(" ")
    if len(fields) != len(_CRON_FIELDS):
        return (
            f"has {len(fields)} fields separated by single spaces; Image Builder takes six: "
            "minute hour day-of-month month day-of-week year"
        )
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        if text == "?" and field in ("day-of-month", "day-of-week"):
            continue
        if not all(_cron_item(field, item, low, high, names) for item in text.split(",")):
            allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
            return f"has an invalid {field} field {text!r} (values {allowed})"
    if (fields[2] == "?") == (fields[4] == "?"):
        return "must have ? in exactly one of day-of-month and day-of-week"
    return None


def _github_scope(r: _Reader) -> str | None:
    scope = r.raw.get("githubScope")
    if scope is None:
        r.fail(
            "githubScope",
            "is required: set it to an organisation ('my-org') or a repository ('owner/repo')",
        )
        return None
    if not isinstance(scope, str):
        r.fail("githubScope", f"expected a string, got {scope!r}")
        return None
    parts = scope.split("/")
    ok = (
        len(parts) in (1, 2)
        and _GITHUB_OWNER.match(parts[0]) is not None
        and (len(parts) == 1 or (_GITHUB_REPO.match(parts[1]) and parts[1] not in (".", "..")))
    )
    if not ok:
        r.fail(
            "githubScope",
            f"{scope!r} is neither an organisation ('my-org') nor a "
            "repository ('owner/repo'); no URL, no trailing slash",
        )
        return None
    return scope


def _labels(r: _Reader) -> tuple[str, ...]:
    labels = r.strings("runnerLabels", ("self-hosted", "linux", "dind"))
    if not labels:
        r.fail(
            "runnerLabels",
            "is empty: jobs select runners by label; give at least one, "
            "e.g. [self-hosted, linux, dind]",
        )
    for label in labels:
        if not _LABEL.match(label):
            r.fail(
                "runnerLabels",
                f"label {label!r} is invalid: use 1-100 letters, digits, "
                "'.', '_' or '-', starting with a letter or digit",
            )
    lowered = [label.lower() for label in labels]
    if len(set(lowered)) != len(lowered):
        r.fail(
            "runnerLabels",
            "labels repeat (GitHub compares them case-insensitively); remove the duplicates",
        )
    if len(labels) > 100:
        r.fail("runnerLabels", "GitHub accepts at most 100 labels")
    joined = len(",".join(labels))
    if joined > RUNNER_LABELS_MAX_CHARACTERS:
        r.fail(
            "runnerLabels",
            f"{joined} characters in all: the control plane functions carry the labels in their "
            f"environment, which AWS limits to {LAMBDA_ENVIRONMENT_MAX_BYTES} bytes with "
            f"everything else; keep them under {RUNNER_LABELS_MAX_CHARACTERS} characters together",
        )
    return labels


def _runner_group(r: _Reader, scope: str | None) -> str:
    repo_scope = scope is not None and "/" in scope
    group = r.string("runnerGroup", "Default" if repo_scope else "runner-fleet")
    group = group or "runner-fleet"
    if len(group) > 100 or any(ord(c) < 32 for c in group):
        r.fail("runnerGroup", "use at most 100 printable characters")
    if repo_scope and group != "Default":
        r.fail(
            "runnerGroup",
            "runner groups exist only for organisations; with a repository "
            "scope leave runnerGroup unset (or 'Default')",
        )
    return group


def _instance_types(r: _Reader, architecture: str) -> tuple[str, ...]:
    # Existence and architecture are EC2's to say: infra/launch_template.py asks it at preview
    # (aws.ec2.get_instance_type), so a family newer than this program is accepted.
    types = r.strings("instanceTypes", DEFAULT_INSTANCE_TYPES.get(architecture, ()))
    if not types:
        r.fail("instanceTypes", "is empty: list at least one instance type, e.g. [m7i.xlarge]")
    if len(set(types)) != len(types):
        r.fail("instanceTypes", "lists a type twice; remove the duplicate")
    for instance_type in types:
        if not _INSTANCE_TYPE.match(instance_type):
            r.fail(
                "instanceTypes",
                f"{instance_type!r} is not an instance type: use family.size, e.g. m7i.xlarge "
                "(x86_64) or m7g.xlarge (arm64)",
            )
    return types


def _network(r: _Reader) -> tuple[str | None, tuple[str, ...], int, bool]:
    subnet_ids = r.strings("subnetIds", ())
    for subnet in subnet_ids:
        if not _SUBNET_ID.match(subnet):
            r.fail("subnetIds", f"{subnet!r} is not a subnet id (subnet-0123abcd...)")
    if len(set(subnet_ids)) != len(subnet_ids):
        r.fail("subnetIds", "lists a subnet twice")
    if r.given("subnetIds") and not subnet_ids:
        r.fail("subnetIds", "is empty: list your subnets, or remove it to create a VPC")
    vpc_cidr: str | None = None
    if r.given("vpcCidr") and subnet_ids:
        r.fail(
            "vpcCidr",
            "both vpcCidr and subnetIds are set: give subnetIds to use your "
            "network, or vpcCidr to create a VPC, not both",
        )
    elif not subnet_ids:
        vpc_cidr = r.string("vpcCidr", "10.64.0.0/16")
        try:
            network = ipaddress.IPv4Network(vpc_cidr or "", strict=True)
            if not 16 <= network.prefixlen <= 24:
                r.fail("vpcCidr", f"{vpc_cidr} must be between /16 and /24")
            for pool in DOCKER_ADDRESS_POOLS:
                if network.overlaps(ipaddress.IPv4Network(pool)):
                    r.fail(
                        "vpcCidr",
                        f"{vpc_cidr} overlaps {pool}, where Docker on the runners "
                        "puts its networks (docker_host role defaults): jobs "
                        "could not reach the VPC; choose another range",
                    )
        except ValueError:
            r.fail(
                "vpcCidr", f"{vpc_cidr!r} is not an IPv4 network like 10.64.0.0/16 (host bits zero)"
            )
    if r.given("availabilityZoneCount") and subnet_ids:
        r.fail(
            "availabilityZoneCount",
            "only applies to the VPC this program creates; your "
            "subnets decide the zones: remove it",
        )
    az_count = r.integer("availabilityZoneCount", 2, 1, 6)
    public_ip = r.boolean("associatePublicIp", False)
    if public_ip and not subnet_ids:
        r.fail(
            "associatePublicIp",
            "the VPC this program creates keeps runners in private "
            "subnets behind NAT: set it to false, or give public "
            "subnetIds",
        )
    return vpc_cidr, subnet_ids, az_count, public_ip


def _ssm_prefix(r: _Reader) -> str:
    prefix = r.string(
        "ssmParameterPrefix",
        "runner-fleet",
        _SSM_PREFIX,
        "use letters, digits, '_', '-' and '/' (no leading or trailing '/', no empty segment)",
    )
    prefix = prefix or "runner-fleet"
    if prefix.lower().startswith(("aws", "ssm")):
        r.fail(
            "ssmParameterPrefix",
            "SSM reserves paths starting with 'aws' or 'ssm'; choose another prefix",
        )
    if "." in prefix:
        # SSM paths allow dots, but the prefix also names the group, its lifecycle hooks, the
        # functions, the queues and the KMS alias, and AWS refuses dots in all of those.
        r.fail(
            "ssmParameterPrefix",
            f"{prefix!r} has a '.': the prefix also names the Auto Scaling group, its lifecycle "
            "hooks, the Lambda functions, the SQS queues and the KMS alias, which refuse dots; "
            f"use '-' instead: pulumi config set ssmParameterPrefix {prefix.replace('.', '-')}",
        )
    return prefix


def _check_names(r: _Reader, config: FleetConfig) -> None:
    """Every name derived from fleetName and ssmParameterPrefix must be one AWS accepts; the
    prefix is the part a user shortens, so it carries the problem."""
    checks = [
        (rule, name, NAME_RULES[rule].problem(name)) for rule, name in config.names.every_name()
    ]
    checks += [("parameter", name, ssm_parameter_problem(name)) for name in config.parameter_names]
    reported: set[str] = set()
    # One problem per kind of name, the longest name first (it is the one to fix).
    for rule, name, problem in sorted(checks, key=lambda check: -len(check[1])):
        if problem is None or rule in reported:
            continue
        reported.add(rule)
        max_length = NAME_RULES[rule].max_length
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
                f"{SSM_PARAMETER_MAX_DEPTH - 4}: the fleet adds /<fleetName>/runners/<instance-id>"
                "/jitconfig)"
            )
        else:
            fix = "use only letters, digits, '-' and '_' in ssmParameterPrefix"
        r.fail(
            "ssmParameterPrefix",
            f"with fleetName {config.fleet_name!r} and this prefix, {problem}: {fix}",
        )


def _warm_pool_state(r: _Reader) -> str:
    if r.raw.get("warmPoolState") == "Hibernated":
        r.fail(
            "warmPoolState",
            "Hibernated is not supported: hibernation needs an encrypted root volume larger "
            "than the instance's memory and hibernation-capable instance types, and a resumed "
            "runner would keep the clock and network state of when it was prepared; use "
            "Stopped (no compute cost while waiting) or Running (fastest start)",
        )
        return "Stopped"
    return r.choice("warmPoolState", "Stopped", WARM_POOL_STATES)


def _runner_vars(r: _Reader) -> dict[str, Any]:
    value = r.raw.get("runnerVars")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        r.fail("runnerVars", f"expected a map of role variables, got {value!r}")
        return {}
    problems = [
        f"{key!r} is not a variable name" for key in value if not _VARIABLE_NAME.match(str(key))
    ]
    problems += [
        f"{key} is made per instance by the control plane; remove it"
        for key in RUNNER_VARS_REFUSED
        if key in value
    ]
    size = len(json.dumps(value, default=str))
    if size > RUNNER_VARS_MAX_BYTES:
        problems.append(f"{size} bytes; keep it under {RUNNER_VARS_MAX_BYTES}")
    for problem in problems:
        r.fail("runnerVars", problem)
    return {} if problems else dict(value)


def tag_text_allowed(text: str) -> bool:
    """Characters every tagging AWS service accepts: letters, digits and spaces (any script)
    and _ . : / = + - @ (pattern [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)."""
    return all(unicodedata.category(c)[0] in "LZN" or c in _TAG_PUNCTUATION for c in text)


_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def _tags(r: _Reader) -> dict[str, str]:
    tags = r.string_map("tags")
    for key, value in tags.items():
        if key.lower().startswith("aws:") or not 1 <= len(key) <= 128 or len(value) > 256:
            r.fail(
                "tags",
                f"tag {key!r}: keys are 1-128 characters and may not start with "
                "'aws:'; values at most 256",
            )
        elif value.lower().startswith("aws:"):
            r.fail("tags", f"tag {key!r}: AWS reserves values starting with 'aws:'")
        elif not (tag_text_allowed(key) and tag_text_allowed(value)):
            r.fail(
                "tags",
                f"tag {key!r}: {value!r}: keys and values take letters, digits, spaces and "
                "_ . : / = + - @ only (what every tagging AWS service accepts)",
            )
        if key in (FLEET_TAG, "managed-by", SSM_BUCKET_TAG):
            r.fail("tags", f"tag {key!r} is set by the program; remove it")
    if len(tags) > 40:
        r.fail("tags", "at most 40 extra tags (AWS allows 50 per resource)")
    return tags


def read_config(config: Any = None) -> tuple[FleetConfig, GithubAppSecrets]:
    """Read this project's stack config through Pulumi: settings plus secret Outputs."""
    import pulumi
    import pulumi.runtime.config as runtime_config

    config = config or pulumi.Config()
    prefix = f"{config.name}:"
    every_key = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    raw: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for full_key in sorted(k for k in every_key if k.startswith(prefix)):
        key = full_key[len(prefix) :]
        if key in SECRET_KEYS:
            continue
        value = runtime_config.get_config(full_key)
        raw[key] = value if _is_string_key(key) else _decode(key, value, problems)
    for key in SECRET_KEYS:
        full_key = prefix + key
        if runtime_config.get_config(full_key) is None:
            problems.append((key, f"is required: pulumi config set --secret {key} <value>"))
        elif not (runtime_config.is_config_secret(full_key) or full_key in secret_keys):
            problems.append(
                (
                    key,
                    f"is stored in plain text: run pulumi config set --secret "
                    f"{key} <value> so it is encrypted in the stack file",
                )
            )
    try:
        fleet = parse_config(raw)
    except ConfigError as error:
        problems = problems + error.problems
    if problems:
        raise ConfigError(problems)
    secrets = GithubAppSecrets(
        app_id=config.require_secret("githubAppId"),
        private_key=config.require_secret("githubAppPrivateKey"),
        webhook_secret=config.require_secret("githubWebhookSecret"),
    )
    return fleet, secrets


_STRING_KEYS = {
    "fleetName",
    "githubScope",
    "runnerGroup",
    "architecture",
    "spotAllocationStrategy",
    "warmPoolState",
    "vpcCidr",
    "amiId",
    "amiFamily",
    "kmsKeyArn",
    "ebsKmsKeyArn",
    "ssmParameterPrefix",
    "imagePipelineSchedule",
}


def _is_string_key(key: str) -> bool:
    return key in _STRING_KEYS


def _decode(key: str, value: Any, problems: list[tuple[str, str]]) -> Any:
    # Pulumi hands every value over as a string; numbers, booleans, lists and maps are JSON.
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        problems.append((key, f"{value!r} is not a number, true/false, list or map as expected"))
        return None
