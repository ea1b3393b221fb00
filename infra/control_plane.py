"""The control plane: webhook, queue, job ledger, scaler, lifecycle handler, reaper, alarms.

Four Lambda functions run `fleet.aws.handlers` from one package (infra/lambda_package.py), each
with its own role whose policy is a pure document from infra/iam_functions.py:

* webhook (function URL, auth NONE: the `X-Hub-Signature-256` check is the authentication)
  -> SQS deliveries queue (SSE, redrive to a dead-letter queue after 5 receives);
* scaler <- the queue (event source mapping with partial batch responses, at most 2 concurrent
  batches) and a 1-minute schedule: job ledger (DynamoDB) -> desired capacity;
* lifecycle <- EventBridge: the group's launch/terminate lifecycle actions and EC2 spot
  interruption warnings: JIT configs in SSM under the fleet's KMS key, runner release;
* reaper <- a 2-minute schedule: dead, offline and expired runners, leftover parameters,
  redelivery of failed webhook deliveries, stale jobs, runner-group public access.

githubMode scaleSet deploys a listener (a 1-minute schedule, one concurrent execution) in
place of the webhook and the scaler, plus the SSM String parameter where it remembers its
session; it has no webhook secret, deliveries queue, ledger or queued-too-long alarm (nothing
in that mode would use them: docs/control-plane.md).

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

import pulumi
import pulumi_aws as aws

from infra.alarms import control_plane_alarms
from infra.config import FLEET_TAG, SCALE_SET_MODE, ResourceNames
from infra.events import Events
from infra.functions import FUNCTION_SPECS, LAMBDA_ARCHITECTURE, Functions, functions_for
from infra.iam_functions import SCALER, ControlPlaneResources, function_policies
from infra.lambda_package import build_lambda_package
from infra.ledger_table import ledger_table
from infra.queues import Queues

PROJECT_ROOT = Path(__file__).resolve().parent.parent

METRICS_NAMESPACE = "RunnerFleet"
GITHUB_API_URL = "https://api.github.com"


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
    # "webhook" (a public webhook function) or "scaleSet" (a listener function, no public URL).
    github_mode: str = "webhook"
    # scaleSet mode: the SSM String parameter where the listener remembers its session.
    listener_session_parameter: str | None = None

    @property
    def scale_set(self) -> bool:
        return self.github_mode == SCALE_SET_MODE


def function_environment(
    args: ControlPlaneArgs,
    *,
    asg_name: str,
    kms_key_arn: str,
    queue_url: str | None,
    ledger_table: str | None,
    partition: str,
    account_id: str,
) -> dict[str, str]:
    """The functions' environment (fleet/aws/handlers/settings.py reads it): names only. The
    webhook secret, the deliveries queue and the ledger exist in webhook mode only."""
    names = args.github_app_parameter_names
    environment = {
        "FLEET_NAME": args.fleet_name,
        "FLEET_GITHUB_SCOPE": args.github_scope,
        "FLEET_GITHUB_API_URL": args.github_api_url,
        "FLEET_RUNNER_LABELS": ",".join(args.runner_labels),
        "FLEET_RUNNER_GROUP": args.runner_group,
        "FLEET_ALLOW_PUBLIC_REPOSITORIES": "true" if args.allow_public_repositories else "false",
        "FLEET_APP_ID_PARAMETER": names["app_id"],
        "FLEET_APP_PRIVATE_KEY_PARAMETER": names["private_key"],
        "FLEET_WEBHOOK_SECRET_PARAMETER": names.get("webhook_secret"),
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
        "FLEET_GITHUB_MODE": args.github_mode,
        **_scale_set_environment(args),
    }
    webhook_only = ("FLEET_WEBHOOK_SECRET_PARAMETER", "FLEET_QUEUE_URL", "FLEET_LEDGER_TABLE")
    if args.scale_set:
        return {k: v for k, v in environment.items() if k not in webhook_only}
    missing = [k for k in webhook_only if not environment[k]]
    if missing:
        raise ValueError(f"githubMode webhook needs {', '.join(missing)}")
    return environment  # type: ignore[return-value]  # every value is set


def _scale_set_environment(args: ControlPlaneArgs) -> dict[str, str]:
    """The variables only scaleSet mode has (webhook mode's environment is unchanged)."""
    if not args.scale_set:
        return {}
    if not args.listener_session_parameter:
        raise ValueError("githubMode scaleSet needs listener_session_parameter")
    return {"FLEET_LISTENER_SESSION_PARAMETER": args.listener_session_parameter}


class ControlPlane(pulumi.ComponentResource):
    """Webhook, queue, ledger, scaler, lifecycle handler, reaper, alarms (module docstring).

    Composed of small parts, each in its own module: ``Queues``, the ledger table,
    ``Functions``, ``Events`` and the alarms. They are plain classes whose resources are
    children of this component (not components of their own): resource URNs stay what they
    were, so a stack deployed before the split updates in place.
    """

    # Long on purpose: the composition of the control plane's parts, each one call; the outputs are
    # registered last.
    def __init__(
        self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:control_plane:ControlPlane", name, None, opts)
        self.settings: dict[str, object] = {
            field.name: getattr(args, field.name)
            for field in dataclasses.fields(args)
            if field.name not in ("tags", "build_dir", "project_root")
            and (args.scale_set or field.name != "listener_session_parameter")
        }
        self.settings["runner_labels"] = list(args.runner_labels)
        self.settings["github_app_parameter_names"] = dict(args.github_app_parameter_names)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        names = ResourceNames(args.name_prefix or f"runner-fleet-{args.fleet_name}")
        account = _Account.of(args)
        project_root = args.project_root or PROJECT_ROOT
        self.package = build_lambda_package(
            project_root, args.build_dir or project_root / "build", architecture=LAMBDA_ARCHITECTURE
        )
        function_names = {fn: names.function(fn) for fn in functions_for(args.github_mode)}
        webhook = not args.scale_set  # the deliveries queue and the ledger: webhook mode only
        queues = Queues(
            name,
            names,
            # Six times the consumer's timeout, as Lambda recommends for SQS sources.
            visibility_timeout=6 * FUNCTION_SPECS[SCALER].timeout,
            tags=tags,
            opts=child,
            webhook=webhook,
        )
        self.dead_letter_queue, self.queue = queues.dead_letters, queues.deliveries
        self.table = ledger_table(name, names, tags=tags, opts=child) if webhook else None
        self.listener_session = self._listener_session(name, args, tags, child)
        self.policy_documents = self._policies(args, account, function_names)
        parts = Functions(
            name,
            fleet_name=args.fleet_name,
            names=names,
            package=self.package,
            policies=self.policy_documents,
            environment=self._environment(args, account),
            dns_suffix=account.dns_suffix,
            tags=tags,
            parent=self,
            github_mode=args.github_mode,
        )
        self.functions, self.log_groups = parts.functions, parts.log_groups
        self.webhook_url = parts.webhook_url
        if self.queue is not None:
            parts.feed_scaler(name, self.queue, child)
        Events(
            name,
            fleet_name=args.fleet_name,
            asg_name=args.asg_name,
            functions=self.functions,
            dead_letters=self.dead_letter_queue,
            tags=tags,
            opts=child,
            github_mode=args.github_mode,
        )
        self.alarms = control_plane_alarms(
            name,
            names,
            fleet_name=args.fleet_name,
            metrics_namespace=args.metrics_namespace,
            dead_letters=self.dead_letter_queue,
            tags=tags,
            opts=child,
            github_mode=args.github_mode,
        )
        # scaleSet mode: no webhook function, no public URL, no deliveries queue, no ledger.
        self.webhook_url_value = self.webhook_url.function_url if self.webhook_url else None
        self.queue_url = self.queue.url if self.queue is not None else None
        self.dead_letter_queue_url = self.dead_letter_queue.url
        self.ledger_table = self.table.name if self.table is not None else None
        self.register_outputs(
            {
                **self.settings,
                "webhook_url": self.webhook_url_value,
                "queue_url": self.queue_url,
                "dead_letter_queue_url": self.dead_letter_queue_url,
                "ledger_table": self.ledger_table,
            }
        )

    @staticmethod
    def _listener_session(
        name: str, args: ControlPlaneArgs, tags: Mapping[str, str], child: pulumi.ResourceOptions
    ) -> aws.ssm.Parameter | None:
        """scaleSet mode: where the listener remembers the session it holds (``{}``: none).
        The listener writes it at run time; the stack owns it (so destroy removes it) and
        leaves its value alone."""
        if not args.scale_set:
            return None
        return aws.ssm.Parameter(
            f"{name}-listener-session",
            name=args.listener_session_parameter,
            description="scale-set session the listener function holds ({} when none)",
            type="String",
            tier="Standard",
            value="{}",
            tags=dict(tags),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(ignore_changes=["value"])
            ),
        )

    def _policies(
        self, args: ControlPlaneArgs, account: _Account, function_names: dict[str, str]
    ) -> pulumi.Output[dict[str, str]]:
        """Each function's policy document (infra/iam_functions.py) as JSON, once ARNs are known."""

        def render(values: Sequence[str | None]) -> dict[str, str]:
            kms_key_arn, dlq_arn, queue_arn, table_arn = values
            resources = ControlPlaneResources(
                partition=account.partition,
                region=account.region,
                account_id=account.account_id,
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
                listener_session_parameter=args.listener_session_parameter,
            )
            return {fn: json.dumps(doc) for fn, doc in function_policies(resources).items()}

        return pulumi.Output.all(
            args.kms_key_arn,
            self.dead_letter_queue.arn,
            self.queue.arn if self.queue is not None else None,
            self.table.arn if self.table is not None else None,
        ).apply(render)

    def _environment(
        self, args: ControlPlaneArgs, account: _Account
    ) -> pulumi.Output[dict[str, str]]:
        return pulumi.Output.all(
            args.kms_key_arn,
            self.queue.url if self.queue is not None else None,
            self.table.name if self.table is not None else None,
        ).apply(
            lambda values: function_environment(
                args,
                asg_name=args.asg_name,
                kms_key_arn=values[0],
                queue_url=values[1],
                ledger_table=values[2],
                partition=account.partition,
                account_id=account.account_id,
            )
        )


@dataclasses.dataclass(frozen=True)
class _Account:
    """Where the control plane is deployed (looked up when the args do not say)."""

    partition: str
    region: str
    account_id: str

    @classmethod
    def of(cls, args: ControlPlaneArgs) -> _Account:
        return cls(
            partition=args.partition or aws.get_partition().partition,
            region=args.region or aws.get_region().region,
            account_id=args.account_id or aws.get_caller_identity().account_id,
        )

    @property
    def dns_suffix(self) -> str:
        return "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"
