"""EC2: the fleet's instances as the control plane reads them (launch time, tags)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from fleet.aws.adapters.clients import error_code


@dataclass(frozen=True)
class InstanceInfo:
    """What EC2 says about one instance."""

    instance_id: str
    state: str
    launched_at: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    spot: bool = False


class FleetInstances:
    """EC2's view of the fleet's instances, found by the fleet tag."""

    def __init__(self, client: Any, *, tag_key: str, tag_value: str) -> None:
        self.client = client
        self.tag_key = tag_key
        self.tag_value = tag_value

    def describe(self) -> dict[str, InstanceInfo]:
        """Pending and running instances of the fleet (one call per 1000 instances)."""
        found: dict[str, InstanceInfo] = {}
        params: dict[str, Any] = {
            "Filters": [
                {"Name": f"tag:{self.tag_key}", "Values": [self.tag_value]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ],
            "MaxResults": 1000,
        }
        while True:
            answer = self.client.describe_instances(**params)
            for reservation in answer.get("Reservations") or ():
                for item in reservation.get("Instances") or ():
                    info = _instance_info(item)
                    found[info.instance_id] = info
            token = answer.get("NextToken")
            if not token:
                return found
            params["NextToken"] = token

    def get(self, instance_id: str) -> InstanceInfo | None:
        """One instance, whatever its fleet (None if EC2 does not know it)."""
        try:
            answer = self.client.describe_instances(InstanceIds=[instance_id])
        except ClientError as exc:
            if error_code(exc).startswith("InvalidInstanceID"):
                return None
            raise
        for reservation in answer.get("Reservations") or ():
            for item in reservation.get("Instances") or ():
                return _instance_info(item)
        return None


def _instance_info(item: Mapping[str, Any]) -> InstanceInfo:
    launched = item.get("LaunchTime") or datetime.now(UTC)
    if isinstance(launched, str):
        launched = datetime.fromisoformat(launched.replace("Z", "+00:00"))
    if launched.tzinfo is None:
        launched = launched.replace(tzinfo=UTC)
    return InstanceInfo(
        instance_id=item["InstanceId"],
        state=(item.get("State") or {}).get("Name", ""),
        launched_at=launched,
        tags={t["Key"]: t.get("Value", "") for t in item.get("Tags") or ()},
        spot=item.get("InstanceLifecycle") == "spot",
    )


def instance_arn(partition: str, region: str, account_id: str, instance_id: str) -> str:
    return f"arn:{partition}:ec2:{region}:{account_id}:instance/{instance_id}"
