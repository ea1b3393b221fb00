"""The control plane under mocks: the Lambda package, the functions and their wiring, and the
function policies as pure documents (conditions included, which moto does not evaluate).

The integration tests run these same documents under moto's IAM enforcement; here they are
checked statement by statement and with a policy evaluator for their conditions.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from infra_mocks import ACCOUNT, KMS_KEY_ARN, PROJECT_ROOT, REGION, SECRETS

from fleet.aws.handlers.settings import Settings
from infra.iam_functions import (
    FUNCTIONS,
    ControlPlaneResources,
    dead_letter_queue_policy,
    function_policies,
    lambda_trust_policy,
)
from infra.lambda_package import (
    LAMBDA_DISTRIBUTIONS,
    LAMBDA_SOURCES,
    build_lambda_package,
    lambda_requirements,
)
from tests.fakes.iam_policy import Request, evaluate, statements_by_sid

pytestmark = pytest.mark.unit

PREFIX = "runner-fleet-main"
PARAM = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{PREFIX}-deliveries"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{PREFIX}-dead-letters"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{PREFIX}-ledger"
ASG_ARN = (
    f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:0000-1111:"
    f"autoScalingGroupName/{PREFIX}"
)
RESOURCES = ControlPlaneResources(
    partition="aws",
    region=REGION,
    account_id=ACCOUNT,
    fleet_name="main",
    asg_name=PREFIX,
    parameter_root="/runner-fleet/main",
    kms_key_arn=KMS_KEY_ARN,
    queue_arn=QUEUE_ARN,
    dead_letter_queue_arn=DLQ_ARN,
    table_arn=TABLE_ARN,
    metrics_namespace="RunnerFleet",
    github_app_parameter_names={
        "app_id": "/runner-fleet/main/github-app/app-id",
        "private_key": "/runner-fleet/main/github-app/private-key",
        "webhook_secret": "/runner-fleet/main/github-app/webhook-secret",
    },
    function_names={fn: f"{PREFIX}-{fn}" for fn in FUNCTIONS},
)
POLICIES = function_policies(RESOURCES)
# Actions AWS authorizes only on "*" (no resource-level permissions).
STAR_ONLY = {
    "autoscaling:DescribeAutoScalingGroups",
    "ec2:DescribeInstances",
    "ssm:DescribeParameters",
    "cloudwatch:PutMetricData",
}


def allowed(function: str, action: str, resource: str, **context: str) -> str:
    return evaluate({function: POLICIES[function]}, Request(action, resource, context)).decision


# -- the package ------------------------------------------------------------------------------


def test_package_holds_the_handlers_and_their_dependencies_only(tmp_path, lambda_dependencies):
    package = build_lambda_package(PROJECT_ROOT, tmp_path)
    files = set(package.files)
    for module in ("webhook", "scaler", "lifecycle", "reaper", "runtime", "settings"):
        assert f"fleet/aws/handlers/{module}.py" in files
    assert {
        "fleet/__init__.py",
        "fleet/aws/adapters/sqs.py",
        "fleet/aws/adapters/dynamodb.py",
        "fleet/core/github/runners.py",
        "fleet/core/github/actions.py",
        "fleet/core/scaling.py",
        "fleet/core/ledger.py",
        "fleet/aws/observe.py",
        "fleet/core/webhook.py",
        "fleet/core/jobs.py",
        "fake_dependency/__init__.py",
    } <= files
    # Never the CLI, the local fleet (its Docker backend, serve), playbooks or caches.
    assert not {"fleet/cli.py", "fleet/__main__.py", "fleet/errors.py"} & files
    assert not any(f.startswith("fleet/local/") for f in files)
    assert not any(
        "__pycache__" in f or f.endswith(".pyc") or f.startswith("playbooks") for f in files
    )
    # Dependencies: requirements.txt's pins, as Lambda-platform wheels for Python 3.12.
    (call,) = lambda_dependencies
    assert call[-2:] == ("manylinux2014_aarch64", "3.12")
    assert list(call[:-2]) == lambda_requirements(PROJECT_ROOT / "requirements.txt")
    assert "boto3==1.43.11" in call and "pydantic==2.12.5" in call


def test_the_package_ships_every_distribution_the_functions_import():
    """Every third-party module fleet/core and fleet/aws import (the config model's pydantic
    and pydantic-settings included) comes from a distribution the package installs: one of
    LAMBDA_DISTRIBUTIONS or what pip installs with them (their requirements)."""
    import importlib.metadata
    import re

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    shipped: set[str] = set()
    pending = [canonical(name) for name in LAMBDA_DISTRIBUTIONS]
    for _ in range(200):  # the dependency closure; bounded
        if not pending:
            break
        name = pending.pop()
        if name in shipped:
            continue
        shipped.add(name)
        for requirement in importlib.metadata.requires(name) or ():
            if "extra ==" not in requirement:
                pending.append(canonical(re.split(r"[\s;<>=!~\[(]", requirement)[0]))

    from tests.unit.test_import_rules import import_graph

    graph = import_graph(PROJECT_ROOT, ("fleet/core", "fleet/aws"))
    imported = {name.split(".")[0] for names in graph.values() for name in names}
    third_party = {
        name
        for name in imported
        if name not in sys.stdlib_module_names and name not in ("fleet", "__future__")
    }
    by_module = importlib.metadata.packages_distributions()
    needed = {canonical(dist) for name in third_party for dist in by_module[name]}
    assert {"pydantic", "pydantic-settings", "boto3"} <= needed
    assert needed <= shipped


def test_package_is_reproducible_and_dependencies_are_installed_once(tmp_path, lambda_dependencies):
    first = build_lambda_package(PROJECT_ROOT, tmp_path)
    content = first.path.read_bytes()
    first.path.unlink()
    second = build_lambda_package(PROJECT_ROOT, tmp_path)
    assert second.path.read_bytes() == content
    assert second.source_code_hash == first.source_code_hash
    assert len(lambda_dependencies) == 1  # cached in build/lambda-deps-<hash>
    with zipfile.ZipFile(second.path) as archive:
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_handlers_import_from_the_extracted_package(tmp_path):
    package = build_lambda_package(PROJECT_ROOT, tmp_path / "build")
    extracted = tmp_path / "lambda"
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(extracted)
    code = (
        "import fleet, fleet.aws.handlers.webhook, fleet.aws.handlers.scaler, "
        "fleet.aws.handlers.lifecycle, fleet.aws.handlers.reaper, fake_dependency; "
        "print(fleet.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=extracted, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(extracted)


def test_missing_pins_are_a_clear_error(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("boto3==1.43.11\nrequests\n")
    with pytest.raises(ValueError, match="pins no version for botocore, PyJWT"):
        lambda_requirements(requirements)
    assert all((PROJECT_ROOT / source).exists() for source in LAMBDA_SOURCES)


# -- the resources ----------------------------------------------------------------------------


def test_functions_run_the_package_with_their_own_role_and_log_group(default_graph):
    graph = default_graph
    functions = {f.inputs["name"]: f.inputs for f in graph.of_type("aws:lambda/function:Function")}
    # The control plane's four, and the image pipeline's bake function (test_infra_images.py).
    assert set(functions) == {f"{PREFIX}-{fn}" for fn in FUNCTIONS} | {f"{PREFIX}-bake"}
    for fn in FUNCTIONS:
        function = functions[f"{PREFIX}-{fn}"]
        assert function["handler"] == f"fleet.aws.handlers.{fn}.handler"
        assert function["runtime"] == "python3.12"
        assert function["architectures"] == ["arm64"]
        assert function["loggingConfig"]["logGroup"] == f"/aws/lambda/{PREFIX}-{fn}"
        assert function["role"].endswith(f"main-control-plane-{fn}-role-a1b2c3d")
    assert functions[f"{PREFIX}-webhook"]["timeout"] < 10  # GitHub waits 10 s at most
    groups = {g.inputs["name"]: g.inputs for g in graph.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert set(groups) == {f"/aws/lambda/{PREFIX}-{fn}" for fn in FUNCTIONS} | {
        f"/aws/lambda/{PREFIX}-bake",
        f"/aws/imagebuilder/{PREFIX}-image",
    }
    assert {g["retentionInDays"] for g in groups.values()} == {30}


def test_function_environment_is_what_the_handlers_read_and_holds_no_secret(default_graph):
    graph = default_graph
    for function in graph.of_type("aws:lambda/function:Function"):
        if not function.inputs["handler"].startswith("fleet.handlers."):
            continue  # the bake function (test_infra_images.py)
        variables = function.inputs["environment"]["variables"]
        for value in SECRETS.values():
            assert value not in json.dumps(variables)
        settings = Settings.from_env({**variables, "AWS_REGION": REGION})
        assert settings.asg_name == PREFIX
        assert settings.queue_url.endswith(f"/{PREFIX}-deliveries")
        assert settings.ledger_table == f"{PREFIX}-ledger"
        assert settings.kms_key_arn == KMS_KEY_ARN
        assert settings.limits.max_size == 10
        assert settings.limits.boot_deadline.total_seconds() == 20 * 60
        assert settings.allow_public_repositories is False


def test_webhook_url_is_public_and_the_signature_is_its_auth(default_graph):
    graph = default_graph
    url = graph.one("aws:lambda/functionUrl:FunctionUrl")
    assert url["authorizationType"] == "NONE"
    assert url["functionName"] == f"{PREFIX}-webhook"
    permissions = [p.inputs for p in graph.of_type("aws:lambda/permission:Permission")]
    public = [p for p in permissions if p["principal"] == "*"]
    assert sorted(p["action"] for p in public) == [
        "lambda:InvokeFunction",
        "lambda:InvokeFunctionUrl",
    ]
    assert all(p["function"] == f"{PREFIX}-webhook" for p in public)
    assert next(p for p in public if p["action"] == "lambda:InvokeFunction")[
        "invokedViaFunctionUrl"
    ]
    events = [
        p
        for p in permissions
        if p["principal"] == "events.amazonaws.com" and p["function"] != f"{PREFIX}-bake"
    ]
    assert len(events) == 4 and all(p["sourceArn"] for p in events)
    assert graph.outputs["webhookUrl"].startswith("https://")


def test_property_25_queue_redrives_to_alarmed_dead_letters_and_batches_report_failures(
    default_graph,
):
    graph = default_graph
    queues = {q.inputs["name"]: q.inputs for q in graph.of_type("aws:sqs/queue:Queue")}
    deliveries = queues[f"{PREFIX}-deliveries"]
    assert json.loads(deliveries["redrivePolicy"]) == {
        "deadLetterTargetArn": DLQ_ARN,
        "maxReceiveCount": 5,
    }
    assert deliveries["visibilityTimeoutSeconds"] >= 6 * 60  # 6 x the scaler's timeout
    assert all(q["sqsManagedSseEnabled"] for q in queues.values())
    mapping = graph.one("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["eventSourceArn"] == QUEUE_ARN
    assert mapping["scalingConfig"]["maximumConcurrency"] == 2
    for config in graph.of_type("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"):
        if not config.name.startswith("main-control-plane-"):
            continue  # the bake function's: its own dead letters (test_infra_agent)
        assert config.inputs["destinationConfig"]["onFailure"]["destination"] == DLQ_ARN
        assert config.inputs["maximumRetryAttempts"] == 2
    targets = [
        target
        for target in graph.of_type("aws:cloudwatch/eventTarget:EventTarget")
        if target.name.startswith("main-control-plane-")  # not the image pipeline's bake
    ]
    assert len(targets) == 4
    for target in targets:
        assert target.inputs["deadLetterConfig"]["arn"] == DLQ_ARN
    (dlq_policy,) = [
        json.loads(p.inputs["policy"])
        for p in graph.of_type("aws:sqs/queuePolicy:QueuePolicy")
        if p.name.startswith("main-control-plane-")  # not the bake dead letters'
    ]
    (events,) = [s for s in dlq_policy["Statement"] if s["Effect"] == "Allow"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert len(events["Condition"]["ArnEquals"]["aws:SourceArn"]) == 4
    alarms = {
        a.inputs["name"]: a.inputs for a in graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert alarms[f"{PREFIX}-dead-letters-not-empty"]["dimensions"] == {
        "QueueName": f"{PREFIX}-dead-letters"
    }
    assert alarms[f"{PREFIX}-jobs-queued-too-long"]["metricName"] == "JobsQueuedTooLong"
    assert alarms[f"{PREFIX}-boot-failures"]["metricName"] == "BootFailures"
    assert {a["threshold"] for a in alarms.values()} == {0}


def test_ledger_table_indexes_open_jobs_and_expires_finished_ones(default_graph):
    table = default_graph.one("aws:dynamodb/table:Table")
    assert table["hashKey"] == "pk" and table["billingMode"] == "PAY_PER_REQUEST"
    (index,) = table["globalSecondaryIndexes"]
    assert index["name"] == "open-jobs"
    assert [k["attributeName"] for k in index["keySchemas"]] == ["open_fleet", "queued_at"]
    assert table["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert table["pointInTimeRecovery"]["enabled"] is True


def test_rules_schedule_the_scaler_and_reaper_and_route_this_groups_events(default_graph):
    graph = default_graph
    rules = {r.name: r.inputs for r in graph.of_type("aws:cloudwatch/eventRule:EventRule")}
    assert rules["main-control-plane-scaler-schedule"]["scheduleExpression"] == "rate(1 minute)"
    assert rules["main-control-plane-reaper-schedule"]["scheduleExpression"] == "rate(2 minutes)"
    lifecycle = json.loads(rules["main-control-plane-lifecycle-events"]["eventPattern"])
    assert lifecycle["detail"] == {"AutoScalingGroupName": [PREFIX]}
    assert set(lifecycle["detail-type"]) == {
        "EC2 Instance-launch Lifecycle Action",
        "EC2 Instance-terminate Lifecycle Action",
    }
    spot = json.loads(rules["main-control-plane-spot-warnings"]["eventPattern"])
    assert spot == {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    }


def test_deployed_function_policies_are_the_pure_documents(default_graph):
    graph = default_graph
    for fn in FUNCTIONS:
        deployed = graph.named("aws:iam/rolePolicy:RolePolicy", f"main-control-plane-{fn}-policy")
        assert json.loads(deployed["policy"]) == POLICIES[fn], fn
        role = graph.named("aws:iam/role:Role", f"main-control-plane-{fn}-role")
        assert json.loads(role["assumeRolePolicy"]) == lambda_trust_policy()


# -- the documents ----------------------------------------------------------------------------


def test_no_function_policy_allows_a_wildcard_action_or_an_unneeded_star_resource():
    for fn, policy in POLICIES.items():
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert all("*" not in a for a in actions), (fn, statement["Sid"])
            if statement["Resource"] == "*":
                assert set(actions) <= STAR_ONLY, (fn, statement["Sid"])
            if "cloudwatch:PutMetricData" in actions:
                assert statement["Condition"] == {
                    "StringEquals": {"cloudwatch:namespace": "RunnerFleet"}
                }


def test_each_function_policy_has_exactly_these_statements():
    sids = {fn: sorted(statements_by_sid(p)) for fn, p in POLICIES.items()}
    common = ["PublishFleetMetrics", "ReportFailedEvents", "WriteOwnLogs"]
    github = ["DecryptGitHubApp", "ReadGitHubApp"]
    ledger = ["QueryOpenJobs", "ReadWriteLedger"]
    assert sids == {
        "webhook": sorted(
            ["ReadWebhookSecret", "DecryptWebhookSecret", "QueueDeliveries", "WriteOwnLogs"]
        ),
        "scaler": sorted(
            ["ConsumeDeliveries", "ReadFleet", "ScaleOwnGroup", *github, *ledger, *common]
        ),
        "lifecycle": sorted(
            [
                "WriteJitConfigs",
                "DeleteJitConfigs",
                "EncryptJitConfigs",
                "CompleteLifecycleActions",
                "IdentifySpotInstances",
                *github,
                *ledger,
                *common,
            ]
        ),
        "reaper": sorted(
            ["ReadFleet", "ScaleOwnGroup", "DeleteLeftoverJitConfigs", *github, *ledger, *common]
        ),
    }


OTHER_GROUP = ASG_ARN.replace(PREFIX, "runner-fleet-other")
JIT = f"{PARAM}/runner-fleet/main/runners/i-0abc/jitconfig"
INSTANCE = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0abc"
FOREIGN_INSTANCE = "arn:aws:ec2:us-east-1:999999999999:instance/i-0abc"
APP_KEY = f"{PARAM}/runner-fleet/main/github-app/private-key"


@pytest.mark.parametrize(
    ("fn", "action", "resource", "context", "decision"),
    [
        # Only this fleet's group, by name and by its fleet tag.
        (
            "scaler",
            "autoscaling:SetDesiredCapacity",
            ASG_ARN,
            {"autoscaling:ResourceTag/runner-fleet": "main"},
            "Allow",
        ),
        (
            "scaler",
            "autoscaling:SetDesiredCapacity",
            ASG_ARN,
            {"autoscaling:ResourceTag/runner-fleet": "other"},
            "ImplicitDeny",
        ),
        (
            "scaler",
            "autoscaling:SetDesiredCapacity",
            OTHER_GROUP,
            {"autoscaling:ResourceTag/runner-fleet": "main"},
            "ImplicitDeny",
        ),
        ("reaper", "autoscaling:TerminateInstanceInAutoScalingGroup", ASG_ARN, {}, "ImplicitDeny"),
        (
            "lifecycle",
            "autoscaling:CompleteLifecycleAction",
            ASG_ARN,
            {"autoscaling:ResourceTag/runner-fleet": "main"},
            "Allow",
        ),
        # JIT parameters: tagged with an instance of this account and region, or not at all
        # (an overwrite); never readable by the control plane.
        (
            "lifecycle",
            "ssm:PutParameter",
            JIT,
            {"aws:RequestTag/runner-fleet-instance-arn": INSTANCE},
            "Allow",
        ),
        ("lifecycle", "ssm:PutParameter", JIT, {}, "Allow"),
        (
            "lifecycle",
            "ssm:PutParameter",
            JIT,
            {"aws:RequestTag/runner-fleet-instance-arn": FOREIGN_INSTANCE},
            "ImplicitDeny",
        ),
        (
            "lifecycle",
            "ssm:PutParameter",
            f"{PARAM}/runner-fleet/main/github-app/private-key",
            {},
            "ImplicitDeny",
        ),
        ("lifecycle", "ssm:GetParameter", JIT, {}, "ImplicitDeny"),
        ("reaper", "ssm:GetParameter", JIT, {}, "ImplicitDeny"),
        # KMS: the fleet's key, through SSM, for the right parameters only.
        (
            "lifecycle",
            "kms:Encrypt",
            KMS_KEY_ARN,
            {
                "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
                "kms:EncryptionContext:PARAMETER_ARN": JIT,
            },
            "Allow",
        ),
        (
            "lifecycle",
            "kms:Encrypt",
            KMS_KEY_ARN,
            {"kms:EncryptionContext:PARAMETER_ARN": JIT},
            "ImplicitDeny",
        ),
        (
            "lifecycle",
            "kms:Decrypt",
            KMS_KEY_ARN,
            {
                "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
                "kms:EncryptionContext:PARAMETER_ARN": JIT,
            },
            "ImplicitDeny",
        ),
        (
            "scaler",
            "kms:Decrypt",
            KMS_KEY_ARN,
            {
                "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
                "kms:EncryptionContext:PARAMETER_ARN": APP_KEY,
            },
            "Allow",
        ),
        (
            "webhook",
            "kms:Decrypt",
            KMS_KEY_ARN,
            {
                "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
                "kms:EncryptionContext:PARAMETER_ARN": APP_KEY,
            },
            "ImplicitDeny",
        ),
        (
            "webhook",
            "ssm:GetParameter",
            f"{PARAM}/runner-fleet/main/github-app/private-key",
            {},
            "ImplicitDeny",
        ),
        # Metrics in the fleet's namespace only.
        (
            "reaper",
            "cloudwatch:PutMetricData",
            "*",
            {"cloudwatch:namespace": "RunnerFleet"},
            "Allow",
        ),
        (
            "reaper",
            "cloudwatch:PutMetricData",
            "*",
            {"cloudwatch:namespace": "AWS/EC2"},
            "ImplicitDeny",
        ),
        # Dead letters: the functions only send to the dead-letter queue, never read it.
        ("lifecycle", "sqs:SendMessage", DLQ_ARN, {}, "Allow"),
        ("lifecycle", "sqs:ReceiveMessage", DLQ_ARN, {}, "ImplicitDeny"),
        ("webhook", "sqs:SendMessage", DLQ_ARN, {}, "ImplicitDeny"),
    ],
)
def test_function_policy_conditions(fn, action, resource, context, decision):
    assert allowed(fn, action, resource, **context) == decision


def test_dead_letter_queue_accepts_only_the_fleets_rules_over_tls():
    rule = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/main-lifecycle"
    policy = {"dlq": dead_letter_queue_policy(queue_arn=DLQ_ARN, rule_arns=[rule])}
    send = "sqs:SendMessage"
    secure = {"aws:SecureTransport": "true"}
    assert evaluate(policy, Request(send, DLQ_ARN, {"aws:SourceArn": rule, **secure})).allowed
    other = {"aws:SourceArn": rule.replace("main-lifecycle", "elsewhere"), **secure}
    assert not evaluate(policy, Request(send, DLQ_ARN, other)).allowed
    plain = {"aws:SourceArn": rule, "aws:SecureTransport": "false"}
    assert evaluate(policy, Request(send, DLQ_ARN, plain)).decision == "ExplicitDeny"
