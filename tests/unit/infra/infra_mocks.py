"""Mocks and helpers of the infra tests (conftest.py installs the mocks).

Imports nothing from infra: conftest.py must install the mocks before infra is imported.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor

PROJECT_ROOT = Path(__file__).resolve().parents[3]

PROJECT = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())["name"]
ACCOUNT = "123456789012"
REGION = "eu-west-1"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
# The KMS key the mocks create for the fleet.
KMS_KEY_ID = "0f0e0d0c-1111-2222-3333-444455556666"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KMS_KEY_ID}"

# What EC2 answers for an instance type (aws.ec2.get_instance_type): its architectures and
# how it is sold. Any other name is unknown to EC2, as a typo would be.
INSTANCE_TYPES: dict[str, tuple[list[str], list[str]]] = {
    "m7i.xlarge": (["x86_64"], ["on-demand", "spot"]),
    "m6i.xlarge": (["x86_64"], ["on-demand", "spot"]),
    "m6a.xlarge": (["x86_64"], ["on-demand", "spot"]),
    "c7i.large": (["x86_64"], ["on-demand", "spot"]),
    "t3.large": (["x86_64"], ["on-demand", "spot"]),
    "m5.large": (["i386", "x86_64"], ["on-demand", "spot"]),
    "m7g.xlarge": (["arm64"], ["on-demand", "spot"]),
    "m6g.xlarge": (["arm64"], ["on-demand", "spot"]),
    "m8g.xlarge": (["arm64"], ["on-demand", "spot"]),
    # A family this program has no list entry for: accepted because EC2 knows it.
    "m9gd.2xlarge": (["arm64"], ["on-demand", "spot"]),
    # Sold on demand only.
    "u7i-6tb.112xlarge": (["x86_64"], ["on-demand"]),
}

# The GitHub App secrets, with recognisable values: tests assert they show up nowhere but in
# the SSM parameters.
SECRETS = {
    "githubAppId": "SECRET-APP-ID-4242",
    "githubAppPrivateKey": "-----BEGIN RSA PRIVATE KEY-----\nSECRET-PEM-BODY-7f3a\n-----END",
    "githubWebhookSecret": "SECRET-WEBHOOK-9c1e",
}


@dataclasses.dataclass(frozen=True)
class Registration:
    """One RegisterResource request as the engine gets it: the URN and the URNs it depends on
    (explicit `depends_on`, expanded to a component's children, plus property dependencies).
    The engine creates a resource after its dependencies and deletes it before them."""

    urn: str
    typ: str
    name: str
    custom: bool
    parent: str
    dependencies: frozenset[str]
    ignore_changes: tuple[str, ...] = ()


class FleetMonitor(MockMonitor):
    """The mock engine, also recording each registration's dependencies, in arrival order."""

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        dependencies = set(request.dependencies)
        for urns in request.propertyDependencies.values():
            dependencies.update(urns.urns)
        self.mocks.registrations.append(
            Registration(
                urn=response.urn,
                typ=request.type,
                name=request.name,
                custom=bool(request.custom),
                parent=request.parent,
                dependencies=frozenset(dependencies),
                ignore_changes=tuple(request.ignoreChanges),
            )
        )
        return response


class FleetMocks(pulumi.runtime.Mocks):
    """Records registered resources and answers the invokes the program makes."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.registrations: list[Registration] = []
        self.calls: list[pulumi.runtime.MockCallArgs] = []
        self.image_architecture: str | None = None

    def reset(self) -> None:
        self.resources.clear()
        self.registrations.clear()
        self.calls.clear()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources.append(args)
        state = dict(args.inputs)
        resource_id = f"{args.name}-id"
        arn = f"arn:aws:mock:{REGION}:{ACCOUNT}:{args.typ}/{args.name}"
        if args.typ == "aws:kms/key:Key":
            resource_id, arn = KMS_KEY_ID, KMS_KEY_ARN
            state["keyId"] = resource_id
        elif args.typ == "aws:s3/bucket:Bucket":
            resource_id = state.setdefault("bucket", f"{args.name}-a1b2c3d")
            arn = f"arn:aws:s3:::{resource_id}"
        elif args.typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            state.setdefault("name", f"{args.name}-a1b2c3d")
            kind = "role" if args.typ.endswith("Role") else "instance-profile"
            arn = f"arn:aws:iam::{ACCOUNT}:{kind}/{state['name']}"
        elif args.typ == "aws:ssm/parameter:Parameter":
            arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{state['name']}"
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            resource_id = "lt-0123456789abcdef0"
            state["latestVersion"] = 1
        elif args.typ == "aws:sqs/queue:Queue":
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{state['name']}"
            resource_id = state["url"] = (
                f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{state['name']}"
            )
        elif args.typ == "aws:dynamodb/table:Table":
            arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{state['name']}"
        elif args.typ == "aws:lambda/function:Function":
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{state['name']}"
        elif args.typ == "aws:lambda/functionUrl:FunctionUrl":
            state["functionUrl"] = "https://abcdefghij.lambda-url.eu-west-1.on.aws/"
        elif args.typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
            arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{state['name']}"
        elif args.typ == "aws:cloudwatch/eventRule:EventRule":
            state.setdefault("name", f"{args.name}-a1b2c3d")  # autonamed, as AWS answers
            arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{args.name}"
        elif args.typ.startswith("aws:imagebuilder/"):
            # As Image Builder writes them: kind/<lowercase name>[/<version>[/<build>]].
            kind, suffix = IMAGE_BUILDER_ARNS[args.typ]
            arn = (
                f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:{kind}/{state['name'].lower()}"
                + suffix.format(**state)
            )
        elif args.typ == "aws:autoscaling/group:Group":
            arn = (
                f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:"
                f"0000-1111:autoScalingGroupName/{state['name']}"
            )
        state.setdefault("arn", arn)
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        self.calls.append(args)
        if args.token == "aws:ec2/getAmi:getAmi":
            filters = {f["name"]: f["values"] for f in args.args.get("filters", [])}
            image_id = filters.get("image-id", ["ami-0123456789abcdef0"])[0]
            arch = self.image_architecture or filters.get("architecture", ["x86_64"])[0]
            return {
                "id": image_id,
                "imageId": image_id,
                "architecture": arch,
                "rootDeviceName": "/dev/xvda",
                "name": "debian-13-amd64-20261101-1000",
            }
        if args.token == "aws:ec2/getInstanceType:getInstanceType":
            name = args.args["instanceType"]
            if name not in INSTANCE_TYPES:
                return {}, [("instanceType", f"reading EC2 Instance Type ({name}): empty result")]
            architectures, usages = INSTANCE_TYPES[name]
            return {
                "id": name,
                "instanceType": name,
                "supportedArchitectures": architectures,
                "supportedUsagesClasses": usages,
            }
        if args.token == "aws:index/getPartition:getPartition":
            return {"id": "aws", "partition": "aws", "dnsSuffix": "amazonaws.com"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "id": ACCOUNT,
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
                "userId": "AIDAEXAMPLE",
            }
        if args.token == "aws:index/getRegion:getRegion":
            return {"id": REGION, "region": REGION, "name": REGION}
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"id": REGION, "names": ZONES, "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"]}
        if args.token == "aws:ec2/getSubnet:getSubnet":
            return {"id": args.args["id"], "vpcId": "vpc-0existing0000000"}
        raise AssertionError(f"unexpected invoke {args.token}")


# Image Builder resource types: the ARN's resource kind and what follows the name.
IMAGE_BUILDER_ARNS = {
    "aws:imagebuilder/component:Component": ("component", "/{version}/1"),
    "aws:imagebuilder/imageRecipe:ImageRecipe": ("image-recipe", "/{version}"),
    "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration": (
        "infrastructure-configuration",
        "",
    ),
    "aws:imagebuilder/distributionConfiguration:DistributionConfiguration": (
        "distribution-configuration",
        "",
    ),
    "aws:imagebuilder/imagePipeline:ImagePipeline": ("image-pipeline", ""),
    "aws:imagebuilder/lifecyclePolicy:LifecyclePolicy": ("lifecycle-policy", ""),
}


def example_settings() -> dict[str, Any]:
    """The runner-fleet settings of Pulumi.example.yaml, as plain values (a fresh copy: the
    caller may change it)."""
    return copy.deepcopy(_example_settings())


@functools.cache
def _example_settings() -> dict[str, Any]:
    # Parsed once per process: the file is long (every key documented), and tests ask for it
    # dozens of times.
    document = yaml.safe_load((PROJECT_ROOT / "Pulumi.example.yaml").read_text())
    prefix = f"{PROJECT}:"
    return {
        key[len(prefix) :]: value
        for key, value in document["config"].items()
        if key.startswith(prefix)
    }


def set_stack_config(
    settings: dict[str, Any],
    secrets: dict[str, str] | None = SECRETS,
    secret_keys: list[str] | None = None,
) -> None:
    """Replace the whole stack config the way the Pulumi CLI hands it over (strings, JSON)."""
    config = {
        f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in settings.items()
    }
    secrets = secrets or {}
    config.update({f"{PROJECT}:{key}": value for key, value in secrets.items()})
    if secret_keys is None:  # as `pulumi config set --secret` marks them
        secret_keys = [f"{PROJECT}:{key}" for key in secrets]
    pulumi.runtime.set_all_config(config, secret_keys)


@dataclasses.dataclass
class Graph:
    """Resources one program run registered, its resolved stack outputs, and the invokes it
    made (data sources: the AMI and instance type lookups)."""

    resources: list[pulumi.runtime.MockResourceArgs]
    outputs: dict[str, Any]
    fleet: Any
    registrations: list[Registration] = dataclasses.field(default_factory=list)
    calls: list[pulumi.runtime.MockCallArgs] = dataclasses.field(default_factory=list)

    def registration(self, typ: str, name: str) -> Registration:
        return next(r for r in self.registrations if r.typ == typ and r.name == name)

    def descendants(self, urn: str) -> list[Registration]:
        """Custom resources anywhere below the resource `urn` (its children, theirs, ...)."""
        below = {urn}
        found = []
        for r in self.registrations:  # parents register before their children
            if r.parent in below:
                below.add(r.urn)
                if r.custom:
                    found.append(r)
        return found

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> dict[str, Any]:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, found {len(found)}"
        return found[0].inputs

    def named(self, typ: str, name: str) -> dict[str, Any]:
        return next(r.inputs for r in self.of_type(typ) if r.name == name)

    def counts(self, custom: bool = True) -> collections.Counter[str]:
        return collections.Counter(r.typ for r in self.resources if bool(r.custom) == custom)


MOCKS = FleetMocks()
MONITOR = FleetMonitor(MOCKS)


def run_program(build_dir: Path, project_root: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Run the program as __main__.py does (read_config -> RunnerFleet) against the mocks
    already installed and the stack config already set; returns the fleet and its resolved
    stack outputs. infra is imported here, after the mocks."""
    from infra.config import read_config
    from infra.fleet import RunnerFleet, RunnerFleetArgs

    resolved: dict[str, Any] = {}
    holder: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        fleet_config, github_app = read_config()
        fleet = RunnerFleet(
            fleet_config.fleet_name,
            RunnerFleetArgs(
                config=fleet_config,
                github_app=github_app,
                project_root=project_root,
                build_dir=build_dir,
            ),
        )
        holder["fleet"] = fleet
        keys = list(fleet.outputs)
        return pulumi.Output.all(*[fleet.outputs[key] for key in keys]).apply(
            lambda values: resolved.update(zip(keys, values, strict=True))
        )

    program()
    return holder["fleet"], resolved


def make_project(root: Path) -> Path:
    """A stand-in project under ``root``: playbooks/ with the two entry points the boot script
    runs, and the canary suite the bake installs (tests/canary/). Returns playbooks/."""
    canary = root / "tests" / "canary"
    canary.mkdir(parents=True)
    (canary / "test_canary.py").write_text("def test_runs():\n    pass\n")
    (canary / "__pycache__").mkdir()
    (canary / "__pycache__" / "test_canary.cpython-311.pyc").write_bytes(b"never shipped")
    directory = root / "playbooks"
    (directory / "roles" / "docker_host" / "tasks").mkdir(parents=True)
    (directory / "bake.yml").write_text("- hosts: runners\n  roles: [docker_host]\n")
    (directory / "boot.yml").write_text("- hosts: runners\n  tasks: []\n")
    (directory / "roles" / "docker_host" / "tasks" / "main.yml").write_text("[]\n")
    return directory


def fake_pip_install(calls: list[tuple[str, ...]]):
    def install(requirements, target: Path, platform: str, python: str) -> None:
        calls.append((*requirements, platform, python))
        (target / "fake_dependency").mkdir(parents=True, exist_ok=True)
        (target / "fake_dependency" / "__init__.py").write_text("VERSION = '1.0'\n")

    return install
