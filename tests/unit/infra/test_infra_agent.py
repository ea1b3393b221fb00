"""A runner agent too old for GitHub, as the program declares it: the instance may report into
its fleet's runner namespace, the alarm watches exactly that, and (newest-agent bakes) the
alarm entering ALARM starts a bake through the bake function and nothing else.

Under Pulumi's mocks: the resources' inputs and the edges between them. What AWS does with
them at run time is in tests/integration/test_agent_outdated.py (moto) and the instance side
in tests/unit/infra/test_infra_user_data.py.
"""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from infra_mocks import ACCOUNT, REGION, example_settings

from fleet.core.config.fields import agent_tracks_latest
from infra.agent_freshness import TRIGGER_MAX_EVENT_AGE_SECONDS, TRIGGER_RETRIES
from infra.agent_report import (
    METRIC_NAME,
    alarm_event_pattern,
    runner_metrics_namespace,
)
from infra.config import ConfigError, parse_config
from infra.iam_functions import dead_letter_queue_policy
from tests.fakes.iam_policy import Request, decide, statements_by_sid

pytestmark = pytest.mark.unit

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
PERMISSION = "aws:lambda/permission:Permission"
ALARM_ARN = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:runner-fleet-main-runner-agent-outdated"
BAKE_FUNCTION = "runner-fleet-main-bake"
QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
ASYNC = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
BAKE_DEAD_LETTERS = "runner-fleet-main-bake-dead-letters"
BAKE_DEAD_LETTERS_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{BAKE_DEAD_LETTERS}"
RULE_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/main-agent-outdated"


def _outdated_alarm(graph) -> dict:
    return graph.named(ALARM, "main-agent-outdated-alarm")


def _fleet_env(graph) -> dict[str, str]:
    template = graph.one("aws:ec2/launchTemplate:LaunchTemplate")
    document = yaml.safe_load(base64.b64decode(template["userData"]))
    env = next(f for f in document["write_files"] if f["path"] == "/etc/runner-fleet/fleet.env")
    return dict(line.split("=", 1) for line in env["content"].splitlines())


def test_the_alarm_watches_what_the_instances_report(default_graph):
    alarm = _outdated_alarm(default_graph)
    assert alarm["name"] == "runner-fleet-main-runner-agent-outdated"
    # The namespace the instance writes (fleet.env) is the one the alarm reads.
    assert _fleet_env(default_graph)["METRICS_NAMESPACE"] == alarm["namespace"]
    assert alarm["namespace"] == runner_metrics_namespace("main") == "RunnerFleet/Runners/main"
    assert alarm["metricName"] == METRIC_NAME
    # One report is enough; it stays in ALARM for the hour a bake takes.
    assert (alarm["statistic"], alarm["threshold"], alarm["comparisonOperator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )
    assert (alarm["period"], alarm["evaluationPeriods"]) == (3600, 1)
    assert alarm["treatMissingData"] == "notBreaching"
    assert "a bake with the newest agent starts" in alarm["alarmDescription"]


def test_the_instance_may_write_only_that_namespace(default_graph):
    policy = json.loads(
        default_graph.named("aws:iam/rolePolicy:RolePolicy", "main-instance-policy")["policy"]
    )
    report = statements_by_sid(policy)["ReportOutdatedAgent"]
    assert report["Action"] == "cloudwatch:PutMetricData"
    assert report["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": _outdated_alarm(default_graph)["namespace"]}
    }


def test_the_alarm_entering_alarm_starts_a_bake_through_the_bake_function(default_graph):
    graph = default_graph
    rule = graph.named(RULE, "main-agent-outdated")
    assert json.loads(rule["eventPattern"]) == alarm_event_pattern(ALARM_ARN)
    assert json.loads(rule["eventPattern"])["detail"] == {"state": {"value": ["ALARM"]}}
    target = graph.named(TARGET, "main-agent-outdated-target")
    assert target["arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{BAKE_FUNCTION}"
    assert target["rule"] == "main-agent-outdated-a1b2c3d"
    assert "exit 7" in json.loads(target["input"])["reason"]
    permission = graph.named(PERMISSION, "main-agent-outdated-invoke")
    assert permission == {
        "action": "lambda:InvokeFunction",
        "function": BAKE_FUNCTION,
        "principal": "events.amazonaws.com",
        "sourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/main-agent-outdated",
    }
    # The target is the rule's, and is written once EventBridge may invoke the function.
    edge = graph.registration(TARGET, "main-agent-outdated-target")
    assert graph.registration(RULE, "main-agent-outdated").urn in edge.dependencies
    assert graph.registration(PERMISSION, "main-agent-outdated-invoke").urn in edge.dependencies


# -- a bake trigger is not lost: retries, dead letters, alarms ---------------------------------


def test_the_rules_target_retries_then_leaves_the_trigger_in_the_bake_dead_letters(default_graph):
    target = default_graph.named(TARGET, "main-agent-outdated-target")
    assert target["retryPolicy"] == {
        "maximumRetryAttempts": TRIGGER_RETRIES,
        "maximumEventAgeInSeconds": TRIGGER_MAX_EVENT_AGE_SECONDS,
    }
    assert (TRIGGER_RETRIES, TRIGGER_MAX_EVENT_AGE_SECONDS) == (8, 3600)
    assert target["deadLetterConfig"] == {"arn": BAKE_DEAD_LETTERS_ARN}
    queue = default_graph.named(QUEUE, "main-image-bake-dead-letters")
    assert queue["name"] == BAKE_DEAD_LETTERS
    assert queue["sqsManagedSseEnabled"] is True  # encrypted at rest
    assert queue["messageRetentionSeconds"] == 14 * 24 * 3600


def test_only_that_rule_may_write_the_bake_dead_letters(default_graph):
    deployed = default_graph.named(QUEUE_POLICY, "main-agent-outdated-dead-letters-policy")
    assert deployed["queueUrl"].endswith(f"/{ACCOUNT}/{BAKE_DEAD_LETTERS}")
    policy = json.loads(deployed["policy"])
    assert policy == dead_letter_queue_policy(queue_arn=BAKE_DEAD_LETTERS_ARN, rule_arns=[RULE_ARN])
    send = statements_by_sid(policy)["EventBridgeDeadLetters"]
    assert send["Principal"] == {"Service": "events.amazonaws.com"}
    assert send["Condition"] == {"ArnEquals": {"aws:SourceArn": [RULE_ARN]}}

    def sent_by(rule_arn: str, secure: str = "true") -> str:
        context = {"aws:SourceArn": rule_arn, "aws:SecureTransport": secure}
        return decide([policy], Request("sqs:SendMessage", BAKE_DEAD_LETTERS_ARN, context))

    assert sent_by(RULE_ARN) == "Allow"
    assert sent_by(RULE_ARN.replace("main-agent-outdated", "main-control-plane-spot")) == (
        "ImplicitDeny"
    )
    assert sent_by(RULE_ARN, secure="false") == "ExplicitDeny"


def test_the_bake_functions_own_failures_land_there_after_lambdas_retries(default_graph):
    config = default_graph.named(ASYNC, "main-image-bake-async")
    assert config["functionName"] == BAKE_FUNCTION
    assert config["maximumRetryAttempts"] == 2
    assert config["maximumEventAgeInSeconds"] == 3600
    assert config["destinationConfig"] == {"onFailure": {"destination": BAKE_DEAD_LETTERS_ARN}}


def test_alarms_fire_on_dead_letters_and_on_bake_errors(default_graph):
    dead = default_graph.named(ALARM, "main-image-bake-dead-letters-alarm")
    assert dead["name"] == "runner-fleet-main-bake-dead-letters-not-empty"
    assert (dead["namespace"], dead["metricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert dead["dimensions"] == {"QueueName": BAKE_DEAD_LETTERS}
    errors = default_graph.named(ALARM, "main-image-bake-errors-alarm")
    assert errors["name"] == "runner-fleet-main-bake-errors"
    assert (errors["namespace"], errors["metricName"]) == ("AWS/Lambda", "Errors")
    assert errors["dimensions"] == {"FunctionName": BAKE_FUNCTION}
    for alarm in (dead, errors):
        # As the control plane's alarms: anything above 0 in 5 minutes; no data is fine.
        assert (alarm["threshold"], alarm["comparisonOperator"]) == (0, "GreaterThanThreshold")
        assert (alarm["period"], alarm["evaluationPeriods"]) == (300, 1)
        assert alarm["treatMissingData"] == "notBreaching"
    cfg = parse_config(example_settings())
    checked = cfg.names.every_name()
    assert ("alarm", dead["name"]) in checked and ("alarm", errors["name"]) in checked
    assert ("queue", BAKE_DEAD_LETTERS) in checked


def test_with_a_pinned_agent_the_dead_letters_stay_but_no_rule_writes_there(shared_graph):
    graph = shared_graph({"runnerVars": {}})
    assert graph.named(QUEUE, "main-image-bake-dead-letters")["name"] == BAKE_DEAD_LETTERS
    assert graph.named(ASYNC, "main-image-bake-async")["functionName"] == BAKE_FUNCTION
    assert all(not p.name.startswith("main-agent") for p in graph.of_type(QUEUE_POLICY))
    plain = shared_graph({"imagePipeline": False})
    assert all(q.inputs["name"] != BAKE_DEAD_LETTERS for q in plain.of_type(QUEUE))
    assert all(not a.name.startswith("main-image-bake") for a in plain.of_type(ALARM))


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"runnerVars": {}}, "a bake would bake the same pinned agent again"),
        ({"imagePipeline": False}, "no pipeline to start"),
    ],
)
def test_without_newest_agent_bakes_the_alarm_asks_for_a_new_agent(shared_graph, overrides, why):
    graph = shared_graph(overrides)
    assert not graph.of_type(RULE) or all(
        r.name != "main-agent-outdated" for r in graph.of_type(RULE)
    ), why
    assert all(not p.name.startswith("main-agent") for p in graph.of_type(PERMISSION))
    description = _outdated_alarm(graph)["alarmDescription"]
    assert "actions_runner_version latest" in description
    # The config model derives (and checks) the rule's name exactly when there is one.
    cfg = parse_config({**example_settings(), **overrides})
    assert not cfg.newest_agent_bakes
    assert ("event_rule", "main-agent-outdated") not in cfg.names.autonamed()


def test_the_alarm_and_the_rule_are_named_and_checked_by_the_config_model():
    cfg = parse_config(example_settings())
    assert cfg.newest_agent_bakes
    assert ("alarm", "runner-fleet-main-runner-agent-outdated") in cfg.names.every_name()
    assert ("event_rule", "main-agent-outdated") in cfg.names.autonamed()
    # A prefix that makes the alarm's name too long is refused with the other names.
    with pytest.raises(ConfigError, match="CloudWatch alarm name"):
        parse_config({**example_settings(), "ssmParameterPrefix": "p" * 240})


def test_latest_with_its_own_checksum_fails_at_preview(build_graph, mocks):
    with pytest.raises(ConfigError) as refused:
        build_graph(
            {"runnerVars": {"actions_runner_version": "latest", "actions_runner_sha256": "0" * 64}}
        )
    assert mocks.resources == []
    message = str(refused.value)
    assert "runner-fleet:runnerVars" in message
    assert "pulumi config rm --path runnerVars.actions_runner_sha256" in message


@pytest.mark.parametrize(
    ("runner_vars", "latest"),
    [
        ({}, False),
        ({"actions_runner_version": "2.338.0"}, False),
        ({"actions_runner_version": "latest"}, True),
        ({"actions_runner_version": " latest "}, True),
    ],
)
def test_which_bakes_take_the_newest_agent(runner_vars, latest):
    assert agent_tracks_latest(runner_vars) is latest
