"""Stack configuration for the Pulumi program: the reader over `pulumi.Config`.

The model is `fleet.core.config` (pydantic; shared with the control plane functions and the
local fleet): `parse_config` turns plain settings into a frozen `FleetConfig` or raises
`ConfigError` naming every bad key, what is wrong and the `pulumi config` command that fixes
it. This module only reads the stack's values through Pulumi and keeps the GitHub App secrets
out of the mapping: they come through `Config.require_secret` and stay Outputs.

Keys are the camelCase names under the project namespace (`runner-fleet:maxSize`).
Every key is documented, with its default, in Pulumi.example.yaml.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from fleet.core.config.cron import DEFAULT_IMAGE_PIPELINE_SCHEDULE, image_builder_cron_problem
from fleet.core.config.defaults import (
    AMI_FILTERS,
    DEFAULT_INSTANCE_TYPES,
    FLEET_TAG,
    GITHUB_MODES,
    JIT_INSTANCE_TAG,
    NAMESPACE,
    SCALE_SET_MODE,
    SECRET_KEYS,
    SSM_BUCKET_TAG,
    WEBHOOK_SECRET_KEY,
)
from fleet.core.config.names import (
    ALARM_SUFFIXES,
    BAKE_FUNCTION,
    CONTROL_PLANE_FUNCTIONS,
    LISTENER_FUNCTION,
    ResourceNames,
    alarm_suffixes,
    control_plane_functions,
)
from fleet.core.config.rules import FLEET_NAME, NAME_RULES, tag_text_allowed
from fleet.core.config.stack import (
    KEYS,
    ConfigError,
    FleetConfig,
    parse_config,
    required_secret_keys,
    secret_problems,
)
from fleet.core.config.typed import FleetSettings

__all__ = [
    "ALARM_SUFFIXES",
    "AMI_FILTERS",
    "BAKE_FUNCTION",
    "CONTROL_PLANE_FUNCTIONS",
    "DEFAULT_IMAGE_PIPELINE_SCHEDULE",
    "DEFAULT_INSTANCE_TYPES",
    "FLEET_NAME",
    "FLEET_TAG",
    "GITHUB_MODES",
    "JIT_INSTANCE_TAG",
    "KEYS",
    "LISTENER_FUNCTION",
    "NAMESPACE",
    "NAME_RULES",
    "SCALE_SET_MODE",
    "SECRET_KEYS",
    "SSM_BUCKET_TAG",
    "ConfigError",
    "FleetConfig",
    "FleetSettings",
    "GithubAppSecrets",
    "ResourceNames",
    "alarm_suffixes",
    "control_plane_functions",
    "image_builder_cron_problem",
    "parse_config",
    "read_config",
    "required_secret_keys",
    "secret_problems",
    "tag_text_allowed",
]


@dataclasses.dataclass(frozen=True)
class GithubAppSecrets:
    """GitHub App credentials as Pulumi secret Outputs; never plain strings."""

    app_id: Any
    private_key: Any
    webhook_secret: Any = None  # githubMode webhook only


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
    given = {
        key: runtime_config.is_config_secret(prefix + key) or prefix + key in secret_keys
        for key in SECRET_KEYS
        if runtime_config.get_config(prefix + key) is not None
    }
    problems += secret_problems(raw.get("githubMode"), given)
    try:
        fleet = parse_config(raw)
    except ConfigError as error:
        problems = problems + error.problems
    if problems:
        raise ConfigError(problems)
    secrets = GithubAppSecrets(
        app_id=config.require_secret("githubAppId"),
        private_key=config.require_secret("githubAppPrivateKey"),
        webhook_secret=(None if fleet.scale_set else config.require_secret(WEBHOOK_SECRET_KEY)),
    )
    return fleet, secrets


def _is_string_key(key: str) -> bool:
    """Settings the model types as text: Pulumi hands them over as they were set."""
    field = next((f for f in FleetConfig.model_fields.values() if f.alias == key), None)
    return field is not None and _text_annotation(field.annotation)


def _text_annotation(annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is str:
        return True
    if origin is typing.Annotated:
        return _text_annotation(args[0])
    if origin is typing.Literal:
        return all(isinstance(arg, str) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return all(_text_annotation(a) for a in args if a is not type(None))
    return False


def _decode(key: str, value: Any, problems: list[tuple[str, str]]) -> Any:
    # Pulumi hands every value over as a string; numbers, booleans, lists and maps are JSON.
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        problems.append((key, f"{value!r} is not a number, true/false, list or map as expected"))
        return None
