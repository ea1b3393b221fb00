"""The runner Auto Scaling group.

Who changes capacity: the control plane's scaler sets desired capacity (Pulumi ignores it
after creation) and scales in only explicitly: it deregisters a runner, re-checks that it is
not busy, then calls TerminateInstanceInAutoScalingGroup. The group itself must never pick
a busy runner, hence:

* `protect_from_scale_in`: every new instance is protected, so lowering desired capacity
  never terminates a runner.
* AZRebalance is suspended: rebalancing would otherwise launch elsewhere and terminate here.
* Scale-in protection only partly covers Spot. AWS interrupts Spot capacity whatever the
  protection; with Capacity Rebalancing (on whenever spotPercentage > 0) the group launches a
  replacement on a rebalance recommendation, and protection is not a documented guarantee
  that the at-risk instance survives until its job ends. So the terminate lifecycle hook
  holds every termination (scale-in, rebalance, interruption) for the control plane, which
  deregisters the runner and records its job for retry before completing the hook. Keep
  spotPercentage at 0 for jobs that cannot be retried.

Lifetime: the reaper enforces maxRunnerLifetimeMinutes. `max_instance_lifetime` is only a
backstop, the next whole day beyond that lifetime (AWS accepts 1-365 days), so it can never
act before the reaper does.

Lifecycle hooks are declared as `initial_lifecycle_hooks` so they exist before the first
instance launches (a separate LifecycleHook resource would race the group's first launches).
EventBridge receives their events; no notification target is needed. The group depends on
the control plane (infra/fleet.py), so the function and rule that answer the hooks exist
before the first launch and are deleted only after the group.

Tear-down: no forced delete. The provider drains the group (capacity 0, instance scale-in
protection removed), each instance passes the terminate hook and the control plane
deregisters its runner; only then is the group deleted, and the control plane after it.

Instance refresh: a new launch template version (new image, user data or playbook bundle)
starts a rolling refresh that skips protected instances (`scale_in_protected_instances=
Ignore`), so busy runners finish their job; one-job runners are replaced as they leave.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.config import FleetConfig

LAUNCH_HOOK_HEARTBEAT_S = 600
# A warm-pool instance completes the launch hook itself once its bake is done: on a stock
# image that takes minutes (packages, the toolchain, the agent).
WARM_POOL_STOCK_LAUNCH_HOOK_HEARTBEAT_S = 1800
TERMINATE_HOOK_HEARTBEAT_S = 300
# `pulumi destroy` drains the warm pool, then the group, each bounded by this timeout.
DELETE_TIMEOUT_MINUTES = 30

ENABLED_METRICS = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
    "WarmPoolTotalCapacity",
]


class RunnerGroupArgs:
    """Inputs of RunnerGroup."""

    def __init__(
        self,
        *,
        config: FleetConfig,
        launch_template_id: pulumi.Input[str],
        launch_template_version: pulumi.Input[int],
        subnet_ids: pulumi.Input[list[str]],
        tags: Mapping[str, pulumi.Input[str]],
        depends_on: list[pulumi.Resource] | None = None,
    ) -> None:
        self.config = config
        self.launch_template_id = launch_template_id
        self.launch_template_version = launch_template_version
        self.subnet_ids = subnet_ids
        self.tags = tags
        self.depends_on = depends_on or []


def lifecycle_hooks(cfg: FleetConfig) -> list[aws.autoscaling.GroupInitialLifecycleHookArgs]:
    """Launch hook (control plane writes the JIT config) and terminate hook (deregistration)."""
    return [
        aws.autoscaling.GroupInitialLifecycleHookArgs(
            name=cfg.launch_hook_name,
            lifecycle_transition="autoscaling:EC2_INSTANCE_LAUNCHING",
            # No JIT config in time: drop the instance rather than keep a runner that never
            # registers.
            default_result="ABANDON",
            heartbeat_timeout=(
                WARM_POOL_STOCK_LAUNCH_HOOK_HEARTBEAT_S
                if cfg.warm_pool_size and not cfg.baked_image
                else LAUNCH_HOOK_HEARTBEAT_S
            ),
        ),
        aws.autoscaling.GroupInitialLifecycleHookArgs(
            name=cfg.terminate_hook_name,
            lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
            # Termination proceeds even if the control plane is down.
            default_result="CONTINUE",
            heartbeat_timeout=TERMINATE_HOOK_HEARTBEAT_S,
        ),
    ]


class RunnerGroup(pulumi.ComponentResource):
    """Auto Scaling group of one-job runners."""

    # Long on purpose: a component's resources declared in dependency order in its constructor, as
    # Pulumi's examples do.
    def __init__(
        self, name: str, args: RunnerGroupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:autoscaling:RunnerGroup", name, None, opts)
        cfg = args.config
        template = {
            "launch_template_id": args.launch_template_id,
            "version": pulumi.Output.from_input(args.launch_template_version).apply(str),
        }
        if cfg.warm_pool_size:
            # AWS refuses warm pools on groups with a mixed instances policy (validated).
            placement: dict = {
                "launch_template": aws.autoscaling.GroupLaunchTemplateArgs(
                    id=template["launch_template_id"], version=template["version"]
                ),
                "warm_pool": aws.autoscaling.GroupWarmPoolArgs(
                    pool_state=cfg.warm_pool_state,
                    min_size=cfg.warm_pool_size,
                    max_group_prepared_capacity=cfg.warm_pool_size,
                    instance_reuse_policy=aws.autoscaling.GroupWarmPoolInstanceReusePolicyArgs(
                        reuse_on_scale_in=False
                    ),
                ),
            }
        else:
            placement = {
                "mixed_instances_policy": aws.autoscaling.GroupMixedInstancesPolicyArgs(
                    instances_distribution=aws.autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                        on_demand_base_capacity=cfg.on_demand_base_capacity,
                        on_demand_percentage_above_base_capacity=cfg.on_demand_percentage_above_base,
                        on_demand_allocation_strategy="prioritized",
                        spot_allocation_strategy=cfg.spot_allocation_strategy,
                    ),
                    launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                        launch_template_specification=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                            **template
                        ),
                        overrides=[
                            aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(
                                instance_type=instance_type
                            )
                            for instance_type in cfg.instance_types
                        ],
                    ),
                )
            }

        tags = {**args.tags, "Name": f"{cfg.asg_name}-runner"}
        self.group = aws.autoscaling.Group(
            f"{name}-asg",
            name=cfg.asg_name,
            min_size=cfg.min_size,
            max_size=cfg.max_size,
            vpc_zone_identifiers=args.subnet_ids,
            protect_from_scale_in=True,
            capacity_rebalance=cfg.spot_percentage > 0,
            suspended_processes=["AZRebalance"],
            max_instance_lifetime=cfg.asg_max_instance_lifetime_seconds,
            health_check_type="EC2",
            health_check_grace_period=300,
            termination_policies=["OldestLaunchTemplate", "OldestInstance"],
            # Instances wait on the control plane's launch hook; do not block `pulumi up`.
            wait_for_capacity_timeout="0",
            # No force: on delete the provider drains the group (capacity 0, scale-in
            # protection removed, warm pool emptied) and waits, so every instance passes the
            # terminate hook and the control plane, deleted after the group, deregisters its
            # runner. A forced delete would drop the pending lifecycle actions.
            force_delete=False,
            force_delete_warm_pool=False,
            initial_lifecycle_hooks=lifecycle_hooks(cfg),
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=100,
                    max_healthy_percentage=200,
                    # AWS refuses skip matching when the launch template's image is an SSM
                    # parameter (the image pipeline); protected runners are skipped anyway.
                    skip_matching=not cfg.image_pipeline,
                    scale_in_protected_instances="Ignore",
                    standby_instances="Ignore",
                ),
            ),
            enabled_metrics=ENABLED_METRICS,
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in sorted(tags.items())
            ],
            **placement,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=args.depends_on,
                # The scaler owns desired capacity; a `pulumi up` must not reset it.
                ignore_changes=["desiredCapacity"],
                # Draining waits for each instance's terminate hook (at most
                # TERMINATE_HOOK_HEARTBEAT_S), the warm pool's first.
                custom_timeouts=pulumi.CustomTimeouts(delete=f"{DELETE_TIMEOUT_MINUTES}m"),
            ),
        )
        self.group_name = self.group.name
        self.arn = self.group.arn
        self.launch_hook_name = cfg.launch_hook_name
        self.terminate_hook_name = cfg.terminate_hook_name
        self.register_outputs(
            {
                "name": self.group_name,
                "arn": self.arn,
                "launch_hook_name": self.launch_hook_name,
                "terminate_hook_name": self.terminate_hook_name,
            }
        )
