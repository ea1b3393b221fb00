"""Names AWS accepts, over the whole config space, and instance types as EC2 answers for them.

The rules below are written from the AWS API references (CreateFunction, CreateQueue,
CreateAlias, CreateTable, CreateLogGroup, PutMetricAlarm, PutLifecycleHook, PutParameter,
CreateAutoScalingGroup, Image Builder's Create* calls, the tagging pattern, the Lambda quotas
page), independently of
fleet/core/config. The property: any config parse_config accepts yields only names, tags and
function environments these rules accept. The graph tests tie the rule to what is deployed:
every explicit name the program sends is one the config derived.
"""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from infra_mocks import example_settings

from infra.config import ConfigError, FleetConfig, parse_config
from infra.control_plane import function_environment
from infra.fleet import control_plane_args

pytestmark = pytest.mark.unit

# kind of name -> (pattern, min length, max length), as the API references give them.
AWS_NAME_RULES = {
    "autoscaling_group": (r"[\u0020-\ud7ff\ue000-\ufffd]+", 1, 255),
    "lifecycle_hook": (r"[A-Za-z0-9\-_/]+", 1, 255),
    "function": (r"[a-zA-Z0-9\-_]+", 1, 64),
    "log_group": (r"[\.\-_/#A-Za-z0-9]+", 1, 512),
    "queue": (r"[A-Za-z0-9\-_]+", 1, 80),
    "table": (r"[a-zA-Z0-9_.\-]+", 3, 255),
    "alarm": (r"[^\x00-\x1f]+", 1, 255),
    "kms_alias": (r"alias/[a-zA-Z0-9/_\-]+", 1, 256),
    # CreateComponent, CreateImageRecipe, CreateInfrastructureConfiguration,
    # CreateDistributionConfiguration, CreateImagePipeline: name pattern.
    "image_builder": (r"[-_A-Za-z-0-9][-_A-Za-z0-9 ]{1,126}[-_A-Za-z-0-9]", 3, 128),
}
# SSM: the whole ARN (this prefix and the name) at most 1011 characters, 15 levels.
LONG_PARAMETER_ARN = "arn:aws-us-gov:ssm:ap-southeast-7:123456789012:parameter"
# Worst-case values the functions' environment gets from resources, not from the settings.
LONG_KMS_KEY_ARN = "arn:aws-us-gov:kms:ap-southeast-7:123456789012:key/mrk-" + "0" * 32
LONG_QUEUE_URL = "https://sqs.ap-southeast-7.amazonaws.com/123456789012/{name}"
# \p{L}\p{N} are \w here (which adds '_', allowed anyway); \p{Z} is spelled out.
TAG_TEXT = re.compile(r"[\w \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000_.:/=+\-@]*")


def aws_refuses(kind: str, name: str) -> bool:
    pattern, low, high = AWS_NAME_RULES[kind]
    if kind == "kms_alias" and name.startswith("alias/aws/"):
        return True
    return not (low <= len(name) <= high and re.fullmatch(pattern, name))


def ssm_refuses(name: str) -> bool:
    return (
        not re.fullmatch(r"(/[a-zA-Z0-9_.\-]+)+", name)
        or len(LONG_PARAMETER_ARN + name) > 1011
        or name.count("/") > 15
        or name.lstrip("/").lower().startswith(("aws", "ssm"))
    )


def tag_refused(key: str, value: str) -> bool:
    return (
        not 1 <= len(key) <= 128
        or len(value) > 256
        or key.lower().startswith("aws:")
        or value.lower().startswith("aws:")
        or not TAG_TEXT.fullmatch(key)
        or not TAG_TEXT.fullmatch(value)
    )


def worst_case_environment(cfg: FleetConfig) -> dict[str, str]:
    """The functions' environment the program writes for cfg, with the longest resource values."""
    args = control_plane_args(
        cfg,
        kms_key_arn=LONG_KMS_KEY_ARN,
        partition="aws-us-gov",
        region="ap-southeast-7",
        account_id="123456789012",
    )
    return function_environment(
        args,
        asg_name=cfg.asg_name,
        kms_key_arn=LONG_KMS_KEY_ARN,
        queue_url=LONG_QUEUE_URL.format(name=cfg.names.deliveries_queue),
        ledger_table=cfg.names.ledger_table,
        partition="aws-us-gov",
        account_id="123456789012",
    )


def environment_bytes(cfg: FleetConfig) -> int:
    variables = worst_case_environment(cfg)
    return len(json.dumps(variables, ensure_ascii=False).encode("utf-8"))


# The functions each githubMode deploys (infra/functions.py): scaleSet a listener, no webhook
# and no scaler (the listener runs its cycle).
MODE_FUNCTIONS = {
    "webhook": ("webhook", "scaler", "lifecycle", "reaper"),
    "scaleSet": ("listener", "lifecycle", "reaper"),
}


def assert_aws_accepts_everything(cfg: FleetConfig) -> None:
    for kind, name in cfg.names.every_name():
        assert not aws_refuses(kind, name), (kind, name)
    # ...and those names include every function the mode deploys (so each one was judged).
    functions = {name for kind, name in cfg.names.every_name() if kind == "function"}
    deployed = {f"{cfg.asg_name}-{fn}" for fn in MODE_FUNCTIONS[cfg.github_mode]}
    assert deployed <= functions, (deployed, functions)
    for name in cfg.parameter_names:
        assert not ssm_refuses(name), name
    for key, value in cfg.all_tags.items():
        assert not tag_refused(key, value), (key, value)
    assert environment_bytes(cfg) <= 4096


# A runner label: [A-Za-z0-9][A-Za-z0-9._-]{0,99}, built from its two parts (drawing it with
# st.from_regex is the same language, but cost most of this test's time).
LABEL_START = string.ascii_letters + string.digits
LABEL = st.builds(
    str.__add__, st.sampled_from(LABEL_START), st.text(alphabet=LABEL_START + "._-", max_size=99)
)
SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=24)
configs = st.fixed_dictionaries(
    {"githubScope": st.sampled_from(["my-org", "o" * 39, "octo-org/" + "r" * 100])},
    optional={
        "fleetName": st.one_of(
            # [a-z][a-z0-9-]{0,26}[a-z0-9], from its parts (as LABEL above)
            st.tuples(
                st.sampled_from(string.ascii_lowercase),
                st.text(string.ascii_lowercase + string.digits + "-", max_size=26),
                st.sampled_from(string.ascii_lowercase + string.digits),
            ).map("".join),
            st.text(alphabet="abcXYZ019-_.", max_size=30),
        ),
        "ssmParameterPrefix": st.one_of(
            st.lists(SEGMENT, min_size=1, max_size=14).map("/".join),
            # (aws|SSM|/)?[a-z-]{1,70}/?
            st.tuples(
                st.sampled_from(["", "aws", "SSM", "/"]),
                st.text(string.ascii_lowercase + "-", min_size=1, max_size=70),
                st.sampled_from(["", "/"]),
            ).map("".join),
        ),
        "runnerLabels": st.lists(
            LABEL,
            min_size=1,
            max_size=40,
            unique_by=str.lower,
        ),
        "tags": st.dictionaries(
            st.text(min_size=1, max_size=130), st.text(max_size=260), max_size=4
        ),
        "githubMode": st.sampled_from(["webhook", "scaleSet"]),
    },
)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(raw=configs)
def test_any_accepted_config_yields_only_names_aws_accepts(raw):
    try:
        cfg = parse_config(raw)
    except ConfigError as error:
        assert error.problems  # refused with the key named, never half-accepted
        return
    assert_aws_accepts_everything(cfg)


@pytest.mark.parametrize("mode", ["webhook", "scaleSet"])
@pytest.mark.parametrize(
    ("fleet", "prefix_length"),
    [("main", 49), ("f" * 24, 29), ("ab", 51)],
)
def test_the_longest_accepted_prefix_is_the_longest_aws_takes(fleet, prefix_length, mode):
    # The longest function name (<prefix>-<fleet>-lifecycle) is exactly 64 characters here,
    # in either mode (the listener's name is one character shorter).
    at_limit = parse_config(
        {
            "githubScope": "my-org",
            "fleetName": fleet,
            "ssmParameterPrefix": "p" * prefix_length,
            "githubMode": mode,
        }
    )
    assert_aws_accepts_everything(at_limit)
    assert max(len(name) for kind, name in at_limit.names.every_name() if kind == "function") == 64
    with pytest.raises(ConfigError, match="AWS allows 1-64"):
        parse_config(
            {
                "githubScope": "my-org",
                "fleetName": fleet,
                "ssmParameterPrefix": "p" * (prefix_length + 1),
                "githubMode": mode,
            }
        )


def test_the_largest_label_set_accepted_fits_the_function_environment():
    labels = [f"l{i:02}-" + "x" * 96 for i in range(20)]  # 2019 characters with commas
    cfg = parse_config(
        {
            "githubScope": "o" * 39,
            "fleetName": "f" * 24,
            "ssmParameterPrefix": "p" * 29,
            "runnerGroup": "g" * 100,
            "runnerLabels": labels,
            "githubMode": "scaleSet",  # the longer of the two values
        }
    )
    assert 3000 < environment_bytes(cfg) <= 4096


# -- the graph: names the program sends are the names the config derived ----------------------

NAMED = {
    "aws:autoscaling/group:Group": "name",
    "aws:lambda/function:Function": "name",
    "aws:cloudwatch/logGroup:LogGroup": "name",
    "aws:sqs/queue:Queue": "name",
    "aws:dynamodb/table:Table": "name",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "name",
    "aws:kms/alias:Alias": "name",
    "aws:ssm/parameter:Parameter": "name",
    "aws:imagebuilder/component:Component": "name",
    "aws:imagebuilder/imageRecipe:ImageRecipe": "name",
    "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration": "name",
    "aws:imagebuilder/distributionConfiguration:DistributionConfiguration": "name",
    "aws:imagebuilder/imagePipeline:ImagePipeline": "name",
    "aws:imagebuilder/lifecyclePolicy:LifecyclePolicy": "name",
}
# Autonamed resources: Pulumi appends '-' and 7 random characters to the logical name.
AUTONAME_SUFFIX = 8
AUTONAMED_LIMITS = {
    "aws:iam/role:Role": 64,
    "aws:cloudwatch/eventRule:EventRule": 64,
    "aws:s3/bucket:Bucket": 63,
    "aws:iam/instanceProfile:InstanceProfile": 128,
    "aws:ec2/launchTemplate:LaunchTemplate": 128,
}
LONGEST = {"fleetName": "f" * 24, "ssmParameterPrefix": "p" * 29}
SCALE_SET = {"githubMode": "scaleSet"}


@pytest.mark.parametrize(
    "overrides",
    [{}, LONGEST, {**LONGEST, **SCALE_SET}],
    ids=["example", "longest names", "longest names, scaleSet"],
)
def test_every_name_the_program_sends_is_one_the_config_derived(shared_graph, overrides):
    graph = shared_graph(overrides)
    cfg = parse_config({**example_settings(), **overrides})
    derived = {name for _, name in cfg.names.every_name()} | set(cfg.parameter_names)
    sent = {
        resource.inputs[field]
        for resource in graph.resources
        for typ, field in NAMED.items()
        if resource.typ == typ
    }
    assert sent <= derived
    assert {cfg.asg_name, cfg.names.kms_alias} <= sent
    # The ledger exists in webhook mode only (scaleSet mode has none: docs/control-plane.md).
    assert (cfg.names.ledger_table in sent) == (not cfg.scale_set)
    hooks = {h["name"] for h in graph.one("aws:autoscaling/group:Group")["initialLifecycleHooks"]}
    assert hooks == {cfg.launch_hook_name, cfg.terminate_hook_name}


@pytest.mark.parametrize("mode", [{}, SCALE_SET], ids=["webhook", "scaleSet"])
def test_autonamed_resources_fit_with_the_longest_fleet_name(shared_graph, mode):
    graph = shared_graph({**LONGEST, **mode})
    cfg = parse_config({**example_settings(), **LONGEST, **mode})
    # The logical names Pulumi autonames from are the ones the config derived and checked
    # (ResourceNames.autonamed): roles, instance profiles, rules and buckets.
    checked = {"aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"}
    checked |= {"aws:cloudwatch/eventRule:EventRule", "aws:s3/bucket:Bucket"}
    sent = {r.name for r in graph.resources if r.typ in checked}
    assert sent == {name for _, name in cfg.names.autonamed()}
    for resource in graph.resources:
        limit = AUTONAMED_LIMITS.get(resource.typ)
        if limit is None:
            continue
        # No explicit name: Pulumi autonames it from the logical name.
        assert not {"name", "bucket"} & set(resource.inputs), resource.name
        assert len(resource.name) + AUTONAME_SUFFIX <= limit, resource.name
        if resource.typ == "aws:s3/bucket:Bucket":
            assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", resource.name)


# -- instance types: EC2's answer at preview, no family list -----------------------------------


def test_instance_types_are_looked_up_in_ec2(default_graph):
    calls = default_graph.calls
    asked = [c.args["instanceType"] for c in calls if c.token.endswith("getInstanceType")]
    assert asked == ["m7i.xlarge", "m6i.xlarge", "m6a.xlarge"]


def test_a_family_newer_than_the_program_is_accepted_when_ec2_knows_it(build_graph):
    graph = build_graph({"architecture": "arm64", "instanceTypes": ["m9gd.2xlarge"]})
    group = graph.one("aws:autoscaling/group:Group")
    overrides = group["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
    assert [o["instanceType"] for o in overrides] == ["m9gd.2xlarge"]


def test_a_type_ec2_does_not_know_fails_before_any_resource(build_graph, mocks):
    with pytest.raises(
        ConfigError, match=r"instanceTypes: EC2 knows no instance type 'm7x\.large'"
    ):
        build_graph({"instanceTypes": ["m7i.xlarge", "m7x.large"]})
    assert mocks.resources == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"instanceTypes": ["m7i.xlarge", "m7g.xlarge"]},
            r"'m7g\.xlarge' runs arm64, not x86_64; pick x86_64 types or change the "
            r"architecture: pulumi config set architecture arm64",
        ),
        (
            {"architecture": "arm64", "instanceTypes": ["c7i.large"]},
            r"'c7i\.large' runs x86_64, not arm64",
        ),
        (
            {"instanceTypes": ["u7i-6tb.112xlarge"], "spotPercentage": 50},
            r"not offered as Spot capacity in eu-west-1, and spotPercentage is 50",
        ),
    ],
)
def test_a_type_that_cannot_serve_the_fleet_fails_before_any_resource(
    build_graph, mocks, overrides, message
):
    with pytest.raises(ConfigError, match=message):
        build_graph(overrides)
    assert mocks.resources == []


def test_a_type_with_several_architectures_serves_the_one_configured(build_graph):
    graph = build_graph({"instanceTypes": ["m5.large"]})
    assert graph.of_type("aws:autoscaling/group:Group")
