"""AWS adapters of the control plane: thin boto3 wrappers that speak the fleet's types.

Every adapter takes its boto3 client as an argument (tests pass moto-backed or stubbed ones;
``aws_clients`` builds real ones with standard retry mode: throttling and transient errors are
retried with exponential backoff and a retry quota, so a storm cannot turn into a retry storm).
Each method makes a known, small number of calls; the scaler's cost per cycle follows from
them (see bench/control_plane.py).

Idempotence is part of each contract: terminating an instance that is already gone, deleting
a parameter that was already read, completing a lifecycle action twice or recording a job
event twice are normal outcomes here, not errors.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from fleet.aws.observe import GroupInstance
from fleet.core.github.ratelimit import BucketState, RateLimitExceeded, TokenBucket
from fleet.core.ledger import JobEvent, JobRecord, JobState, apply
from fleet.core.webhook import QueuedDelivery

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# Standard mode: retries throttling and transient errors with capped exponential backoff and a
# client-side retry quota. Six attempts ride out a short throttling burst; timeouts stay well
# inside the functions' own time limits.
DEFAULT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=3,
    read_timeout=10,
    user_agent_extra="runner-fleet",
)
# The webhook must answer GitHub within 10 s in total: fewer, shorter attempts.
WEBHOOK_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=1,
    read_timeout=3,
    user_agent_extra="runner-fleet",
)

SERVICES = ("autoscaling", "ec2", "ssm", "sqs", "dynamodb", "cloudwatch")


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients the control plane uses (any of them may be a test double)."""

    autoscaling: Any
    ec2: Any
    ssm: Any
    sqs: Any
    dynamodb: Any
    cloudwatch: Any


def aws_clients(
    session: boto3.session.Session | None = None,
    *,
    region: str | None = None,
    config: Config = DEFAULT_CONFIG,
) -> AwsClients:
    """Clients for every service the control plane calls, from one session."""
    session = session or boto3.session.Session()
    return AwsClients(
        **{name: session.client(name, region_name=region, config=config) for name in SERVICES}
    )


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


# -- Auto Scaling --------------------------------------------------------------------------


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
            if error_code(exc) != "ValidationError":
                raise
            if "not found" in message or "no managed instance" in message:
                return False
            if decrement and "min" in message:
                return self.terminate(instance_id, decrement=False)
            raise
        return True

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


# -- EC2 -------------------------------------------------------------------------------------


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


# -- SSM ---------------------------------------------------------------------------------------


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


# -- SQS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1


class DeliveryQueue:
    """The queue between the webhook and the scaler. Messages carry the delivery id as an
    attribute (and, on a FIFO queue, as the deduplication id)."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url
        self.fifo = url.endswith(".fifo")

    def send(self, delivery: QueuedDelivery) -> str:
        """Queue one delivery; returns the message id."""
        params: dict[str, Any] = {
            "QueueUrl": self.url,
            "MessageBody": json.dumps(delivery.to_message(), separators=(",", ":")),
            "MessageAttributes": {
                "delivery_id": {"DataType": "String", "StringValue": delivery.delivery_id},
                "job_id": {"DataType": "Number", "StringValue": str(delivery.job.job_id)},
            },
        }
        if self.fifo:
            params["MessageDeduplicationId"] = delivery.delivery_id
            params["MessageGroupId"] = str(delivery.job.job_id)
        return str(self.client.send_message(**params)["MessageId"])

    def receive(
        self,
        max_messages: int = 10,
        *,
        wait_seconds: int = 0,
        visibility_timeout: int | None = None,
    ) -> list[QueueMessage]:
        params: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max(1, min(10, max_messages)),
            "WaitTimeSeconds": wait_seconds,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        }
        if visibility_timeout is not None:
            params["VisibilityTimeout"] = visibility_timeout
        answer = self.client.receive_message(**params)
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int((m.get("Attributes") or {}).get("ApproximateReceiveCount", 1)),
            )
            for m in answer.get("Messages") or ()
        ]

    def delete(self, messages: Sequence[QueueMessage]) -> list[str]:
        """Delete messages (10 per call); returns the ids SQS failed to delete."""
        failed: list[str] = []
        items = list(messages)
        for start in range(0, len(items), 10):
            chunk = items[start : start + 10]
            answer = self.client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m.receipt_handle} for n, m in enumerate(chunk)
                ],
            )
            failed += [chunk[int(f["Id"])].message_id for f in answer.get("Failed") or ()]
        return failed

    def depth(self) -> int:
        """Messages waiting (approximate)."""
        answer = self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(answer["Attributes"]["ApproximateNumberOfMessages"])


# -- DynamoDB: the job ledger --------------------------------------------------------------


class LedgerConflict(Exception):
    """A ledger write kept losing races with other writers (retry the message later)."""


@dataclass(frozen=True)
class StoredJob:
    """A ledger record and the control plane's notes on it."""

    record: JobRecord
    version: int
    retry: str | None = None  # "requested" -> "rerun" | "not-needed"
    retry_reason: str | None = None

    @property
    def job_id(self) -> int:
        return self.record.job_id


_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
OPEN_INDEX = "open-jobs"


class DynamoLedger:
    """The job ledger in one DynamoDB table (key ``pk``).

    Each write is read -> ``fleet.core.ledger.apply`` -> conditional write on the record's version,
    retried on a lost race. Because ``apply`` is a join (order-free, idempotent), a duplicate or
    stale event changes nothing and is not written at all, and two racing writers both end in
    the same record. Open jobs carry ``open_fleet`` (the sparse key of the ``open-jobs``
    index) so the scaler reads only them; completed jobs drop it and expire after ``ttl``.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        fleet: str,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        ttl: timedelta = timedelta(days=7),
        max_attempts: int = 8,
    ) -> None:
        self.client = client
        self.table = table
        self.fleet = fleet
        self._clock = clock
        self._sleep = sleep
        self._ttl = ttl
        self._max_attempts = max_attempts

    @staticmethod
    def key(job_id: int) -> dict[str, Any]:
        return {"pk": {"S": f"job#{int(job_id)}"}}

    def get(self, job_id: int) -> StoredJob | None:
        answer = self.client.get_item(
            TableName=self.table, Key=self.key(job_id), ConsistentRead=True
        )
        item = answer.get("Item")
        return _stored(item) if item else None

    def record(self, event: JobEvent) -> tuple[JobRecord, bool]:
        """Merge ``event`` into the job's record; returns it and whether it changed."""
        for attempt in range(self._max_attempts):
            current = self.get(event.job_id)
            merged, changed = apply(current.record if current else None, event)
            if not changed:
                return merged, False
            try:
                self._write(merged, current)
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                # Another writer got there first: merge again on top of its record.
                self._sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter
                continue
            return merged, True
        raise LedgerConflict(
            f"job {event.job_id}: {self._max_attempts} conflicting writes in a row; retry later"
        )

    def _write(self, record: JobRecord, current: StoredJob | None) -> None:
        values = {k: v for k, v in record.to_dict().items() if v is not None and v != []}
        version = (current.version if current else 0) + 1
        names: dict[str, str] = {}
        attrs: dict[str, Any] = {":v": _SERIALIZER.serialize(version)}
        sets: list[str] = ["#version = :v"]
        names["#version"] = "version"
        for n, (field_name, value) in enumerate(sorted(values.items())):
            names[f"#f{n}"] = field_name
            attrs[f":f{n}"] = _SERIALIZER.serialize(value)
            sets.append(f"#f{n} = :f{n}")
        names["#open"] = "open_fleet"
        names["#expires"] = "expires_at"
        still_open = record.state is not JobState.COMPLETED or (
            current is not None and current.retry == "requested"
        )
        if not still_open:
            attrs[":exp"] = _SERIALIZER.serialize(int(self._clock() + self._ttl.total_seconds()))
            sets.append("#expires = :exp")
            expression = "SET " + ", ".join(sets) + " REMOVE #open"
        else:
            attrs[":open"] = _SERIALIZER.serialize(self.fleet)
            sets.append("#open = :open")
            expression = "SET " + ", ".join(sets) + " REMOVE #expires"
        if current is None:
            condition = "attribute_not_exists(pk)"
        else:
            condition = "#version = :prev"
            attrs[":prev"] = _SERIALIZER.serialize(current.version)
        self.client.update_item(
            TableName=self.table,
            Key=self.key(record.job_id),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=attrs,
        )

    def open_jobs(self) -> list[StoredJob]:
        """Every job not completed yet (one Query page per ~1 MB of records)."""
        found: list[StoredJob] = []
        params: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": OPEN_INDEX,
            "KeyConditionExpression": "open_fleet = :fleet",
            "ExpressionAttributeValues": {":fleet": {"S": self.fleet}},
        }
        while True:
            answer = self.client.query(**params)
            found += [_stored(item) for item in answer.get("Items") or ()]
            last = answer.get("LastEvaluatedKey")
            if not last:
                return found
            params["ExclusiveStartKey"] = last

    def request_retry(self, job_id: int, reason: str) -> bool:
        """Mark a job for re-run once it completes (its runner was taken away mid-job); it
        stays in the open-jobs index until settled. False if unknown or already marked."""
        return self._mark(job_id, "requested", reason)

    def settle_retry(self, job_id: int, outcome: str) -> bool:
        """Record what became of a retry request ("rerun" or "not-needed")."""
        return self._mark(job_id, outcome, None)

    def _mark(self, job_id: int, value: str, reason: str | None) -> bool:
        # Bumping the version makes a concurrent record() re-read, so neither write undoes
        # the other's open_fleet.
        names = {"#retry": "retry", "#version": "version", "#open": "open_fleet"}
        attrs: dict[str, Any] = {":value": {"S": value}, ":one": {"N": "1"}}
        expression = "SET #retry = :value, #version = #version + :one"
        if reason is not None:
            names["#reason"] = "retry_reason"
            attrs[":reason"] = {"S": reason}
            attrs[":fleet"] = {"S": self.fleet}
            expression += ", #reason = :reason, #open = :fleet"
            condition = "attribute_exists(pk) AND attribute_not_exists(#retry)"
        else:
            attrs[":requested"] = {"S": "requested"}
            attrs[":completed"] = {"S": str(JobState.COMPLETED)}
            attrs[":exp"] = {"N": str(int(self._clock() + self._ttl.total_seconds()))}
            names["#state"] = "state"
            names["#expires"] = "expires_at"
            expression += ", #expires = :exp REMOVE #open"
            condition = "#retry = :requested AND #state = :completed"
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self.key(job_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=attrs,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _stored(item: Mapping[str, Any]) -> StoredJob:
    data = {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}
    record_fields = set(JobRecord.__dataclass_fields__)
    record = JobRecord.from_dict({k: v for k, v in data.items() if k in record_fields})
    return StoredJob(
        record=record,
        version=int(data.get("version", 0)),
        retry=data.get("retry"),
        retry_reason=data.get("retry_reason"),
    )


class DynamoTokenBucket:
    """A ``TokenBucket`` whose state lives in the ledger table, so every function instance
    shares one JIT issuance rate. Duck-types ``TokenBucket.acquire`` for ``RunnersAPI``."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        rate_per_minute: float,
        burst: float | None = None,
        key: str = "ratelimit#jit",
        clock: Clock = time.time,
        max_attempts: int = 8,
    ) -> None:
        self.client = client
        self.table = table
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self.key = key
        self._clock = clock
        self._max_attempts = max_attempts
        TokenBucket(rate_per_minute, burst=burst, clock=clock)  # validate now

    def _load(self) -> tuple[TokenBucket, int]:
        answer = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": self.key}}, ConsistentRead=True
        )
        item = answer.get("Item")
        state = None
        version = 0
        if item:
            state = BucketState(
                tokens=float(item["tokens"]["N"]), updated_at=float(item["updated_at"]["N"])
            )
            version = int(item["version"]["N"])
        bucket = TokenBucket(self.rate_per_minute, burst=self.burst, clock=self._clock, state=state)
        return bucket, version

    def acquire(self, sleep: Sleep, *, max_wait: float, tokens: float = 1.0) -> float:
        """Take ``tokens`` from the shared bucket, sleeping up to ``max_wait`` seconds."""
        slept = 0.0
        for _ in range(self._max_attempts * 4):
            bucket, version = self._load()
            wait = bucket.wait_time(tokens)
            if wait > 0:
                if slept + wait > max_wait:
                    raise RateLimitExceeded(wait)
                sleep(wait)
                slept += wait
                continue
            bucket.try_acquire(tokens)
            state = bucket.state()
            try:
                self.client.update_item(
                    TableName=self.table,
                    Key={"pk": {"S": self.key}},
                    UpdateExpression="SET tokens = :t, updated_at = :u, version = :v",
                    ConditionExpression="attribute_not_exists(pk) OR version = :prev",
                    ExpressionAttributeValues={
                        ":t": {"N": repr(state.tokens)},
                        ":u": {"N": repr(state.updated_at)},
                        ":v": {"N": str(version + 1)},
                        ":prev": {"N": str(version)},
                    },
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                continue
            return slept
        raise RateLimitExceeded(1.0)


# -- CloudWatch --------------------------------------------------------------------------------


class Metrics:
    """Fleet metrics in one namespace, dimensioned by fleet; one PutMetricData per ``put``."""

    def __init__(self, client: Any, *, namespace: str, fleet: str) -> None:
        self.client = client
        self.namespace = namespace
        self.fleet = fleet

    def put(self, values: Mapping[str, float], *, unit: str = "Count") -> None:
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": "Fleet", "Value": self.fleet}],
                "Value": float(value),
                "Unit": unit,
            }
            for name, value in sorted(values.items())
        ]
        for start in range(0, len(data), 1000):
            self.client.put_metric_data(
                Namespace=self.namespace, MetricData=data[start : start + 1000]
            )
