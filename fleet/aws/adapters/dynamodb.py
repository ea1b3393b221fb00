"""DynamoDB: the job ledger (conditional writes, an index of open jobs) and the shared GitHub
rate limit's token bucket.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from fleet.aws.adapters.clients import error_code
from fleet.core.github.ratelimit import BucketState, RateLimitExceeded, TokenBucket
from fleet.core.ledger import JobEvent, JobRecord, JobState, apply

Clock = Callable[[], float]
Sleep = Callable[[float], None]


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
