"""Runner fleets on AWS as Pulumi components: nothing is created at import.

Use from another Pulumi program (see examples/two-fleets):

    from infra import FleetSettings, GithubAppSecrets, RunnerFleet, RunnerFleetArgs, parse_config

    fleet = RunnerFleet(
        "arm",
        RunnerFleetArgs(
            config=parse_config(
                FleetSettings(githubScope="my-org", fleetName="arm", architecture="arm64")
            ),
            github_app=GithubAppSecrets(app_id=..., private_key=..., webhook_secret=...),
            # githubMode scaleSet: no webhook secret (webhook_secret=None)
        ),
    )

The names load lazily, so `import infra.config` stays free of the AWS provider.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.config import (
        ConfigError,
        FleetConfig,
        FleetSettings,
        GithubAppSecrets,
        parse_config,
        read_config,
    )
    from infra.fleet import RunnerFleet, RunnerFleetArgs

_PUBLIC = {
    "ConfigError": "infra.config",
    "FleetConfig": "infra.config",
    "FleetSettings": "infra.config",
    "GithubAppSecrets": "infra.config",
    "parse_config": "infra.config",
    "read_config": "infra.config",
    "RunnerFleet": "infra.fleet",
    "RunnerFleetArgs": "infra.fleet",
}
__all__ = [
    "ConfigError",
    "FleetConfig",
    "FleetSettings",
    "GithubAppSecrets",
    "RunnerFleet",
    "RunnerFleetArgs",
    "parse_config",
    "read_config",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'infra' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
