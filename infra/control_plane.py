"""Seam for the control plane: what RunnerFleet hands over, and nothing deployed yet.

`ControlPlane` receives everything the control plane will need and registers it as outputs;
it creates no resource today. The control-plane issue adds, as children of this component:

* the webhook function (Function URL or API Gateway) that checks `X-Hub-Signature-256` with the
  webhook secret parameter and queues `workflow_job` events on SQS (with a dead-letter queue);
* the scaler (SQS + schedule) that sets the group's desired capacity from `fleet.scaling`,
  never below `warm_idle` idle runners and never above `max_size`;
* the lifecycle function on the launch hook (EventBridge rule on "EC2 Instance-launch Lifecycle
  Action" for `launch_hook_name`): creates a JIT config through the GitHub App and writes it
  with PutParameter as a SecureString under `kms_key_arn`, named
  `jit_parameter_template.format(instance_id=...)`, tagged `jit_instance_tag =
  arn:<partition>:ec2:<region>:<account>:instance/<instance-id>` (the instance policy only
  lets the instance whose ARN equals that tag read and delete it), then completes the hook
  with CONTINUE. A launch into the warm pool (origin EC2, destination WarmPool) gets no JIT
  config: complete it at once; the instance registers when it later enters service;
* the terminate-hook handler (spot interruption, rebalance, scale-in): deregisters the
  runner, records its job for retry, completes the hook;
* the reaper (schedule): deregisters offline runners, terminates instances that never
  registered within `registration_timeout_minutes`, enforces `max_runner_lifetime_minutes`
  (the group's own max_instance_lifetime is only a day-granular backstop), and deletes
  leftover JIT parameters;
* the DynamoDB job ledger, and the IAM roles of these functions (the GitHub App private key
  is readable by them only).

It must also keep the runner group's `allows_public_repositories` at
`allow_public_repositories` (false by default: see docs/deploy-aws.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pulumi


@dataclasses.dataclass(frozen=True)
class ControlPlaneArgs:
    """What the control plane needs from the rest of the fleet."""

    fleet_name: str
    github_scope: str
    runner_labels: Sequence[str]
    runner_group: str
    allow_public_repositories: bool
    asg_name: pulumi.Input[str]
    asg_arn: pulumi.Input[str]
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


class ControlPlane(pulumi.ComponentResource):
    """Webhook, scaler, lifecycle handler, reaper: outputs only until the control-plane issue."""

    def __init__(
        self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:control_plane:ControlPlane", name, None, opts)
        self.settings: dict[str, object] = {
            field.name: getattr(args, field.name) for field in dataclasses.fields(args)
        }
        self.settings["runner_labels"] = list(args.runner_labels)
        self.settings["github_app_parameter_names"] = dict(args.github_app_parameter_names)
        self.register_outputs(self.settings)
