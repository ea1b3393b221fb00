"""SSM Parameter Store: per-instance JIT configs (SecureString under the fleet's key) and the
GitHub App's secrets (read and cached).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from fleet.aws.adapters.clients import error_code

Clock = Callable[[], float]


class JitParameters:
    """The instances' JIT config parameters: SecureString under the fleet's key, tagged with
    the instance ARN so only that instance may read and delete it."""

    def __init__(self, client: Any, *, template: str, kms_key_arn: str, tag_key: str) -> None:
        if "{instance_id}" not in template:
            raise ValueError(f"JIT parameter template has no {{instance_id}}: {template!r}")
        self.client = client
        self.template = template
        self.kms_key_arn = kms_key_arn
        self.tag_key = tag_key

    def name(self, instance_id: str) -> str:
        return self.template.format(instance_id=instance_id)

    @property
    def root(self) -> str:
        """The path every JIT parameter lives under."""
        return self.template.split("{instance_id}", 1)[0].rstrip("/")

    def put(self, instance_id: str, instance_arn: str, value: str) -> None:
        """Store ``value`` for ``instance_id``, replacing an older value left by an earlier
        attempt (SSM refuses tags together with overwrite: the tag is set at creation)."""
        name = self.name(instance_id)
        common = {
            "Name": name,
            "Value": value,
            "Type": "SecureString",
            "KeyId": self.kms_key_arn,
            # A JIT config may exceed the standard tier's 4 KiB: SSM picks the tier.
            "Tier": "Intelligent-Tiering",
            "Description": "one-use JIT runner config; the instance deletes it once read",
        }
        try:
            self.client.put_parameter(
                **common, Overwrite=False, Tags=[{"Key": self.tag_key, "Value": instance_arn}]
            )
        except ClientError as exc:
            if error_code(exc) != "ParameterAlreadyExists":
                raise
            self.client.put_parameter(**common, Overwrite=True)

    def delete(self, instance_id: str) -> bool:
        """Delete the parameter of ``instance_id``. False if there was none."""
        try:
            self.client.delete_parameter(Name=self.name(instance_id))
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                return False
            raise
        return True

    def instance_ids(self) -> list[str]:
        """Instances that still have a JIT parameter (names only, never values)."""
        root = self.root
        found: list[str] = []
        params: dict[str, Any] = {
            "ParameterFilters": [{"Key": "Path", "Option": "Recursive", "Values": [root]}],
            "MaxResults": 50,
        }
        while True:
            answer = self.client.describe_parameters(**params)
            for item in answer.get("Parameters") or ():
                rest = str(item["Name"])[len(root) + 1 :]
                instance_id = rest.split("/", 1)[0]
                if self.name(instance_id) == item["Name"]:
                    found.append(instance_id)
            token = answer.get("NextToken")
            if not token:
                return found
            params["NextToken"] = token


class SecureParameters:
    """Reads SecureString parameters (the GitHub App's), caching each for ``ttl`` seconds so a
    rotated secret is picked up without a redeploy."""

    def __init__(self, client: Any, *, clock: Clock = time.time, ttl: float = 300.0) -> None:
        self.client = client
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[str, float]] = {}

    def get(self, name: str) -> str:
        cached = self._cache.get(name)
        now = self._clock()
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        value = self.client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        self._cache[name] = (value, now)
        return value
