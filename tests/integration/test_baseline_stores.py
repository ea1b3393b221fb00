"""The two baseline stores (a directory on the machine; an S3 prefix, on moto) keep the
same things in the same layout, and a validation's review works the same on both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from fleet.aws.adapters.baseline_s3 import S3BaselineStore, parse_url
from fleet.core.baseline_store import review
from fleet.core.benchmarks import Baseline, Thresholds, Verdict
from fleet.local.baseline_store import LocalBaselineStore

pytestmark = pytest.mark.integration

FLEET = "ci"
WHEN = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
BUCKET = "fleet-benchmarks"


def report(**medians: float) -> dict:
    return {"benchmarks": [{"name": n, "stats": {"median": m}} for n, m in medians.items()]}


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[object]:
    if request.param == "local":
        yield LocalBaselineStore(tmp_path / "benchmarks", FLEET)
        return
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield S3BaselineStore.from_url(s3, f"s3://{BUCKET}/fleets/{FLEET}/", FLEET)


def _read(store, where: str) -> dict:
    if where.startswith("s3://"):
        bucket, key = parse_url(where)
        return json.loads(store.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    with open(where, encoding="utf-8") as handle:
        return json.load(handle)


def test_an_empty_store_has_no_baseline_and_no_thresholds(store):
    assert store.load_baseline() is None
    assert store.load_thresholds() is None


def test_a_baseline_is_kept_whole(store):
    baseline = Baseline({"test_cpu": 0.5}, ("runner-1",), WHEN.isoformat())
    store.save_baseline(baseline)
    assert store.load_baseline() == baseline


def test_history_files_are_numbered_in_pytest_benchmarks_layout(store):
    first = store.record("fleet-ci-runner-1", report(test_cpu=1.0), WHEN)
    second = store.record("fleet-ci-runner-2", report(test_cpu=2.0), WHEN)
    assert first.endswith("/history/ci/0001_20310504T030201Z_fleet-ci-runner-1.json")
    assert second.endswith("/history/ci/0002_20310504T030201Z_fleet-ci-runner-2.json")
    assert _read(store, second) == report(test_cpu=2.0)


def test_the_first_validation_makes_the_baseline_then_a_slow_runner_is_flagged(store):
    first = review(store, FLEET, {"r1": report(test_cpu=1.0), "r2": report(test_cpu=1.2)}, WHEN)
    assert first.baseline_made and not first.warnings
    assert store.load_baseline().medians == {"test_cpu": 1.1}
    later = review(store, FLEET, {"r3": report(test_cpu=1.5), "r4": report(test_cpu=1.1)}, WHEN)
    assert not later.baseline_made
    assert [(c.host, c.verdict) for c in later.comparisons] == [
        ("r3", Verdict.SLOWER),
        ("r4", Verdict.OK),
    ]
    assert set(later.recorded) == {"r3", "r4"}
    # A wider margin from configuration lets r3 pass; update_baseline starts again from r3/r4.
    wide = review(store, FLEET, {"r3": report(test_cpu=1.5)}, WHEN, thresholds=Thresholds(0.5))
    assert not wide.warnings
    review(store, FLEET, {"r3": report(test_cpu=1.5)}, WHEN, update_baseline=True)
    assert store.load_baseline().medians == {"test_cpu": 1.5}


def test_an_unreadable_report_is_a_problem_not_a_crash(store):
    outcome = review(store, FLEET, {"r1": {"oops": 1}, "r2": report(test_cpu=1.0)}, WHEN)
    assert outcome.problems == ["r1: not a pytest-benchmark report: no 'benchmarks' list"]
    assert set(outcome.recorded) == {"r2"}


def test_history_numbers_continue_past_one_page_of_the_s3_listing():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for number in range(1, 6):
            s3.put_object(Bucket=BUCKET, Key=f"p/history/ci/{number:04d}_x_r.json", Body=b"{}")
        store = S3BaselineStore(s3, BUCKET, "p", FLEET, page_size=2)
        assert store.record("r", report(test_cpu=1.0), WHEN).endswith(
            "/0006_20310504T030201Z_r.json"
        )


@pytest.mark.parametrize("url", ["https://bucket/x", "s3://", "s3:///prefix"])
def test_a_bad_s3_location_says_how_to_write_it(url):
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        parse_url(url)
