"""The stack settings as a TypedDict, for programs that build fleets in code and want their
type checker to know the keys (`parse_config(FleetSettings(githubScope="my-org"))`).

The model (``stack.FleetConfig``) is the one definition of the keys, rules and defaults; this
is its shape for callers, and tests/unit/infra/test_infra_library.py keeps the two equal.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


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
    githubMode: Literal["webhook", "scaleSet"]
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
    imageRetention: int
    rootVolumeGiB: int
    dockerVolumeGiB: int
    kmsKeyArn: str
    ebsKmsKeyArn: str
    ssmParameterPrefix: str
    tags: dict[str, str]
    runnerVars: dict[str, Any]
