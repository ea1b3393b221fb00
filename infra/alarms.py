"""The control plane's alarms. They have no actions: subscribe your paging to them (see
docs/deploy-aws.md)."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.config import ResourceNames, alarm_suffixes

# Alarms on the fleet's own metrics (the functions publish them, dimension Fleet):
# key -> (alarm name after the prefix, metric, statistic, description).
FLEET_ALARMS = {
    "queued-too-long": (
        "jobs-queued-too-long",
        "JobsQueuedTooLong",
        "Maximum",
        "Jobs wait for a runner longer than the threshold",
    ),
    "boot-failures": (
        "boot-failures",
        "BootFailures",
        "Sum",
        "Instances did not register their runner by the boot deadline",
    ),
}


def nonzero_alarm(
    resource_name: str,
    *,
    alarm_name: str,
    description: str,
    namespace: pulumi.Input[str],
    metric_name: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    statistic: str,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """An alarm that fires when a 5-minute statistic is above 0; no data counts as fine."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=alarm_name,
        alarm_description=description,
        namespace=namespace,
        metric_name=metric_name,
        dimensions=dimensions,
        statistic=statistic,
        period=300,
        evaluation_periods=1,
        threshold=0,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching",
        tags=tags,
        opts=opts,
    )


def control_plane_alarms(
    name: str,
    names: ResourceNames,
    *,
    fleet_name: str,
    metrics_namespace: str,
    dead_letters: aws.sqs.Queue,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
    github_mode: str = "webhook",
) -> dict[str, aws.cloudwatch.MetricAlarm]:
    """Dead letters not empty, jobs queued too long (webhook mode: the ledger's jobs; nothing
    emits the metric in scaleSet mode), instances that never registered."""
    alarms = {
        "dead-letters": nonzero_alarm(
            f"{name}-dead-letters-alarm",
            alarm_name=names.alarm("dead-letters-not-empty"),
            description="A webhook delivery or control plane event failed every retry",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dead_letters.name},
            statistic="Maximum",
            tags=tags,
            opts=opts,
        )
    }
    for key, (name_suffix, metric_name, statistic, description) in FLEET_ALARMS.items():
        if name_suffix not in alarm_suffixes(github_mode):
            continue
        alarms[key] = nonzero_alarm(
            f"{name}-{key}-alarm",
            alarm_name=names.alarm(name_suffix),
            description=description,
            namespace=metrics_namespace,
            metric_name=metric_name,
            dimensions={"Fleet": fleet_name},
            statistic=statistic,
            tags=tags,
            opts=opts,
        )
    return alarms
