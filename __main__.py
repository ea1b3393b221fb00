"""Pulumi program: stack config -> RunnerFleet -> stack outputs (see docs/deploy-aws.md)."""

import pulumi

from infra.config import read_config
from infra.fleet import RunnerFleet, RunnerFleetArgs

settings, github_app = read_config()
fleet = RunnerFleet(settings.fleet_name, RunnerFleetArgs(config=settings, github_app=github_app))
for key, value in fleet.outputs.items():
    pulumi.export(key, value)
