"""A fleet's performance baseline and benchmark history under an S3 prefix, for validation
runs against AWS runners (``pytest tests/runner --benchmark-store s3://BUCKET/PREFIX``).
Layout: ``fleet.core.baseline_store``. The bucket is yours: private, encrypted, versioned
if you want earlier baselines back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from fleet.core.baseline_store import BASELINE, HISTORY, THRESHOLDS, history_name, next_number
from fleet.core.benchmarks import Baseline, BenchmarkFormatError

MISSING = ("NoSuchKey", "404", "NotFound")


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix")."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3://BUCKET/PREFIX location")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket: use s3://BUCKET/PREFIX")
    return bucket, prefix.strip("/")


class S3BaselineStore:
    def __init__(
        self, s3: Any, bucket: str, prefix: str, fleet: str, page_size: int = 1000
    ) -> None:
        self.s3 = s3
        self.page_size = page_size
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.fleet = fleet
        self.location = f"s3://{bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def from_url(cls, s3: Any, url: str, fleet: str) -> S3BaselineStore:
        bucket, prefix = parse_url(url)
        return cls(s3, bucket, prefix, fleet)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _read_json(self, name: str) -> Any | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                return None
            raise
        try:
            return json.loads(body)
        except ValueError as exc:
            raise BenchmarkFormatError(f"{self.location}/{name} is not JSON ({exc})") from exc

    def _put(self, name: str, document: Any) -> str:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self._key(name),
            Body=(json.dumps(document, indent=2) + "\n").encode(),
            ContentType="application/json",
        )
        return f"s3://{self.bucket}/{self._key(name)}"

    def load_baseline(self) -> Baseline | None:
        data = self._read_json(BASELINE)
        return None if data is None else Baseline.from_dict(data)

    def save_baseline(self, baseline: Baseline) -> None:
        self._put(BASELINE, baseline.to_dict())

    def load_thresholds(self) -> Mapping[str, Any] | None:
        return self._read_json(THRESHOLDS)

    def _history(self) -> list[str]:
        """Keys of this fleet's history files (every page of the listing)."""
        prefix = self._key(f"{HISTORY}/{self.fleet}/")
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size}
        ):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def record(self, runner: str, document: Mapping[str, Any], when: datetime) -> str:
        name = history_name(self.fleet, next_number(self._history()), when, runner)
        return self._put(name, document)
