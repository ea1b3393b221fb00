"""RunnerFleet used from another Pulumi program: the public names, typed settings, and the
two-fleet example (examples/two-fleets) run under the mocks."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import typing
from collections import Counter

import pulumi
import pytest
from infra_mocks import MOCKS, PROJECT, PROJECT_ROOT, fake_pip_install, make_project

import infra
from infra.config import KEYS, FleetSettings, GithubAppSecrets, parse_config
from infra.fleet import RunnerFleet, RunnerFleetArgs

pytestmark = pytest.mark.unit

EXAMPLE = PROJECT_ROOT / "examples" / "two-fleets"
APPS = {
    fleet: {
        "githubAppId": f"APP-ID-{fleet}",
        "githubAppPrivateKey": f"-----BEGIN RSA PRIVATE KEY-----\nPEM-{fleet}\n-----END",
        "githubWebhookSecret": f"WEBHOOK-{fleet}",
    }
    for fleet in ("x64", "arm64")
}
# Types with an explicit AWS name, which must be unique in an account and region.
NAMED = (
    "aws:autoscaling/group:Group",
    "aws:lambda/function:Function",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:sqs/queue:Queue",
    "aws:dynamodb/table:Table",
    "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:kms/alias:Alias",
    "aws:ssm/parameter:Parameter",
)


def _set_example_config() -> None:
    config = {f"{PROJECT}:githubScope": "my-org"}
    secret_keys = []
    for fleet, secrets in APPS.items():
        for key, value in secrets.items():
            config[f"{fleet}:{key}"] = value
            secret_keys.append(f"{fleet}:{key}")
    pulumi.runtime.set_all_config(config, secret_keys)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """Run examples/two-fleets/__main__.py under the mocks, once for this module's tests (they
    only read it): its fleets, what it exported, and what the mocks recorded."""
    _set_example_config()
    root = tmp_path_factory.mktemp("two-fleets")
    make_project(root)
    exported: dict[str, dict] = {}
    holder: dict = {}

    @pulumi.runtime.test
    def program():
        namespace = runpy.run_path(str(EXAMPLE / "__main__.py"))
        holder["fleets"] = namespace["fleets"]
        names = sorted(exported)
        keys = {name: sorted(exported[name]) for name in names}
        flat = [exported[name][key] for name in names for key in keys[name]]

        def resolve(values):
            values = iter(values)
            holder["outputs"] = {name: {k: next(values) for k in keys[name]} for name in names}

        return pulumi.Output.all(*flat).apply(resolve)

    with pytest.MonkeyPatch.context() as patch:
        # The checkout's playbooks as the example would find them (a stand-in project here).
        patch.setattr("infra.fleet.PROJECT_ROOT", root)
        patch.setattr("infra.lambda_package.pip_install", fake_pip_install([]))
        patch.setattr(pulumi, "export", lambda name, value: exported.__setitem__(name, value))
        MOCKS.reset()
        MOCKS.image_architecture = None
        program()
    ran = (
        holder["fleets"],
        holder["outputs"],
        list(MOCKS.resources),
        list(MOCKS.registrations),
        list(MOCKS.calls),
    )
    MOCKS.reset()
    return ran


def test_the_public_names_are_importable_from_infra():
    assert infra.RunnerFleet is RunnerFleet
    assert infra.RunnerFleetArgs is RunnerFleetArgs
    assert infra.FleetSettings is FleetSettings
    assert infra.parse_config is parse_config
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = infra.Nope


def test_importing_the_settings_does_not_load_the_aws_provider():
    code = "import sys, infra.config; print('pulumi_aws' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"


def test_typed_settings_cover_every_stack_setting():
    hints = typing.get_type_hints(FleetSettings)
    assert set(hints) == set(KEYS)
    assert FleetSettings.__required_keys__ == {"githubScope"}
    # What the type says is what parse_config accepts.
    assert typing.get_args(hints["architecture"]) == ("x86_64", "arm64")


def test_the_example_builds_two_complete_fleets(example):
    fleets, outputs, resources, _, _ = example
    assert set(fleets) == set(outputs) == {"x64", "arm64"}
    per_type = Counter(r.typ for r in resources if r.custom)
    assert per_type["aws:autoscaling/group:Group"] == 2
    assert per_type["aws:lambda/function:Function"] == 10  # 4 + the bake function, each
    assert per_type["aws:imagebuilder/imagePipeline:ImagePipeline"] == 2
    assert outputs["x64"]["autoscalingGroupName"] == "runner-fleet-x64"
    assert outputs["arm64"]["autoscalingGroupName"] == "runner-fleet-arm64"
    assert outputs["x64"]["webhookUrl"] and outputs["arm64"]["webhookUrl"]
    assert outputs["arm64"]["inventoryFilters"]["tag:runner-fleet"] == "arm64"


def test_the_example_fleets_differ_in_architecture_and_labels(example):
    fleets, _, resources, _, calls = example
    x64, arm64 = fleets["x64"], fleets["arm64"]
    assert x64.control_plane.settings["runner_labels"] == ["self-hosted", "linux", "dind"]
    assert arm64.control_plane.settings["runner_labels"] == ["self-hosted", "linux", "arm64"]
    groups = {r.name: r.inputs for r in resources if r.typ == "aws:autoscaling/group:Group"}

    def types(group):
        overrides = group["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
        return [o["instanceType"] for o in overrides]

    assert types(groups["x64-group-asg"]) == ["m7i.xlarge", "m6i.xlarge", "m6a.xlarge"]
    assert types(groups["arm64-group-asg"]) == ["m7g.xlarge", "m6g.xlarge", "m8g.xlarge"]
    architectures = {
        c.args["filters"][1]["values"][0] for c in calls if c.token == "aws:ec2/getAmi:getAmi"
    }
    assert architectures == {"x86_64", "arm64"}


def test_the_example_fleets_share_no_aws_name(example):
    _, _, resources, registrations, _ = example
    names = [r.inputs["name"] for r in resources if r.typ in NAMED]
    assert len(names) == len(set(names))
    urns = [r.urn for r in registrations]
    assert len(urns) == len(set(urns))


def test_each_example_fleet_keeps_its_own_app(example):
    _, _, resources, _, _ = example
    values = {
        r.inputs["name"]: json.dumps(r.inputs["value"])
        for r in resources
        if r.typ == "aws:ssm/parameter:Parameter" and "/github-app/" in r.inputs["name"]
    }
    for fleet, secrets in APPS.items():
        webhook_secret = values[f"/runner-fleet/{fleet}/github-app/webhook-secret"]
        assert secrets["githubWebhookSecret"] in webhook_secret


def test_each_example_group_waits_for_its_own_control_plane(example):
    _, _, _, registrations, _ = example
    by_name = {(r.typ, r.name): r for r in registrations}
    for fleet in ("x64", "arm64"):
        group = by_name[("aws:autoscaling/group:Group", f"{fleet}-group-asg")]
        function = by_name[("aws:lambda/function:Function", f"{fleet}-control-plane-lifecycle")]
        assert function.urn in group.dependencies
    other = by_name[("aws:lambda/function:Function", "arm64-control-plane-lifecycle")]
    assert other.urn not in by_name[("aws:autoscaling/group:Group", "x64-group-asg")].dependencies


@pytest.mark.parametrize("name", ["Platform Runners", "x", "a" * 25, "runners_x64"])
def test_a_component_name_aws_would_refuse_is_rejected_before_any_resource(name, mocks):
    args = RunnerFleetArgs(
        config=parse_config(FleetSettings(githubScope="my-org")),
        github_app=GithubAppSecrets(app_id="1", private_key="k", webhook_secret="w"),
    )
    with pytest.raises(ValueError, match=f"RunnerFleet name {name!r}: use 2-24 characters"):
        RunnerFleet(name, args)
    assert mocks.resources == []
