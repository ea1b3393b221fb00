"""Stack configuration: defaults, every rejected value with its message, the Pulumi reader.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import re

import pulumi
import pytest
import yaml
from infra_mocks import PROJECT, PROJECT_ROOT, SECRETS, example_settings, set_stack_config

from infra.config import KEYS, SECRET_KEYS, ConfigError, parse_config, read_config

pytestmark = pytest.mark.unit

MINIMAL = {"githubScope": "my-org"}


def test_defaults_are_the_safe_choices():
    cfg = parse_config(MINIMAL)
    assert cfg.runner_group_allows_public_repositories is False  # property 9
    assert cfg.associate_public_ip is False
    assert cfg.spot_percentage == 0
    assert cfg.runner_group == "runner-fleet"
    assert cfg.runner_labels == ("self-hosted", "linux", "dind")
    assert (cfg.job_timeout_minutes, cfg.max_runner_lifetime_minutes) == (180, 360)
    assert cfg.creates_vpc and cfg.vpc_cidr == "10.64.0.0/16"
    assert cfg.kms_key_arn is None  # a key of its own is created
    assert cfg.instance_types == ("m7i.xlarge", "m6i.xlarge", "m6a.xlarge")


def test_example_stack_file_is_valid_and_matches_the_defaults():
    settings = example_settings()
    # One deliberate choice beyond the defaults: the newest runner agent in every bake.
    assert parse_config(settings) == parse_config(
        {
            "githubScope": "my-org",
            "tags": {"team": "ci-platform"},
            "runnerVars": {"actions_runner_version": "latest"},
        }
    )


def test_example_stack_file_documents_every_setting_and_no_other():
    text = (PROJECT_ROOT / "Pulumi.example.yaml").read_text()
    mentioned = set(re.findall(rf"{PROJECT}:([A-Za-z]+)", text))
    assert mentioned == set(KEYS) | set(SECRET_KEYS)


def test_the_deploy_guide_gives_every_setting_with_its_real_default():
    """docs/deploy-aws.md's settings reference: one row per key, and the default it states is
    what a config that leaves the key out gets."""
    text = (PROJECT_ROOT / "docs" / "deploy-aws.md").read_text()
    section = text.split("#### Settings reference", 1)[1].split("\n| key |", 1)[1]
    table = section.split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {}
    for row in rows:
        key, default = (cell.strip() for cell in row.strip("|").split("|")[:2])
        documented[key.strip("`")] = default
    assert sorted(documented) == sorted(KEYS)
    cfg = parse_config(MINIMAL)
    by_alias = {field.alias: name for name, field in type(cfg).model_fields.items()}
    for key, default in documented.items():
        actual = getattr(cfg, by_alias[key])
        if default.startswith(("none", "required")):
            assert not actual or key == "githubScope", key
            continue
        stated = yaml.safe_load(re.search(r"`([^`]*)`", default).group(1))
        assert stated == (list(actual) if isinstance(actual, tuple) else actual), key


def test_repository_scope_uses_the_default_group():
    cfg = parse_config({"githubScope": "octo-org/octo-repo"})
    assert (cfg.github_scope, cfg.runner_group) == ("octo-org/octo-repo", "Default")


def test_arm64_gets_arm64_default_types():
    cfg = parse_config({**MINIMAL, "architecture": "arm64"})
    assert cfg.instance_types == ("m7g.xlarge", "m6g.xlarge", "m8g.xlarge")


def test_derived_names_agree_with_each_other():
    cfg = parse_config({**MINIMAL, "fleetName": "gpu", "ssmParameterPrefix": "ci/runners"})
    assert cfg.parameter_root == "/ci/runners/gpu"
    assert cfg.jit_parameter_template.format(instance_id="i-1") == (
        "/ci/runners/gpu/runners/i-1/jitconfig"
    )
    assert cfg.asg_name == "ci-runners-gpu"
    assert cfg.launch_hook_name == "ci-runners-gpu-launch"
    assert set(cfg.github_app_parameter_names.values()) == {
        "/ci/runners/gpu/github-app/app-id",
        "/ci/runners/gpu/github-app/private-key",
        "/ci/runners/gpu/github-app/webhook-secret",
    }


@pytest.mark.parametrize(
    ("lifetime_minutes", "backstop_seconds"),
    [(360, 86_400), (1380, 86_400), (1440, 172_800), (2000, 172_800), (364 * 1440, 31_536_000)],
)
def test_group_lifetime_is_a_whole_day_backstop_beyond_the_reaper(
    lifetime_minutes, backstop_seconds
):
    cfg = parse_config({**MINIMAL, "maxRunnerLifetimeMinutes": lifetime_minutes})
    assert cfg.asg_max_instance_lifetime_seconds == backstop_seconds
    assert cfg.asg_max_instance_lifetime_seconds > lifetime_minutes * 60


BAD = [
    ({"maxSize": 2, "minSize": 3}, "maxSize", "below minSize"),
    ({"maxSize": 0}, "maxSize", "outside 1-1000"),
    ({"warmIdle": 11}, "warmIdle", "exceeds maxSize"),
    ({"onDemandBaseCapacity": 20}, "onDemandBaseCapacity", "exceeds maxSize"),
    (
        {"maxRunnerLifetimeMinutes": 120},
        "maxRunnerLifetimeMinutes",
        "must be at least jobTimeoutMinutes + registrationTimeoutMinutes",
    ),
    ({"jobTimeoutMinutes": 400}, "maxRunnerLifetimeMinutes", "mid-job"),
    # Existence and architecture are EC2's answer at preview (test_infra_names.py).
    ({"instanceTypes": ["m7i"]}, "instanceTypes", "'m7i' is not an instance type: use family.size"),
    ({"architecture": "aarch64"}, "architecture", "not one of x86_64, arm64"),
    ({"instanceTypes": []}, "instanceTypes", "is empty"),
    ({"instanceTypes": ["m7i.xlarge", "m7i.xlarge"]}, "instanceTypes", "twice"),
    ({"spotPercentage": 101}, "spotPercentage", "outside 0-100"),
    ({"spotPercentage": -1}, "spotPercentage", "outside 0-100"),
    ({"spotPercentage": "half"}, "spotPercentage", "expected a whole number"),
    ({"spotAllocationStrategy": "cheapest"}, "spotAllocationStrategy", "not one of"),
    (
        {"vpcCidr": "10.0.0.0/16", "subnetIds": ["subnet-0123abcd"]},
        "vpcCidr",
        "both vpcCidr and subnetIds",
    ),
    ({"vpcCidr": "10.0.0.1/16"}, "vpcCidr", "not an IPv4 network"),
    ({"vpcCidr": "10.0.0.0/28"}, "vpcCidr", "between /16 and /24"),
    ({"vpcCidr": "172.16.0.0/12"}, "vpcCidr", "overlaps 172.17.0.0/16"),
    ({"subnetIds": ["sn-123"]}, "subnetIds", "not a subnet id"),
    ({"subnetIds": []}, "subnetIds", "is empty"),
    (
        {"subnetIds": ["subnet-0123abcd"], "availabilityZoneCount": 3},
        "availabilityZoneCount",
        "only applies to the VPC this program creates",
    ),
    ({"associatePublicIp": True}, "associatePublicIp", "private subnets behind NAT"),
    ({"githubScope": "https://github.com/my-org"}, "githubScope", "neither an organisation"),
    ({"githubScope": "my-org/"}, "githubScope", "neither an organisation"),
    ({"githubScope": "a/b/c"}, "githubScope", "neither an organisation"),
    ({"githubScope": "-org"}, "githubScope", "neither an organisation"),
    ({"githubScope": None}, "githubScope", "is required"),
    ({"runnerLabels": []}, "runnerLabels", "is empty"),
    ({"runnerLabels": ["self hosted"]}, "runnerLabels", "label 'self hosted' is invalid"),
    ({"runnerLabels": ["linux", "Linux"]}, "runnerLabels", "case-insensitively"),
    ({"runnerLabels": "linux"}, "runnerLabels", "expected a list of strings"),
    (
        {"githubScope": "octo/repo", "runnerGroup": "ci"},
        "runnerGroup",
        "runner groups exist only for organisations",
    ),
    (
        {"warmPoolSize": 2, "spotPercentage": 50, "imagePipeline": False},
        "warmPoolSize",
        "mixed instances policy",
    ),
    ({"warmPoolSize": 2, "imagePipeline": False}, "warmPoolSize", "single instanceTypes entry"),
    (
        {"warmPoolSize": 1, "instanceTypes": ["m7i.xlarge"]},
        "warmPoolSize",
        "AWS Auto Scaling does not support warm pools with such a launch template: set "
        "warmPoolSize to 0, or turn the pipeline off for a warm pool (pulumi config set "
        "imagePipeline false)",
    ),
    ({"imagePipeline": "weekly"}, "imagePipeline", "expected true or false"),
    (
        {"imagePipelineSchedule": "cron(0 4 * * *)"},
        "imagePipelineSchedule",
        "'cron(0 4 * * *)' has 5 fields separated by single spaces; Image Builder takes six: "
        "minute hour day-of-month month day-of-week year; for example weekly on Sunday at "
        "04:00 UTC: pulumi config set imagePipelineSchedule 'cron(0 4 ? * sun *)'",
    ),
    ({"imagePipelineSchedule": "0 4 ? * sun *"}, "imagePipelineSchedule", "not a cron(...)"),
    (
        {"imagePipelineSchedule": "cron(0 4 * * sun *)"},
        "imagePipelineSchedule",
        "? in exactly one of day-of-month and day-of-week",
    ),
    (
        {"imagePipelineSchedule": "cron(0 24 ? * sun *)"},
        "imagePipelineSchedule",
        "invalid hour field '24' (values 0-23)",
    ),
    (
        {"imagePipelineSchedule": "cron(0 4 ? * sunday *)"},
        "imagePipelineSchedule",
        "invalid day-of-week field 'sunday' (values 1-7 or sun-sat)",
    ),
    (
        {"imagePipelineSchedule": "cron(0 4 ? * sun 2300)"},
        "imagePipelineSchedule",
        "invalid year field '2300' (values 1970-2199)",
    ),
    ({"warmPoolState": "Frozen"}, "warmPoolState", "not one of"),
    ({"bakedImage": True}, "bakedImage", "set amiId"),
    ({"amiId": "ubuntu-24.04"}, "amiId", "expected ami-"),
    ({"amiFamily": "centos-7"}, "amiFamily", "not one of"),
    ({"dockerVolumeGiB": 30}, "dockerVolumeGiB", "equals rootVolumeGiB"),
    ({"rootVolumeGiB": 4}, "rootVolumeGiB", "outside 8-16384"),
    ({"kmsKeyArn": "alias/runner-fleet"}, "kmsKeyArn", "not an alias"),
    ({"ssmParameterPrefix": "aws/runners"}, "ssmParameterPrefix", "reserves paths"),
    ({"ssmParameterPrefix": "/runners/"}, "ssmParameterPrefix", "no leading or trailing"),
    ({"ssmParameterPrefix": "ci.runners"}, "ssmParameterPrefix", "has a '.': the prefix also"),
    (
        {"ssmParameterPrefix": "p" * 40, "fleetName": "f" * 24},
        "ssmParameterPrefix",
        f"the Lambda function name '{'p' * 40}-{'f' * 24}-lifecycle' is 75 characters; AWS "
        "allows 1-64: shorten ssmParameterPrefix (or fleetName) by at least 11 characters",
    ),
    (
        {"ssmParameterPrefix": "/".join("abcdefghijkl")},
        "ssmParameterPrefix",
        "is 16 levels deep; SSM allows 15: use fewer '/'-separated segments in "
        "ssmParameterPrefix (at most 11",
    ),
    ({"fleetName": "Main_Fleet"}, "fleetName", "lowercase letters"),
    (
        {"runnerLabels": [f"label-{i:03}-" + "x" * 80 for i in range(30)]},
        "runnerLabels",
        "limits to 4096 bytes with everything else; keep them under 2048 characters",
    ),
    ({"tags": {"team": "ci#platform"}}, "tags", "letters, digits, spaces and _ . : / = + - @"),
    ({"tags": {"owner": "aws:me"}}, "tags", "AWS reserves values starting with 'aws:'"),
    ({"tags": {"aws:owner": "me"}}, "tags", "may not start with 'aws:'"),
    ({"tags": {"runner-fleet": "x"}}, "tags", "set by the program"),
    ({"tags": ["team"]}, "tags", "expected a map"),
    ({"ssmVpcEndpoints": "yes"}, "ssmVpcEndpoints", "expected true or false"),
    ({"maxsize": 5}, "maxsize", "did you mean maxSize"),
    ({"githubAppPrivateKey": "pem"}, "githubAppPrivateKey", "is a secret"),
]


@pytest.mark.parametrize(
    ("overrides", "key", "message"), BAD, ids=[f"{key}:{message}" for _, key, message in BAD]
)
def test_bad_setting_is_rejected_naming_the_key_and_the_fix(overrides, key, message):
    with pytest.raises(ConfigError) as raised:
        parse_config({**MINIMAL, **overrides})
    assert any(k == key and message in text for k, text in raised.value.problems), (
        raised.value.problems
    )
    assert f"{PROJECT}:{key}: " in str(raised.value)


def test_the_image_pipeline_is_on_by_default_and_bakes_weekly():
    cfg = parse_config(MINIMAL)
    assert cfg.image_pipeline is True
    assert cfg.image_pipeline_schedule == "cron(0 4 ? * sun *)"  # Sundays, 04:00 UTC
    # Where Image Builder's service-linked role may write: /imagebuilder/...
    assert cfg.image_parameter_name == "/imagebuilder/runner-fleet/main/image-id"
    assert cfg.image_parameter_name in cfg.parameter_names
    assert (
        "/imagebuilder/runner-fleet/main/image-id"
        not in parse_config({**MINIMAL, "imagePipeline": False}).parameter_names
    )


@pytest.mark.parametrize(
    "schedule",
    [
        "cron(0 0 * * ? *)",  # daily at midnight (the provider's example)
        "cron(30 2 ? * mon-fri *)",
        "cron(0 7 ? * MON *)",
        "cron(*/30 0-6 ? * 1,7 *)",
        "cron(0 10 ? * 2#2 *)",  # the second Monday
        "cron(0 10 ? * 6L *)",  # the last Friday
        "cron(0 10 L * ? *)",  # the last day of the month
        "cron(0 10 15W jan-mar ? 2027-2030)",
    ],
)
def test_image_builder_cron_expressions_are_accepted(schedule):
    assert parse_config({**MINIMAL, "imagePipelineSchedule": schedule}).image_pipeline_schedule == (
        schedule
    )


def test_a_warm_pool_needs_the_pipeline_off():
    cfg = parse_config(
        {**MINIMAL, "warmPoolSize": 1, "instanceTypes": ["m7i.xlarge"], "imagePipeline": False}
    )
    assert (cfg.warm_pool_size, cfg.image_pipeline) == (1, False)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        parse_config({"githubScope": "x/y/z", "spotPercentage": 300, "maxSize": 0})
    assert {key for key, _ in raised.value.problems} == {"githubScope", "spotPercentage", "maxSize"}


def _read():
    """read_config under the mocks (no resource is involved)."""
    return read_config(pulumi.Config(PROJECT))


def test_reader_decodes_values_the_way_the_cli_hands_them_over():
    set_stack_config(
        {
            "githubScope": "my-org",
            "maxSize": 25,
            "runnerLabels": ["a", "b"],
            "ssmVpcEndpoints": True,
            "tags": {"k": "v"},
            "imagePipelineSchedule": "cron(0 3 ? * sat *)",  # a string, not JSON
        }
    )
    cfg, secrets = _read()
    assert (cfg.max_size, cfg.runner_labels, cfg.ssm_vpc_endpoints, dict(cfg.tags)) == (
        25,
        ("a", "b"),
        True,
        {"k": "v"},
    )
    assert cfg.image_pipeline_schedule == "cron(0 3 ? * sat *)"
    assert isinstance(secrets.private_key, pulumi.Output)


@pulumi.runtime.test
def test_reader_keeps_the_app_secrets_secret_outputs():
    set_stack_config(MINIMAL)
    _, secrets = _read()
    outputs = [secrets.app_id, secrets.private_key, secrets.webhook_secret]

    def check(flags_and_values):
        flags, values = flags_and_values[:3], flags_and_values[3:]
        assert flags == [True, True, True]
        assert values == [
            SECRETS["githubAppId"],
            SECRETS["githubAppPrivateKey"],
            SECRETS["githubWebhookSecret"],
        ]

    flags = [pulumi.Output.from_input(o.is_secret()) for o in outputs]
    return pulumi.Output.all(*flags, *outputs).apply(check)


def test_reader_requires_each_secret_and_says_how_to_set_it():
    set_stack_config(MINIMAL, secrets={"githubAppId": "1"})
    with pytest.raises(ConfigError) as raised:
        _read()
    assert "pulumi config set --secret githubAppPrivateKey" in str(raised.value)
    assert "pulumi config set --secret githubWebhookSecret" in str(raised.value)


def test_reader_rejects_a_secret_stored_in_plain_text():
    set_stack_config(
        MINIMAL, secret_keys=[f"{PROJECT}:githubAppId", f"{PROJECT}:githubWebhookSecret"]
    )
    with pytest.raises(ConfigError, match="githubAppPrivateKey: is stored in plain text"):
        _read()


def test_reader_reports_undecodable_values_with_the_key():
    set_stack_config(MINIMAL)
    pulumi.runtime.set_config(f"{PROJECT}:maxSize", "ten")
    with pytest.raises(ConfigError, match=f"{PROJECT}:maxSize: 'ten' is not a number"):
        _read()
