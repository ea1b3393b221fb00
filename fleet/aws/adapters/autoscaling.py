"""Auto Scaling: the fleet's group (size, instances, protection, termination, lifecycle)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from fleet.aws.adapters.clients import error_code, error_message
from fleet.aws.observe import GroupInstance

# The codes AWS answers a refused call with (Auto Scaling: AccessDenied).
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


@dataclass(frozen=True)
class GroupState:
    """An Auto Scaling group's size and instances."""

    name: str
    desired_capacity: int
    min_size: int
    max_size: int
    instances: tuple[GroupInstance, ...]
    tags: Mapping[str, str] = field(default_factory=dict)


class AutoScalingGroup:
    """One Auto Scaling group: read it, size it, protect, terminate and admit its instances."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def describe(self) -> GroupState:
        """The group and its instances (one DescribeAutoScalingGroups call)."""
        answer = self.client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])
        groups = answer.get("AutoScalingGroups") or []
        if not groups:
            raise LookupError(f"Auto Scaling group {self.name!r} not found")
        group = groups[0]
        return GroupState(
            name=self.name,
            desired_capacity=int(group["DesiredCapacity"]),
            min_size=int(group["MinSize"]),
            max_size=int(group["MaxSize"]),
            instances=tuple(
                GroupInstance(
                    instance_id=i["InstanceId"],
                    lifecycle_state=i.get("LifecycleState", ""),
                    protected=bool(i.get("ProtectedFromScaleIn")),
                )
                for i in group.get("Instances") or ()
            ),
            tags={t["Key"]: t.get("Value", "") for t in group.get("Tags") or ()},
        )

    def set_desired_capacity(self, capacity: int) -> None:
        """Set the desired capacity (no cooldown: the scaler paces itself)."""
        self.client.set_desired_capacity(
            AutoScalingGroupName=self.name, DesiredCapacity=int(capacity), HonorCooldown=False
        )

    def set_protection(self, instance_ids: Sequence[str], protected: bool) -> None:
        """Set or clear scale-in protection (50 instances per call, the API's limit)."""
        ids = list(instance_ids)
        for start in range(0, len(ids), 50):
            self.client.set_instance_protection(
                AutoScalingGroupName=self.name,
                InstanceIds=ids[start : start + 50],
                ProtectedFromScaleIn=protected,
            )

    def terminate(self, instance_id: str, *, decrement: bool) -> bool:
        """Terminate one instance of the group. False if it is no longer in the group.

        With ``decrement``, the group shrinks with it; at its minimum size the group refuses
        that, and the instance is terminated anyway (the group launches a fresh one).
        """
        try:
            self.client.terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=decrement
            )
        except ClientError as exc:
            message = error_message(exc).lower()
            if error_code(exc) in ACCESS_DENIED and not self._holds(instance_id):
                # The group's policy names the group; an instance that has left it is judged
                # against no group and refused. Gone from the group is gone, whatever the code.
                return False
            if error_code(exc) != "ValidationError":
                raise
            if "not found" in message or "no managed instance" in message:
                return False
            if decrement and "min" in message:
                return self.terminate(instance_id, decrement=False)
            raise
        return True

    def _holds(self, instance_id: str) -> bool:
        """Whether the group still lists ``instance_id``."""
        return any(i.instance_id == instance_id for i in self.describe().instances)

    def complete_lifecycle_action(
        self, hook_name: str, instance_id: str, token: str | None, result: str
    ) -> bool:
        """CONTINUE or ABANDON a lifecycle action. False if it was no longer pending."""
        if result not in ("CONTINUE", "ABANDON"):
            raise ValueError(f"lifecycle result must be CONTINUE or ABANDON, got {result!r}")
        params: dict[str, Any] = {
            "AutoScalingGroupName": self.name,
            "LifecycleHookName": hook_name,
            "InstanceId": instance_id,
            "LifecycleActionResult": result,
        }
        if token:
            params["LifecycleActionToken"] = token
        try:
            self.client.complete_lifecycle_action(**params)
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and "no active lifecycle action" in (
                error_message(exc).lower()
            ):
                return False
            raise
        return True
