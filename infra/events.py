"""What starts the functions besides webhooks: EventBridge schedules (scaler, reaper), the
group's lifecycle actions and EC2 spot warnings (lifecycle). Events that fail every retry, and
async invocations that do, land in the dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.iam_functions import LIFECYCLE, LISTENER, REAPER, SCALER, dead_letter_queue_policy
from infra.queues import failed_invocations_to

SCHEDULES = {SCALER: "rate(1 minute)", REAPER: "rate(2 minutes)"}
LAUNCH_EVENT = "EC2 Instance-launch Lifecycle Action"
TERMINATE_EVENT = "EC2 Instance-terminate Lifecycle Action"
SPOT_WARNING_EVENT = "EC2 Spot Instance Interruption Warning"
# githubMode scaleSet: the listener every minute instead of the scaler (which runs inside it).
SCALE_SET_SCHEDULES = {LISTENER: "rate(1 minute)", REAPER: "rate(2 minutes)"}
# Rule key -> the function it starts.
TARGETS = {
    "scaler-schedule": SCALER,
    "reaper-schedule": REAPER,
    "lifecycle": LIFECYCLE,
    "spot": LIFECYCLE,
}


def lifecycle_event_pattern(asg_name: str) -> dict[str, Any]:
    """EventBridge pattern: this group's launch and terminate lifecycle actions."""
    return {
        "source": ["aws.autoscaling"],
        "detail-type": [LAUNCH_EVENT, TERMINATE_EVENT],
        "detail": {"AutoScalingGroupName": [asg_name]},
    }


def spot_warning_event_pattern() -> dict[str, Any]:
    """EventBridge pattern: spot interruption warnings (the function keeps its fleet's)."""
    return {"source": ["aws.ec2"], "detail-type": [SPOT_WARNING_EVENT]}


class Events:
    """Rules, their targets and invoke permissions, the dead-letter queue's policy, and the
    async invocation settings; children of ``opts``'s parent."""

    # Long on purpose: a component's resources declared in dependency order in its constructor, as
    # Pulumi's examples do.
    def __init__(
        self,
        name: str,
        *,
        fleet_name: str,
        asg_name: str,
        functions: Mapping[str, aws.lambda_.Function],
        dead_letters: aws.sqs.Queue,
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions,
        github_mode: str = "webhook",
    ) -> None:
        scale_set = github_mode == "scaleSet"
        schedules = SCALE_SET_SCHEDULES if scale_set else SCHEDULES
        self.rules = self._rules(name, fleet_name, asg_name, tags, opts, schedules)
        targets = {f"{fn}-schedule": fn for fn in schedules}
        targets.update(lifecycle=LIFECYCLE, spot=LIFECYCLE)
        for key, fn in targets.items():
            rule = self.rules[key]
            # A listener tick that finds the last run still listening is throttled (one
            # concurrent execution): drop it, the next minute's tick comes anyway.
            retry = (0, 60) if fn == LISTENER else (8, 600)
            aws.cloudwatch.EventTarget(
                f"{name}-{key}-target",
                rule=rule.name,
                arn=functions[fn].arn,
                retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                    maximum_event_age_in_seconds=retry[1], maximum_retry_attempts=retry[0]
                ),
                dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(
                    arn=dead_letters.arn
                ),
                opts=opts,
            )
            aws.lambda_.Permission(
                f"{name}-{key}-invoke",
                action="lambda:InvokeFunction",
                function=functions[fn].name,
                principal="events.amazonaws.com",
                source_arn=rule.arn,
                opts=opts,
            )
        aws.sqs.QueuePolicy(
            f"{name}-dead-letters-policy",
            queue_url=dead_letters.id,
            policy=pulumi.Output.all(
                dead_letters.arn, *[rule.arn for rule in self.rules.values()]
            ).apply(
                lambda values: json.dumps(
                    dead_letter_queue_policy(queue_arn=values[0], rule_arns=values[1:])
                )
            ),
            opts=opts,
        )
        # Async invocations that fail every retry go to the dead-letter queue too.
        for fn in (SCALER, LIFECYCLE, REAPER, LISTENER):
            if fn not in functions:
                continue
            failed_invocations_to(
                f"{name}-{fn}-async",
                functions[fn],
                dead_letters,
                retries=0 if fn == LISTENER else 2,
                # A launch hook waits at most 10 minutes for its JIT config; a listener tick
                # is worth nothing a minute late.
                max_event_age_seconds=60 if fn == LISTENER else 600,
                opts=opts,
            )

    @staticmethod
    def _rules(
        name: str,
        fleet_name: str,
        asg_name: str,
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions,
        schedules: Mapping[str, str],
    ) -> dict[str, aws.cloudwatch.EventRule]:
        rules: dict[str, aws.cloudwatch.EventRule] = {}
        for fn, expression in schedules.items():
            rules[f"{fn}-schedule"] = aws.cloudwatch.EventRule(
                f"{name}-{fn}-schedule",
                description=f"runner fleet {fleet_name}: run the {fn}",
                schedule_expression=expression,
                tags=tags,
                opts=opts,
            )
        rules["lifecycle"] = aws.cloudwatch.EventRule(
            f"{name}-lifecycle-events",
            description=f"runner fleet {fleet_name}: lifecycle actions of its group",
            event_pattern=json.dumps(lifecycle_event_pattern(asg_name)),
            tags=tags,
            opts=opts,
        )
        rules["spot"] = aws.cloudwatch.EventRule(
            f"{name}-spot-warnings",
            description=f"runner fleet {fleet_name}: spot interruption warnings",
            event_pattern=json.dumps(spot_warning_event_pattern()),
            tags=tags,
            opts=opts,
        )
        return rules
