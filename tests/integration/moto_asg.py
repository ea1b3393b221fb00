"""Auto Scaling behaviour moto lacks, added for the integration tests.

* Lifecycle actions: moto has no CompleteLifecycleAction and puts every instance straight in
  service. ``LifecycleActions`` holds pending actions (the harness opens one per launch and
  termination, as the group would) and answers CompleteLifecycleAction like AWS: CONTINUE puts
  a launching instance in service, ABANDON terminates it, and an action that is not pending is
  a ValidationError.
* Pending capacity: moto counts only InService instances against desired capacity, so
  instances held in Pending:Wait would be launched again on every SetDesiredCapacity. AWS
  counts them; so does the patched group.
* Terminating an instance the group does not have is a ValidationError in AWS (moto crashes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling import models as asg_models
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import EmptyResult

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
COUNTED_STATES = {"Pending", "Pending:Wait", "Pending:Proceed", "InService"}


@dataclass
class PendingAction:
    group: str
    hook: str
    token: str
    transition: str
    # Where CONTINUE puts a launching instance: in service, or "Warmed:Stopped" /
    # "Warmed:Running" for a launch into the warm pool.
    on_continue: str = "InService"


@dataclass
class LifecycleActions:
    pending: dict[str, PendingAction] = field(default_factory=dict)
    completed: list[tuple[str, str, str]] = field(default_factory=list)  # instance, hook, result

    def open(self, instance_id: str, action: PendingAction) -> None:
        self.pending[instance_id] = action

    def complete(self, backend: Any, params: dict[str, Any]) -> None:
        instance_id = params["InstanceId"]
        action = self.pending.get(instance_id)
        token = params.get("LifecycleActionToken")
        if (
            action is None
            or action.hook != params["LifecycleHookName"]
            or action.group != params["AutoScalingGroupName"]
            or (token and token != action.token)
        ):
            raise ValidationError(
                f"No active Lifecycle Action found with instance ID {instance_id}"
            )
        del self.pending[instance_id]
        result = params["LifecycleActionResult"]
        self.completed.append((instance_id, action.hook, result))
        if action.transition != LAUNCHING:
            return
        group = backend.autoscaling_groups.get(action.group)
        state = next(
            (s for s in (group.instance_states if group else []) if s.instance.id == instance_id),
            None,
        )
        if state is None:
            return
        if result == "CONTINUE":
            state.lifecycle_state = action.on_continue
        else:
            backend.terminate_instance(instance_id, should_decrement=False)


@contextmanager
def patched(actions: LifecycleActions) -> Iterator[LifecycleActions]:
    def complete_lifecycle_action(self: AutoScalingResponse) -> EmptyResult:
        params = {
            name: self._get_param(name)
            for name in (
                "AutoScalingGroupName",
                "LifecycleHookName",
                "InstanceId",
                "LifecycleActionToken",
                "LifecycleActionResult",
            )
        }
        actions.complete(self.autoscaling_backend, params)
        return EmptyResult()

    def active_instances(self: Any) -> list[Any]:
        return [s for s in self.instance_states if s.lifecycle_state in COUNTED_STATES]

    original_terminate = asg_models.AutoScalingBackend.terminate_instance

    def terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
        if not any(
            s.instance.id == instance_id
            for g in self.autoscaling_groups.values()
            for s in g.instance_states
        ):
            raise ValidationError(
                f"Instance Id not found - No managed instance found for instance ID: {instance_id}"
            )
        return original_terminate(self, instance_id, should_decrement)

    saved = (
        getattr(AutoScalingResponse, "complete_lifecycle_action", None),
        asg_models.FakeAutoScalingGroup.active_instances,
    )
    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action  # type: ignore[attr-defined]
    asg_models.FakeAutoScalingGroup.active_instances = active_instances  # type: ignore[method-assign]
    asg_models.AutoScalingBackend.terminate_instance = terminate_instance  # type: ignore[method-assign]
    try:
        yield actions
    finally:
        if saved[0] is None:
            del AutoScalingResponse.complete_lifecycle_action  # type: ignore[attr-defined]
        else:
            AutoScalingResponse.complete_lifecycle_action = saved[0]  # type: ignore[attr-defined]
        asg_models.FakeAutoScalingGroup.active_instances = saved[1]  # type: ignore[method-assign]
        asg_models.AutoScalingBackend.terminate_instance = original_terminate  # type: ignore[method-assign]
