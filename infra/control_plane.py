"""The control plane: webhook, queue, job ledger, scaler, lifecycle handler, reaper, alarms.

Four Lambda functions run `fleet.aws.handlers` from one package (infra/lambda_package.py), each
with its own role whose policy is a pure document from infra/iam.py:

* webhook (function URL, auth NONE: the `X-Hub-Signature-256` check is the authentication)
  -> SQS deliveries queue (SSE, redrive to a dead-letter queue after 5 receives);
* scaler <- the queue (event source mapping with partial batch responses, at most 2 concurrent
  batches) and a 1-minute schedule: job ledger (DynamoDB) -> desired capacity;
* lifecycle <- EventBridge: the group's launch/terminate lifecycle actions and EC2 spot
  interruption warnings: JIT configs in SSM under the fleet's KMS key, runner release;
* reaper <- a 2-minute schedule: dead, offline and expired runners, leftover parameters,
  redelivery of failed webhook deliveries, stale jobs, runner-group public access.

Events that fail every retry (EventBridge targets, Lambda async invocations) and messages
that fail `maxReceiveCount` times land in the dead-letter queue, which is alarmed; so are jobs
queued too long and instances that never register. Log groups are created here with a
retention, so nothing is kept forever. The functions' environment (`function_environment`)
holds names only: every secret is read from SSM at run time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import FLEET_TAG, ResourceNames
from infra.iam import (
    FUNCTIONS,
    LIFECYCLE,
    OPEN_JOBS_INDEX,
    REAPER,
    SCALER,
    WEBHOOK,
    ControlPlaneResources,
    dead_letter_queue_policy,
    function_policies,
    lambda_trust_policy,
)
from infra.lambda_package import build_lambda_package

PROJECT_ROOT = Path(__file__).resolve().parent.parent

LAMBDA_RUNTIME = "python3.12"
LAMBDA_ARCHITECTURE = "arm64"
LOG_RETENTION_DAYS = 30
MAX_RECEIVE_COUNT = 5
METRICS_NAMESPACE = "RunnerFleet"
GITHUB_API_URL = "https://api.github.com"
LAUNCH_EVENT = "EC2 Instance-launch Lifecycle Action"
TERMINATE_EVENT = "EC2 Instance-terminate Lifecycle Action"
SPOT_WARNING_EVENT = "EC2 Spot Instance Interruption Warning"


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    timeout: int  # seconds
    memory: int  # MB
    description: str


FUNCTION_SPECS: dict[str, FunctionSpec] = {
    # GitHub wants an answer within 10 s; the function does one SQS send.
    WEBHOOK: FunctionSpec(8, 256, "GitHub webhook: signature check, then SQS"),
    SCALER: FunctionSpec(60, 512, "job ledger and desired capacity"),
    LIFECYCLE: FunctionSpec(60, 256, "JIT configs on launch, runner release on termination"),
    REAPER: FunctionSpec(120, 512, "dead, offline and expired runners; reconciler"),
}
SCHEDULES = {SCALER: "rate(1 minute)", REAPER: "rate(2 minutes)"}
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


@dataclasses.dataclass(frozen=True)
class ControlPlaneArgs:
    """What the control plane needs from the rest of the fleet."""

    fleet_name: str
    github_scope: str
    runner_labels: Sequence[str]
    runner_group: str
    allow_public_repositories: bool
    # The group's fixed name (not its Output): the group depends on the control plane, so the
    # functions and rules exist before its first launch and outlive it on destroy.
    asg_name: str
    launch_hook_name: str
    terminate_hook_name: str
    kms_key_arn: pulumi.Input[str]
    parameter_root: str
    jit_parameter_template: str
    jit_instance_tag: str
    github_app_parameter_names: Mapping[str, str]
    min_size: int
    max_size: int
    warm_idle: int
    job_timeout_minutes: int
    max_runner_lifetime_minutes: int
    registration_timeout_minutes: int
    # Plain name the group is known by (policies and function names are built from it);
    # defaults to runner-fleet-<fleet_name>.
    name_prefix: str | None = None
    partition: str | None = None  # looked up when not given
    region: str | None = None
    account_id: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    build_dir: Path | None = None  # default <project>/build
    project_root: Path | None = None
    github_api_url: str = GITHUB_API_URL
    metrics_namespace: str = METRICS_NAMESPACE


def function_environment(
    args: ControlPlaneArgs,
    *,
    asg_name: str,
    kms_key_arn: str,
    queue_url: str,
    ledger_table: str,
    partition: str,
    account_id: str,
) -> dict[str, str]:
    """The functions' environment (fleet/aws/handlers/settings.py reads it): names only."""
    names = args.github_app_parameter_names
    return {
        "FLEET_NAME": args.fleet_name,
        "FLEET_GITHUB_SCOPE": args.github_scope,
        "FLEET_GITHUB_API_URL": args.github_api_url,
        "FLEET_RUNNER_LABELS": ",".join(args.runner_labels),
        "FLEET_RUNNER_GROUP": args.runner_group,
        "FLEET_ALLOW_PUBLIC_REPOSITORIES": "true" if args.allow_public_repositories else "false",
        "FLEET_APP_ID_PARAMETER": names["app_id"],
        "FLEET_APP_PRIVATE_KEY_PARAMETER": names["private_key"],
        "FLEET_WEBHOOK_SECRET_PARAMETER": names["webhook_secret"],
        "FLEET_ASG_NAME": asg_name,
        "FLEET_FLEET_TAG": FLEET_TAG,
        "FLEET_KMS_KEY_ARN": kms_key_arn,
        "FLEET_JIT_PARAMETER_TEMPLATE": args.jit_parameter_template,
        "FLEET_JIT_INSTANCE_TAG": args.jit_instance_tag,
        "FLEET_QUEUE_URL": queue_url,
        "FLEET_LEDGER_TABLE": ledger_table,
        "FLEET_METRICS_NAMESPACE": args.metrics_namespace,
        "FLEET_AWS_PARTITION": partition,
        "FLEET_AWS_ACCOUNT_ID": account_id,
        "FLEET_MIN_SIZE": str(args.min_size),
        "FLEET_MAX_SIZE": str(args.max_size),
        "FLEET_WARM_IDLE": str(args.warm_idle),
        "FLEET_BOOT_DEADLINE_MINUTES": str(args.registration_timeout_minutes),
        "FLEET_MAX_LIFETIME_MINUTES": str(args.max_runner_lifetime_minutes),
        "FLEET_JOB_TIMEOUT_MINUTES": str(args.job_timeout_minutes),
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


class ControlPlane(pulumi.ComponentResource):
    """Webhook, queue, ledger, scaler, lifecycle handler, reaper, alarms (module docstring)."""

    def __init__(
        self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:control_plane:ControlPlane", name, None, opts)
        self.settings: dict[str, object] = {
            field.name: getattr(args, field.name)
            for field in dataclasses.fields(args)
            if field.name not in ("tags", "build_dir", "project_root")
        }
        self.settings["runner_labels"] = list(args.runner_labels)
        self.settings["github_app_parameter_names"] = dict(args.github_app_parameter_names)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        names = ResourceNames(args.name_prefix or f"runner-fleet-{args.fleet_name}")
        partition = args.partition or aws.get_partition().partition
        region = args.region or aws.get_region().region
        account_id = args.account_id or aws.get_caller_identity().account_id
        dns_suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
        project_root = args.project_root or PROJECT_ROOT
        self.package = build_lambda_package(
            project_root, args.build_dir or project_root / "build", architecture=LAMBDA_ARCHITECTURE
        )
        function_names = {fn: names.function(fn) for fn in FUNCTIONS}

        # Queue and dead letters.
        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dead-letters",
            name=names.dead_letter_queue,
            message_retention_seconds=14 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            tags=tags,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-deliveries",
            name=names.deliveries_queue,
            # Six times the consumer's timeout, as Lambda recommends for SQS sources.
            visibility_timeout_seconds=6 * FUNCTION_SPECS[SCALER].timeout,
            message_retention_seconds=4 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dead_letter_queue.arn.apply(
                lambda arn: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
                )
            ),
            tags=tags,
            opts=child,
        )

        # Job ledger.
        self.table = aws.dynamodb.Table(
            f"{name}-ledger",
            name=names.ledger_table,
            billing_mode="PAY_PER_REQUEST",
            hash_key="pk",
            attributes=[
                aws.dynamodb.TableAttributeArgs(name="pk", type="S"),
                aws.dynamodb.TableAttributeArgs(name="open_fleet", type="S"),
                aws.dynamodb.TableAttributeArgs(name="queued_at", type="S"),
            ],
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=OPEN_JOBS_INDEX,
                    key_schemas=[
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name="open_fleet", key_type="HASH"
                        ),
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name="queued_at", key_type="RANGE"
                        ),
                    ],
                    projection_type="ALL",
                )
            ],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name="expires_at", enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            tags=tags,
            opts=child,
        )

        # Roles, log groups, functions.
        def render_policies(values: Sequence[str]) -> dict[str, str]:
            kms_key_arn, queue_arn, dlq_arn, table_arn = values
            resources = ControlPlaneResources(
                partition=partition,
                region=region,
                account_id=account_id,
                fleet_name=args.fleet_name,
                asg_name=args.asg_name,
                parameter_root=args.parameter_root,
                kms_key_arn=kms_key_arn,
                queue_arn=queue_arn,
                dead_letter_queue_arn=dlq_arn,
                table_arn=table_arn,
                metrics_namespace=args.metrics_namespace,
                github_app_parameter_names=args.github_app_parameter_names,
                function_names=function_names,
            )
            return {fn: json.dumps(doc) for fn, doc in function_policies(resources).items()}

        self.policy_documents = pulumi.Output.all(
            args.kms_key_arn,
            self.queue.arn,
            self.dead_letter_queue.arn,
            self.table.arn,
        ).apply(render_policies)
        environment = pulumi.Output.all(args.kms_key_arn, self.queue.url, self.table.name).apply(
            lambda values: function_environment(
                args,
                asg_name=args.asg_name,
                kms_key_arn=values[0],
                queue_url=values[1],
                ledger_table=values[2],
                partition=partition,
                account_id=account_id,
            )
        )
        self.functions: dict[str, aws.lambda_.Function] = {}
        self.log_groups: dict[str, aws.cloudwatch.LogGroup] = {}
        for fn in FUNCTIONS:
            spec = FUNCTION_SPECS[fn]
            role = aws.iam.Role(
                f"{name}-{fn}-role",
                description=f"runner fleet {args.fleet_name}: {fn} function",
                assume_role_policy=json.dumps(lambda_trust_policy(dns_suffix)),
                tags=tags,
                opts=child,
            )
            policy = aws.iam.RolePolicy(
                f"{name}-{fn}-policy",
                role=role.id,
                policy=self.policy_documents.apply(lambda docs, fn=fn: docs[fn]),
                opts=child,
            )
            log_group = aws.cloudwatch.LogGroup(
                f"{name}-{fn}-logs",
                name=names.log_group(fn),
                retention_in_days=LOG_RETENTION_DAYS,
                tags=tags,
                opts=child,
            )
            self.log_groups[fn] = log_group
            self.functions[fn] = aws.lambda_.Function(
                f"{name}-{fn}",
                name=function_names[fn],
                description=spec.description,
                runtime=LAMBDA_RUNTIME,
                architectures=[LAMBDA_ARCHITECTURE],
                handler=f"fleet.aws.handlers.{fn}.handler",
                code=pulumi.FileArchive(str(self.package.path)),
                source_code_hash=self.package.source_code_hash,
                role=role.arn,
                timeout=spec.timeout,
                memory_size=spec.memory,
                environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
                logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                    log_format="JSON", log_group=log_group.name
                ),
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, log_group]),
            )

        # Webhook endpoint: a function URL, open to the internet; the signature is the auth.
        webhook = self.functions[WEBHOOK]
        self.webhook_url = aws.lambda_.FunctionUrl(
            f"{name}-webhook-url",
            function_name=webhook.name,
            authorization_type="NONE",
            invoke_mode="BUFFERED",
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-webhook-url-public",
            action="lambda:InvokeFunctionUrl",
            function=webhook.name,
            principal="*",
            function_url_auth_type="NONE",
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-webhook-invoke-via-url",
            action="lambda:InvokeFunction",
            function=webhook.name,
            principal="*",
            invoked_via_function_url=True,
            opts=child,
        )

        # Deliveries -> scaler, partial batch responses, bounded concurrency.
        aws.lambda_.EventSourceMapping(
            f"{name}-deliveries-to-scaler",
            event_source_arn=self.queue.arn,
            function_name=self.functions[SCALER].arn,
            batch_size=100,
            maximum_batching_window_in_seconds=2,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=2),
            opts=child,
        )

        # EventBridge: schedules and the group's events.
        rules: dict[str, aws.cloudwatch.EventRule] = {}
        for fn, expression in SCHEDULES.items():
            rules[f"{fn}-schedule"] = aws.cloudwatch.EventRule(
                f"{name}-{fn}-schedule",
                description=f"runner fleet {args.fleet_name}: run the {fn}",
                schedule_expression=expression,
                tags=tags,
                opts=child,
            )
        rules["lifecycle"] = aws.cloudwatch.EventRule(
            f"{name}-lifecycle-events",
            description=f"runner fleet {args.fleet_name}: lifecycle actions of its group",
            event_pattern=json.dumps(lifecycle_event_pattern(args.asg_name)),
            tags=tags,
            opts=child,
        )
        rules["spot"] = aws.cloudwatch.EventRule(
            f"{name}-spot-warnings",
            description=f"runner fleet {args.fleet_name}: spot interruption warnings",
            event_pattern=json.dumps(spot_warning_event_pattern()),
            tags=tags,
            opts=child,
        )
        targets = {
            "scaler-schedule": SCALER,
            "reaper-schedule": REAPER,
            "lifecycle": LIFECYCLE,
            "spot": LIFECYCLE,
        }
        for key, fn in targets.items():
            rule = rules[key]
            aws.cloudwatch.EventTarget(
                f"{name}-{key}-target",
                rule=rule.name,
                arn=self.functions[fn].arn,
                retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                    maximum_event_age_in_seconds=600, maximum_retry_attempts=8
                ),
                dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(
                    arn=self.dead_letter_queue.arn
                ),
                opts=child,
            )
            aws.lambda_.Permission(
                f"{name}-{key}-invoke",
                action="lambda:InvokeFunction",
                function=self.functions[fn].name,
                principal="events.amazonaws.com",
                source_arn=rule.arn,
                opts=child,
            )
        aws.sqs.QueuePolicy(
            f"{name}-dead-letters-policy",
            queue_url=self.dead_letter_queue.id,
            policy=pulumi.Output.all(
                self.dead_letter_queue.arn, *[rule.arn for rule in rules.values()]
            ).apply(
                lambda values: json.dumps(
                    dead_letter_queue_policy(queue_arn=values[0], rule_arns=values[1:])
                )
            ),
            opts=child,
        )
        # Async invocations that fail every retry go to the dead-letter queue too.
        for fn in (SCALER, LIFECYCLE, REAPER):
            aws.lambda_.FunctionEventInvokeConfig(
                f"{name}-{fn}-async",
                function_name=self.functions[fn].name,
                maximum_retry_attempts=2,
                # A launch hook waits at most 10 minutes for its JIT config.
                maximum_event_age_in_seconds=600,
                destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
                    on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                        destination=self.dead_letter_queue.arn
                    )
                ),
                opts=child,
            )

        # Alarms (no actions: subscribe your paging to them, see docs/deploy-aws.md).
        self.alarms = {
            "dead-letters": self._nonzero_alarm(
                f"{name}-dead-letters-alarm",
                alarm_name=names.alarm("dead-letters-not-empty"),
                description="A webhook delivery or control plane event failed every retry",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": self.dead_letter_queue.name},
                statistic="Maximum",
                tags=tags,
            )
        }
        for key, (name_suffix, metric_name, statistic, description) in FLEET_ALARMS.items():
            self.alarms[key] = self._nonzero_alarm(
                f"{name}-{key}-alarm",
                alarm_name=names.alarm(name_suffix),
                description=description,
                namespace=args.metrics_namespace,
                metric_name=metric_name,
                dimensions={"Fleet": args.fleet_name},
                statistic=statistic,
                tags=tags,
            )

        self.webhook_url_value = self.webhook_url.function_url
        self.queue_url = self.queue.url
        self.dead_letter_queue_url = self.dead_letter_queue.url
        self.ledger_table = self.table.name
        self.register_outputs(
            {
                **self.settings,
                "webhook_url": self.webhook_url_value,
                "queue_url": self.queue_url,
                "dead_letter_queue_url": self.dead_letter_queue_url,
                "ledger_table": self.ledger_table,
            }
        )

    def _nonzero_alarm(
        self,
        resource_name: str,
        *,
        alarm_name: str,
        description: str,
        namespace: pulumi.Input[str],
        metric_name: str,
        dimensions: Mapping[str, pulumi.Input[str]],
        statistic: str,
        tags: Mapping[str, str],
    ) -> aws.cloudwatch.MetricAlarm:
        """An alarm (child of the control plane) that fires when a 5-minute statistic is above 0;
        no data counts as fine."""
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
            opts=pulumi.ResourceOptions(parent=self),
        )
