"""The alarm on outdated runner agents and, when the bake takes the newest agent, the rule that
starts a bake when it fires (what and why: infra/agent_report.py). A trigger the rule cannot
deliver is retried, then lands in the bake function's dead-letter queue (alarmed there,
infra/bake_function.py), which only this rule may write to."""

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
from infra.iam_functions import dead_letter_queue_policy
from infra.image_pipeline import RunnerImagePipeline

BAKE_REASON = "RunnerAgentOutdated alarm: a runner's agent is too old for GitHub (exit 7)"
# EventBridge's retries of an invoke Lambda refuses (throttled, unavailable), for up to an
# hour (the alarm's period: a bake then is still the one asked for); then the dead letters.
TRIGGER_RETRIES = 8
TRIGGER_MAX_EVENT_AGE_SECONDS = 3600


class AgentFreshness:
    """Alarm, and (image pipeline + latest agent) rule, target, invoke permission and the
    bake dead letters' queue policy;
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
        if self.bakes and images is not None:
            self.bake_rule = self._bake_trigger(name, config, images, tags, opts)

    def _bake_trigger(
        self,
        name: str,
        config: FleetConfig,
        images: RunnerImagePipeline,
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions,
    ) -> aws.cloudwatch.EventRule:
        """The rule on the alarm entering ALARM, its target (retried, then dead letters), the
        invoke permission and the dead letters' queue policy; returns the rule."""
        rule = aws.cloudwatch.EventRule(
            f"{name}-outdated",
            description=f"runner fleet {config.fleet_name}: outdated agent alarm -> bake",
            event_pattern=self.alarm.arn.apply(lambda arn: json.dumps(alarm_event_pattern(arn))),
            tags=dict(tags),
            opts=opts,
        )
        function, dead_letters = images.bake.function, images.bake.dead_letters
        permission = aws.lambda_.Permission(
            f"{name}-outdated-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=opts,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-outdated-target",
            rule=rule.name,
            arn=function.arn,
            input=json.dumps({"reason": BAKE_REASON}),
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_retry_attempts=TRIGGER_RETRIES,
                maximum_event_age_in_seconds=TRIGGER_MAX_EVENT_AGE_SECONDS,
            ),
            dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=dead_letters.arn),
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=[permission])
            ),
        )
        aws.sqs.QueuePolicy(
            f"{name}-outdated-dead-letters-policy",
            queue_url=dead_letters.id,
            policy=pulumi.Output.all(dead_letters.arn, rule.arn).apply(
                lambda arns: json.dumps(
                    dead_letter_queue_policy(queue_arn=arns[0], rule_arns=[arns[1]])
                )
            ),
            opts=opts,
        )
        return rule
