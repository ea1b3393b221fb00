"""An outdated runner agent on AWS: how it is reported, and what the program needs to know.

Pure (no Pulumi): names, the instance's one extra IAM statement and the event pattern.
infra/agent_freshness.py declares the resources; infra/user_data writes the namespace into
fleet.env. The config model (fleet.core.config) derives and checks the alarm's name with the
fleet's other names, reads the agent's mode from the stack's runnerVars
(``FleetConfig.newest_agent_bakes``) and refuses ``latest`` with a checksum of its own.

The report: actions-runner.service runs the agent with
``ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1``, so an agent GitHub deems too old
exits 7 (the actions_runner role). The unit's ``ExecStopPost`` (runner-terminate-self, which
leaves the group after every run) sees ``EXIT_STATUS=7`` and, before leaving, puts one
``RunnerAgentOutdated`` datapoint into the fleet's own runner namespace
``RunnerFleet/Runners/<fleet>``. Least privilege: ``cloudwatch:PutMetricData`` takes no
resource, and its one condition key, ``cloudwatch:namespace``, limits the instance to that
namespace, so a job that escapes to its host can at worst raise this fleet's alarm (and start
one bake an hour, below); it cannot write the control plane's metrics (``RunnerFleet``) nor
another fleet's. The instance already runs the AWS CLI (its boot script and leaving the
group), so nothing new is installed.

What the report starts: an alarm on that metric (sum over one hour above 0) and, when the
stack bakes images with the newest agent (runnerVars ``actions_runner_version: latest`` and
the image pipeline on), an EventBridge rule on the alarm entering ALARM that invokes the bake
function (StartImagePipelineExecution on this pipeline only). The alarm enters ALARM once per
episode and stays there while runners keep reporting, so one outdated image starts one bake,
not one per runner. With a pinned agent a bake would bake the same agent again: the alarm
then asks for a new pin (docs/deploy-aws.md).
"""

from __future__ import annotations

from typing import Any

from fleet.core.config.names import AGENT_OUTDATED_ALARM

__all__ = [
    "ALARM_PERIOD_SECONDS",
    "ALARM_SUFFIX",
    "METRIC_NAME",
    "alarm_event_pattern",
    "report_outdated_agent_statement",
    "runner_metrics_namespace",
]

OUTDATED_EXIT_STATUS = 7
METRIC_NAME = "RunnerAgentOutdated"
# The alarm's name is derived and checked with the fleet's other names (fleet.core.config).
ALARM_SUFFIX = AGENT_OUTDATED_ALARM
# One hour: a bake takes 20-40 minutes; runners launched from the old image meanwhile keep the
# alarm where it is instead of starting a second bake.
ALARM_PERIOD_SECONDS = 3600
RUNNER_NAMESPACE_PREFIX = "RunnerFleet/Runners"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


def runner_metrics_namespace(fleet_name: str) -> str:
    """The namespace a fleet's runner instances may write to (and nothing else may need)."""
    return f"{RUNNER_NAMESPACE_PREFIX}/{fleet_name}"


def report_outdated_agent_statement(fleet_name: str) -> dict[str, Any]:
    """The runner instance's permission to report: its fleet's runner namespace only."""
    return {
        "Sid": "ReportOutdatedAgent",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",  # PutMetricData has no resource-level permissions
        "Condition": {
            "StringEquals": {"cloudwatch:namespace": runner_metrics_namespace(fleet_name)}
        },
    }


def alarm_event_pattern(alarm_arn: str) -> dict[str, Any]:
    """EventBridge pattern: this alarm entering ALARM (not OK, not INSUFFICIENT_DATA)."""
    return {
        "source": ["aws.cloudwatch"],
        "detail-type": [ALARM_STATE_CHANGE],
        "resources": [alarm_arn],
        "detail": {"state": {"value": ["ALARM"]}},
    }
