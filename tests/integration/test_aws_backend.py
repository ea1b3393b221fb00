"""fleet.aws.adapters against moto: idempotence and races, each adapter on its own."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from fleet.aws.adapters.autoscaling import AutoScalingGroup
from fleet.aws.adapters.dynamodb import DynamoLedger, DynamoTokenBucket
from fleet.aws.adapters.ssm import JitParameters
from fleet.core.github.ratelimit import RateLimitExceeded
from fleet.core.ledger import JobEvent, JobState
from tests.fakes.github_api import FakeClock
from tests.fakes.ledger import replay
from tests.integration.harness import create_ledger_table

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


@pytest.fixture
def table(aws) -> str:
    create_ledger_table(aws.client("dynamodb"), "ledger")
    return "ledger"


def event(state: JobState, **extra) -> JobEvent:
    return JobEvent(
        job_id=7,
        state=state,
        run_id=70,
        repository="acme/app",
        created_at=T0,
        labels=("self-hosted", "linux"),
        **extra,
    )


EVENTS = [
    event(JobState.QUEUED),
    event(JobState.IN_PROGRESS, started_at=T0 + timedelta(seconds=5), runner_name="main-i-1"),
    event(
        JobState.COMPLETED,
        started_at=T0 + timedelta(seconds=5),
        completed_at=T0 + timedelta(minutes=3),
        runner_name="main-i-1",
        conclusion="success",
    ),
]


def test_ledger_ends_in_the_same_record_whatever_the_order_and_duplicates(aws, table):
    expected = replay(EVENTS)[7]
    for n, order in enumerate(itertools.permutations(EVENTS)):
        ledger = DynamoLedger(aws.client("dynamodb"), table, fleet=f"f{n}")
        ledger.client.delete_item(TableName=table, Key=ledger.key(7))
        for e in [*order, *order]:
            ledger.record(e)
        stored = ledger.get(7)
        assert stored is not None and stored.record == expected
        assert ledger.open_jobs() == []  # completed jobs leave the open-jobs index


def test_ledger_write_that_loses_a_race_merges_on_top_of_the_winner(aws, table):
    client = aws.client("dynamodb")
    ledger = DynamoLedger(client, table, fleet="main", sleep=lambda _: None)
    rival = DynamoLedger(aws.client("dynamodb"), table, fleet="main")
    ledger.record(EVENTS[0])
    original = client.update_item
    raced = []

    def update_item(**kwargs):
        if not raced:  # another writer lands between our read and our write
            raced.append(True)
            rival.record(EVENTS[2])
        return original(**kwargs)

    client.update_item = update_item
    _, changed = ledger.record(EVENTS[1])
    assert raced and changed is False  # once merged on top of "completed", nothing was new
    assert ledger.get(7).record.state is JobState.COMPLETED
    assert ledger.get(7).record.runner_name == "main-i-1"


def test_retry_requests_stay_open_until_settled(aws, table):
    ledger = DynamoLedger(aws.client("dynamodb"), table, fleet="main")
    ledger.record(EVENTS[1])
    assert ledger.request_retry(7, "spot interruption") is True
    assert ledger.request_retry(7, "again") is False  # once
    ledger.record(EVENTS[2])
    (job,) = ledger.open_jobs()  # completed, but its retry is not settled
    assert job.retry == "requested" and job.retry_reason == "spot interruption"
    assert ledger.settle_retry(7, "rerun") is True
    assert ledger.open_jobs() == [] and ledger.get(7).retry == "rerun"
    assert ledger.request_retry(999, "unknown job") is False


def test_jit_parameter_is_tagged_once_overwritten_in_place_and_deleted_idempotently(aws):
    kms = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
    ssm = aws.client("ssm")
    params = JitParameters(
        ssm, template="/f/runners/{instance_id}/jitconfig", kms_key_arn=kms, tag_key="arn-tag"
    )
    params.put("i-1", "arn:aws:ec2:eu-west-1:123456789012:instance/i-1", "first")
    params.put("i-1", "arn:aws:ec2:eu-west-1:123456789012:instance/i-1", "second")
    parameter = ssm.get_parameter(Name="/f/runners/i-1/jitconfig", WithDecryption=True)
    assert parameter["Parameter"]["Value"] == "second"
    tags = ssm.list_tags_for_resource(
        ResourceType="Parameter", ResourceId="/f/runners/i-1/jitconfig"
    )
    assert tags["TagList"] == [
        {"Key": "arn-tag", "Value": "arn:aws:ec2:eu-west-1:123456789012:instance/i-1"}
    ]
    assert params.instance_ids() == ["i-1"]
    assert params.delete("i-1") is True
    assert params.delete("i-1") is False
    assert params.instance_ids() == []


def test_group_actions_on_gone_instances_are_normal_outcomes(aws):
    from tests.integration import moto_asg

    ec2 = aws.client("ec2")
    subnet = ec2.create_subnet(
        VpcId=ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"], CidrBlock="10.0.1.0/24"
    )["Subnet"]["SubnetId"]
    ec2.create_launch_template(
        LaunchTemplateName="runners", LaunchTemplateData={"ImageId": "ami-03cf127a"}
    )
    autoscaling = aws.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="g",
        LaunchTemplate={"LaunchTemplateName": "runners"},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet,
    )
    group = AutoScalingGroup(autoscaling, "g")
    with moto_asg.patched(moto_asg.LifecycleActions()):
        (instance,) = group.describe().instances
        assert (
            group.complete_lifecycle_action("hook", instance.instance_id, "0" * 36, "CONTINUE")
            is False
        )
        assert group.terminate(instance.instance_id, decrement=True) is True
        assert group.terminate(instance.instance_id, decrement=True) is False
        assert group.describe().desired_capacity == 0


def test_token_bucket_shared_through_the_table_bounds_every_instance_together(aws, table):
    # A clock that moves only when slept: with the real time in it, a slow machine spent part
    # of the awaited second between the calls, and the wait measured came out short.
    clock = FakeClock()
    buckets = [
        DynamoTokenBucket(aws.client("dynamodb"), table, rate_per_minute=60, burst=3, clock=clock)
        for _ in range(3)
    ]
    taken = 0
    for bucket in buckets * 2:  # three function instances, twice each, at the same moment
        try:
            bucket.acquire(clock.sleep, max_wait=0)
            taken += 1
        except RateLimitExceeded:
            pass
    assert taken == 3  # the burst, shared: not three bursts
    buckets[0].acquire(clock.sleep, max_wait=5)  # waits about a second for the next token
    assert 0.9 <= clock.sleeps[-1] <= 1.1
