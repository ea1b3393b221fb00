"""The settings the stack, the control plane functions and the local fleet share, as types.

Each type carries its rule and the message that explains a refusal (``refuse``), so the stack
model (``stack``), the functions' environment and the local GitHub settings (``settings``)
accept and refuse the same values with the same words. Ranges are `Field(ge=, le=)`; the
message for a value outside one is written by ``problems``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from fleet.core.config import rules
from fleet.core.config.cron import DEFAULT_IMAGE_PIPELINE_SCHEDULE, image_builder_cron_problem

# Networks Docker creates on runners (docker0 and the docker_host role's default address pool).
DOCKER_ADDRESS_POOLS = ("172.17.0.0/16", "10.210.0.0/16")


def refuse(message: str, **ctx: Any) -> PydanticCustomError:
    """A validation error whose message is ``message`` as written (``problems`` reads it)."""
    return PydanticCustomError("config", "{message}", {"message": message, **ctx})


def refuse_all(messages: list[str]) -> PydanticCustomError:
    """One value with several problems: each is reported with the setting's name."""
    return refuse("; ".join(messages), messages=messages)


def _fleet_name(value: str) -> str:
    if not rules.FLEET_NAME.fullmatch(value):
        raise refuse(f"{value!r} is not valid: {rules.FLEET_NAME_HINT}")
    return value


def github_scope_problem(scope: str) -> str | None:
    parts = scope.split("/")
    ok = (
        len(parts) in (1, 2)
        and rules.GITHUB_OWNER.fullmatch(parts[0]) is not None
        and (
            len(parts) == 1
            or (rules.GITHUB_REPO.fullmatch(parts[1]) is not None and parts[1] not in (".", ".."))
        )
    )
    if ok:
        return None
    return (
        f"{scope!r} is neither an organisation ('my-org') nor a repository ('owner/repo'); "
        "no URL, no trailing slash"
    )


def _github_scope(value: str) -> str:
    problem = github_scope_problem(value.strip())
    if problem:
        raise refuse(problem)
    return value.strip()


def _runner_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    if not labels:
        raise refuse(
            "is empty: jobs select runners by label; give at least one, "
            "e.g. [self-hosted, linux, dind]"
        )
    for label in labels:
        if not rules.RUNNER_LABEL.fullmatch(label):
            raise refuse(
                f"label {label!r} is invalid: use 1-100 letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
    lowered = [label.lower() for label in labels]
    if len(set(lowered)) != len(lowered):
        raise refuse(
            "labels repeat (GitHub compares them case-insensitively); remove the duplicates"
        )
    if len(labels) > rules.RUNNER_LABELS_MAX:
        raise refuse(f"GitHub accepts at most {rules.RUNNER_LABELS_MAX} labels")
    joined = len(",".join(labels))
    if joined > rules.RUNNER_LABELS_MAX_CHARACTERS:
        raise refuse(
            f"{joined} characters in all: the control plane functions carry the labels in their "
            f"environment, which AWS limits to {rules.LAMBDA_ENVIRONMENT_MAX_BYTES} bytes with "
            "everything else; keep them under "
            f"{rules.RUNNER_LABELS_MAX_CHARACTERS} characters together"
        )
    return labels


def _runner_group(value: str) -> str:
    if not value or len(value) > rules.RUNNER_GROUP_MAX_LENGTH or any(ord(c) < 32 for c in value):
        raise refuse(f"{value!r}: use 1-{rules.RUNNER_GROUP_MAX_LENGTH} printable characters")
    return value


def _pattern(pattern: Any, hint: str, what: str = "valid") -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise refuse(f"{value!r} is not {what}: {hint}")
        return value

    return AfterValidator(check)


def _ssm_parameter(value: str) -> str:
    problem = rules.ssm_parameter_problem(value)
    if problem:
        raise refuse(problem)
    return value


def _jit_parameter_template(value: str) -> str:
    if "{instance_id}" not in value:
        raise refuse(f"{value!r} must be an absolute SSM name containing {{instance_id}}")
    problem = rules.ssm_parameter_problem(value.format(instance_id=rules.LONGEST_INSTANCE_ID))
    if problem:
        raise refuse(
            f"{value!r} must be an SSM name with {{instance_id}} that SSM takes: {problem}"
        )
    return value


def _table_name(value: str) -> str:
    problem = rules.NAME_RULES["table"].problem(value)
    if problem:
        raise refuse(problem)
    return value


def _group_name(value: str) -> str:
    problem = rules.NAME_RULES["autoscaling_group"].problem(value)
    if problem:
        raise refuse(problem)
    return value


def _api_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not rules.GITHUB_API_URL.fullmatch(value):
        raise refuse(
            f"{value!r} is not an http(s) URL: https://api.github.com, or https://HOST/api/v3 "
            "for GitHub Enterprise Server"
        )
    return value


def _app_id(value: str | int) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise refuse(
            f"must be the App's numeric id, got {value!r}; it is shown as 'App ID' on the "
            "App's settings page"
        )
    return text


def _vpc_cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise refuse(
            f"{value!r} is not an IPv4 network like 10.64.0.0/16 (host bits zero)"
        ) from None
    problems = []
    if not 16 <= network.prefixlen <= 24:
        problems.append(f"{value} must be between /16 and /24")
    problems += [
        f"{value} overlaps {pool}, where Docker on the runners puts its networks (docker_host "
        "role defaults): jobs could not reach the VPC; choose another range"
        for pool in DOCKER_ADDRESS_POOLS
        if network.overlaps(ipaddress.IPv4Network(pool))
    ]
    if problems:
        raise refuse_all(problems)
    return value


def _ssm_prefix(value: str) -> str:
    if not rules.SSM_PREFIX.fullmatch(value):
        raise refuse(f"{value!r} is not valid: {rules.SSM_PREFIX_HINT}")
    if value.lower().startswith(rules.SSM_RESERVED_PREFIXES):
        raise refuse("SSM reserves paths starting with 'aws' or 'ssm'; choose another prefix")
    if "." in value:
        # SSM paths allow dots, but the prefix also names the group, its lifecycle hooks, the
        # functions, the queues and the KMS alias, and AWS refuses dots in all of those.
        raise refuse(
            f"{value!r} has a '.': the prefix also names the Auto Scaling group, its lifecycle "
            "hooks, the Lambda functions, the SQS queues and the KMS alias, which refuse dots; "
            f"use '-' instead: pulumi config set ssmParameterPrefix {value.replace('.', '-')}"
        )
    return value


def _cron(value: str) -> str:
    problem = image_builder_cron_problem(value)
    if problem:
        raise refuse(
            f"{value!r} {problem}; for example weekly on Sunday at 04:00 UTC: pulumi config "
            f"set imagePipelineSchedule '{DEFAULT_IMAGE_PIPELINE_SCHEDULE}'"
        )
    return value


FleetName = Annotated[str, AfterValidator(_fleet_name)]
GitHubScope = Annotated[str, AfterValidator(_github_scope)]
RunnerLabels = Annotated[tuple[str, ...], Field(strict=False), AfterValidator(_runner_labels)]
RunnerGroup = Annotated[str, AfterValidator(_runner_group)]
GitHubApiUrl = Annotated[str, AfterValidator(_api_url)]
GitHubAppId = Annotated[str | int, AfterValidator(_app_id)]
InstanceType = Annotated[
    str,
    _pattern(
        rules.INSTANCE_TYPE,
        "use family.size, e.g. m7i.xlarge (x86_64) or m7g.xlarge (arm64)",
        "an instance type",
    ),
]
SubnetId = Annotated[
    str, _pattern(rules.SUBNET_ID, "expected subnet- and 8-17 hex digits", "a subnet id")
]
AmiId = Annotated[str, _pattern(rules.AMI_ID, "expected ami- followed by 8-17 hex digits")]
KmsKeyArn = Annotated[str, _pattern(rules.KMS_KEY_ARN, rules.KMS_KEY_ARN_HINT)]
AccountId = Annotated[str, _pattern(rules.ACCOUNT_ID, "expected the 12-digit account id")]
Region = Annotated[str, _pattern(rules.REGION, "expected a region name like eu-west-1")]
QueueUrl = Annotated[str, _pattern(rules.SQS_QUEUE_URL, "expected the queue's https:// URL")]
SsmParameterName = Annotated[str, AfterValidator(_ssm_parameter)]
JitParameterTemplate = Annotated[str, AfterValidator(_jit_parameter_template)]
TableName = Annotated[str, AfterValidator(_table_name)]
GroupName = Annotated[str, AfterValidator(_group_name)]
VpcCidr = Annotated[str, AfterValidator(_vpc_cidr)]
SsmPrefix = Annotated[str, AfterValidator(_ssm_prefix)]
ImageBuilderCron = Annotated[str, AfterValidator(_cron)]

# Sizes and times, with the bounds both the stack and the functions hold to.
GroupSize = Annotated[int, Field(ge=0, le=rules.MAX_GROUP_SIZE)]
MaxGroupSize = Annotated[int, Field(ge=1, le=rules.MAX_GROUP_SIZE)]
JobTimeoutMinutes = Annotated[int, Field(ge=1, le=7200)]
# The launch hook's heartbeat waits for registration: 5 minutes to 2 hours.
RegistrationTimeoutMinutes = Annotated[int, Field(ge=5, le=120)]
# The reaper's limit; the group's own backstop is the next whole day, at most 365 days.
RunnerLifetimeMinutes = Annotated[int, Field(ge=10, le=364 * 1440)]
# Baked images the lifecycle policy keeps per recipe version (infra/image_retention.py). AWS
# takes 1-1000; at least 2, so an image to roll back to is always there and two bakes that
# end out of order still leave the one the image parameter names; at most 50 (each keeps a
# snapshot of the root volume).
IMAGE_RETENTION_MIN, IMAGE_RETENTION_MAX = 2, 50
ImageRetention = Annotated[int, Field(ge=IMAGE_RETENTION_MIN, le=IMAGE_RETENTION_MAX)]


def _tags(tags: dict[str, str]) -> dict[str, str]:
    from fleet.core.config.defaults import IMAGE_KEEP_TAG, PROGRAM_TAGS

    for key, value in tags.items():
        problem = rules.tag_problem(key, value)
        if problem:
            raise refuse(problem)
        if key in PROGRAM_TAGS:
            raise refuse(f"tag {key!r} is set by the program; remove it")
        if key == IMAGE_KEEP_TAG:
            raise refuse(
                f"tag {key!r} marks a baked image the image lifecycle policy keeps; on every "
                "resource it would keep every image: remove it (tag only the AMI to keep)"
            )
    if len(tags) > rules.EXTRA_TAGS_MAX:
        raise refuse(
            f"at most {rules.EXTRA_TAGS_MAX} extra tags (AWS allows {rules.TAGS_PER_RESOURCE} "
            "per resource and the program sets some)"
        )
    return tags


# The role variable the boot part gets per instance; never a stack setting.
RUNNER_VARS_REFUSED = ("actions_runner_jitconfig",)
RUNNER_VARS_MAX_BYTES = 256 * 1024
# actions_runner_version's value for the newest agent release (the actions_runner role).
AGENT_VERSION_LATEST = "latest"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def agent_tracks_latest(runner_vars: Mapping[str, Any]) -> bool:
    """The bake installs the newest agent release (runnerVars actions_runner_version latest)."""
    return str(runner_vars.get("actions_runner_version", "")).strip() == AGENT_VERSION_LATEST


def _runner_vars(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        if not _VARIABLE_NAME.fullmatch(str(key)):
            raise refuse(f"{key!r} is not a variable name")
    for key in RUNNER_VARS_REFUSED:
        if key in value:
            raise refuse(f"{key} is made per instance by the control plane; remove it")
    if agent_tracks_latest(value) and value.get("actions_runner_sha256"):
        raise refuse(
            "actions_runner_version latest installs the newest release verified against the "
            "sha256 it publishes; actions_runner_sha256 pins one tarball: remove it "
            "(pulumi config rm --path runnerVars.actions_runner_sha256), or pin "
            "actions_runner_version to the version that checksum belongs to"
        )
    size = len(json.dumps(value, default=str))
    if size > RUNNER_VARS_MAX_BYTES:
        raise refuse(f"{size} bytes; keep it under {RUNNER_VARS_MAX_BYTES}")
    return value


def _warm_pool_state(value: Any) -> Any:
    if value == "Hibernated":
        raise refuse(
            "Hibernated is not supported: hibernation needs an encrypted root volume larger "
            "than the instance's memory and hibernation-capable instance types, and a resumed "
            "runner would keep the clock and network state of when it was prepared; use "
            "Stopped (no compute cost while waiting) or Running (fastest start)"
        )
    return value


def _github_mode(value: Any) -> Any:
    if isinstance(value, str) and value != "scaleSet" and value.lower() == "scaleset":
        raise refuse(f"{value!r}: the mode is case-sensitive; did you mean scaleSet?")
    return value


def _scale_set_name(value: str) -> str:
    if not rules.SCALE_SET_NAME.fullmatch(value):
        raise refuse(f"{value!r} is not a valid scale set name: {rules.SCALE_SET_NAME_HINT}")
    return value


Tags = Annotated[dict[str, str], Field(strict=False), AfterValidator(_tags)]
RunnerVars = Annotated[dict[str, Any], Field(strict=False), AfterValidator(_runner_vars)]
WarmPoolState = Annotated[Literal["Stopped", "Running"], BeforeValidator(_warm_pool_state)]
# How the control plane learns about jobs: webhooks, or a runner scale set (defaults.GITHUB_MODES).
GitHubMode = Annotated[Literal["webhook", "scaleSet"], BeforeValidator(_github_mode)]
ScaleSetName = Annotated[str, AfterValidator(_scale_set_name)]
