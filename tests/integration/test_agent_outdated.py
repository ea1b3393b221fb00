"""A runner whose agent GitHub deems too old, against moto with the deployed policies enforced.

The instance's part as runner-terminate-self plays it (tests/unit/infra/test_infra_user_data.py
runs the script itself): with its own role it puts one RunnerAgentOutdated datapoint into its
fleet's runner namespace, and nothing outside it, then leaves its group; the lifecycle function
releases it like any runner. Then EventBridge's part: the rule's pattern, as the program writes
it (infra/agent_report.py), lets through this alarm entering ALARM and nothing else. moto does
not evaluate alarms, so the alarm's definition is proved under mocks
(tests/unit/infra/test_infra_agent.py); the bake function's code under a stubbed Image Builder
(tests/unit/infra/test_infra_images.py).
"""

from __future__ import annotations

import json

import pytest

from infra.agent_report import ALARM_STATE_CHANGE, METRIC_NAME, alarm_event_pattern
from tests.integration.harness import ACCOUNT, FLEET, REGION
from tests.integration.test_iam_enforcement import denied, two_instances_with_jit_configs

pytestmark = pytest.mark.integration

ALARM_ARN = (
    f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:runner-fleet-{FLEET}-runner-agent-outdated"
)


def test_an_outdated_runner_reports_into_its_own_namespace_and_leaves(make_fleet):
    fleet = make_fleet(max_size=2)
    outdated, other = two_instances_with_jit_configs(fleet)
    fleet.never_register.add(outdated)  # its agent exits 7 instead of connecting
    fleet.asg_tick()
    fleet.boot_instances()

    fleet.instance_reports_outdated_agent(outdated)
    for namespace in ("RunnerFleet", "RunnerFleet/Runners/other-fleet"):
        denied(lambda ns=namespace: fleet.instance_reports_outdated_agent(outdated, ns))
    fleet.instance_terminates_itself(outdated)
    fleet.asg_tick()  # the terminate hook: the lifecycle function releases it

    metrics = fleet.aws.admin.client("cloudwatch").list_metrics(
        Namespace=f"RunnerFleet/Runners/{FLEET}"
    )["Metrics"]
    assert [m["MetricName"] for m in metrics] == [METRIC_NAME]
    control_plane = fleet.aws.admin.client("cloudwatch").list_metrics(Namespace="RunnerFleet")
    assert METRIC_NAME not in {m["MetricName"] for m in control_plane["Metrics"]}
    instances = {s.instance.id for s in fleet.aws.group_states()}
    assert outdated not in instances and other in instances
    released = [r for f, r in fleet.results if f == "lifecycle" and r.get("result") == "released"]
    assert [r["instance"] for r in released] == [outdated]
    unexpected = [c for c in fleet.aws.enforcer.denied() if c.principal != "user/admin"]
    assert {c.action for c in unexpected} == {"cloudwatch:PutMetricData"}  # the two above


def _alarm_event(alarm_arn: str, state: str) -> dict:
    """A CloudWatch alarm state change as EventBridge delivers it."""
    return {
        "Source": "aws.cloudwatch",
        "DetailType": ALARM_STATE_CHANGE,
        "Resources": [alarm_arn],
        "Detail": json.dumps(
            {
                "alarmName": alarm_arn.rsplit(":", 1)[1],
                "state": {"value": state, "reason": "Threshold Crossed"},
                "previousState": {"value": "OK" if state == "ALARM" else "ALARM"},
            }
        ),
    }


def test_only_this_alarm_entering_alarm_reaches_the_bake(make_fleet):
    fleet = make_fleet(max_size=1)
    admin = fleet.aws.admin
    events, sqs = admin.client("events"), admin.client("sqs")
    # The queue stands in for the bake function: it records what the rule lets through.
    queue = sqs.create_queue(QueueName="bake-stand-in")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="agent-outdated", EventPattern=json.dumps(alarm_event_pattern(ALARM_ARN)))
    events.put_targets(Rule="agent-outdated", Targets=[{"Id": "bake", "Arn": queue_arn}])

    other_alarm = ALARM_ARN.replace("runner-agent-outdated", "boot-failures")
    events.put_events(
        Entries=[
            _alarm_event(ALARM_ARN, "OK"),
            _alarm_event(other_alarm, "ALARM"),
            _alarm_event(ALARM_ARN, "INSUFFICIENT_DATA"),
            _alarm_event(ALARM_ARN, "ALARM"),
        ]
    )
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 1
    delivered = json.loads(received[0]["Body"])
    assert delivered["resources"] == [ALARM_ARN]
    assert delivered["detail"]["state"]["value"] == "ALARM"
