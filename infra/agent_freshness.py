"""The alarm on outdated runner agents and, when the bake takes the newest agent, the rule that
starts a bake when it fires (what and why: infra/agent_report.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.agent_report import (
    ALARM_PERIOD_SECONDS,
    ALARM_SUFFIX,
    METRIC_NAME,
    alarm_event_pattern,
    runner_metrics_namespace,
)
from infra.config import FleetConfig
from infra.image_pipeline import RunnerImagePipeline

BAKE_REASON = "RunnerAgentOutdated alarm: a runner's agent is too old for GitHub (exit 7)"


class AgentFreshness:
    """Alarm, and (image pipeline + latest agent) rule, target and invoke permission;
    children of ``opts``'s parent. ``bake_rule`` is None when no bake would help."""

    def __init__(
        self,
        name: str,
        *,
        config: FleetConfig,
        images: RunnerImagePipeline | None,
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions,
    ) -> None:
        self.bakes = images is not None and config.newest_agent_bakes
        remedy = (
            "a bake with the newest agent starts (image pipeline)"
            if self.bakes
            else "bake with a current agent (runnerVars actions_runner_version latest, or a "
            "newer pinned version; docs/deploy-aws.md)"
        )
        self.alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-outdated-alarm",
            name=config.names.alarm(ALARM_SUFFIX),
            alarm_description=f"A runner's agent is too old for GitHub (exit 7): {remedy}",
            namespace=runner_metrics_namespace(config.fleet_name),
            metric_name=METRIC_NAME,
            statistic="Sum",
            period=ALARM_PERIOD_SECONDS,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            tags=dict(tags),
            opts=opts,
        )
        self.bake_rule: aws.cloudwatch.EventRule | None = None
        if not self.bakes or images is None:
            return
        self.bake_rule = aws.cloudwatch.EventRule(
            f"{name}-outdated",
            description=f"runner fleet {config.fleet_name}: outdated agent alarm -> bake",
            event_pattern=self.alarm.arn.apply(lambda arn: json.dumps(alarm_event_pattern(arn))),
            tags=dict(tags),
            opts=opts,
        )
        function = images.bake.function
        permission = aws.lambda_.Permission(
            f"{name}-outdated-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="events.amazonaws.com",
            source_arn=self.bake_rule.arn,
            opts=opts,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-outdated-target",
            rule=self.bake_rule.name,
            arn=function.arn,
            input=json.dumps({"reason": BAKE_REASON}),
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=[permission])
            ),
        )
