"""The control plane's four Lambda functions: each with its own role (a pure policy document
from infra/iam.py), a log group with a retention, and the one package (infra/lambda_package.py);
plus the webhook's public function URL and the deliveries queue feeding the scaler."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.config import ResourceNames, control_plane_functions
from infra.iam_functions import (
    LIFECYCLE,
    LISTENER,
    REAPER,
    SCALER,
    WEBHOOK,
    lambda_trust_policy,
)
from infra.lambda_package import LambdaPackage

LAMBDA_RUNTIME = "python3.12"
LAMBDA_ARCHITECTURE = "arm64"
LOG_RETENTION_DAYS = 30


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
    # githubMode scaleSet: holds a session for all but the last 100 s of its 15 minutes.
    LISTENER: FunctionSpec(900, 512, "runner scale set listener: desired capacity"),
}
# One listener at a time: a second would only get 409 from the scale set's one session.
LISTENER_CONCURRENCY = 1


def functions_for(github_mode: str) -> tuple[str, ...]:
    """The functions a mode deploys: webhook mode the four; scaleSet mode a listener instead
    of the webhook (no public URL). The config model names and checks the same set
    (``ResourceNames.functions``)."""
    return control_plane_functions(github_mode)


class Functions:
    """Role, policy, log group and function per entry of ``FUNCTIONS``; children of
    ``parent``. ``policies`` and ``environment`` are Outputs of plain values."""

    # Long on purpose: each function's role, policy, log group and function side by side, in the
    # order Lambda needs them.
    def __init__(
        self,
        name: str,
        *,
        fleet_name: str,
        names: ResourceNames,
        package: LambdaPackage,
        policies: pulumi.Output[dict[str, str]],
        environment: pulumi.Output[dict[str, str]],
        dns_suffix: str,
        tags: Mapping[str, str],
        parent: pulumi.Resource,
        github_mode: str = "webhook",
    ) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        self.functions: dict[str, aws.lambda_.Function] = {}
        self.log_groups: dict[str, aws.cloudwatch.LogGroup] = {}
        for fn in functions_for(github_mode):
            spec = FUNCTION_SPECS[fn]
            role = aws.iam.Role(
                f"{name}-{fn}-role",
                description=f"runner fleet {fleet_name}: {fn} function",
                assume_role_policy=json.dumps(lambda_trust_policy(dns_suffix)),
                tags=tags,
                opts=child,
            )
            policy = aws.iam.RolePolicy(
                f"{name}-{fn}-policy",
                role=role.id,
                policy=policies.apply(lambda docs, fn=fn: docs[fn]),
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
                name=names.function(fn),
                description=spec.description,
                runtime=LAMBDA_RUNTIME,
                architectures=[LAMBDA_ARCHITECTURE],
                handler=f"fleet.aws.handlers.{fn}.handler",
                code=pulumi.FileArchive(str(package.path)),
                source_code_hash=package.source_code_hash,
                role=role.arn,
                timeout=spec.timeout,
                memory_size=spec.memory,
                reserved_concurrent_executions=LISTENER_CONCURRENCY if fn == LISTENER else None,
                environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
                logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                    log_format="JSON", log_group=log_group.name
                ),
                tags=tags,
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[policy, log_group]),
            )
        self.webhook_url = self._public_webhook_url(name, child)

    def _public_webhook_url(
        self, name: str, child: pulumi.ResourceOptions
    ) -> aws.lambda_.FunctionUrl | None:
        """A function URL open to the internet: the signature check is the authentication.
        None in scaleSet mode (no webhook function)."""
        if WEBHOOK not in self.functions:
            return None
        webhook = self.functions[WEBHOOK]
        url = aws.lambda_.FunctionUrl(
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
        return url

    def feed_scaler(
        self, name: str, queue: aws.sqs.Queue, child: pulumi.ResourceOptions
    ) -> aws.lambda_.EventSourceMapping:
        """Deliveries -> scaler: partial batch responses, at most 2 concurrent batches."""
        return aws.lambda_.EventSourceMapping(
            f"{name}-deliveries-to-scaler",
            event_source_arn=queue.arn,
            function_name=self.functions[SCALER].arn,
            batch_size=100,
            maximum_batching_window_in_seconds=2,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=2),
            opts=child,
        )
