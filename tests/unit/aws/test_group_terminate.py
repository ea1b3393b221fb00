"""The group's terminate call on answers AWS gives (botocore's Stubber, no network)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from fleet.aws.adapters.autoscaling import AutoScalingGroup

pytestmark = pytest.mark.unit

GROUP = "fleet-runners"
GONE, KEPT = "i-0123456789abcdef0", "i-0fedcba9876543210"


def _group_listing(*instance_ids: str) -> dict:
    return {
        "AutoScalingGroups": [
            {
                "AutoScalingGroupName": GROUP,
                "MinSize": 0,
                "MaxSize": 8,
                "DesiredCapacity": len(instance_ids),
                "DefaultCooldown": 0,
                "AvailabilityZones": ["eu-west-1a"],
                "HealthCheckType": "EC2",
                "CreatedTime": "2020-01-01T00:00:00Z",
                "Instances": [
                    {
                        "InstanceId": i,
                        "AvailabilityZone": "eu-west-1a",
                        "LifecycleState": "InService",
                        "HealthStatus": "Healthy",
                        "ProtectedFromScaleIn": True,
                    }
                    for i in instance_ids
                ],
            }
        ]
    }


@pytest.fixture
def stubbed():
    client = boto3.client(
        "autoscaling",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield AutoScalingGroup(client, GROUP), stubber
        stubber.assert_no_pending_responses()


def _refuse(stubber: Stubber, instance_id: str) -> None:
    stubber.add_client_error(
        "terminate_instance_in_auto_scaling_group",
        service_error_code="AccessDenied",
        service_message="not authorized: autoscaling:TerminateInstanceInAutoScalingGroup",
        http_status_code=403,
        expected_params={"InstanceId": instance_id, "ShouldDecrementDesiredCapacity": True},
    )


def test_a_refusal_for_an_instance_that_left_the_group_means_it_is_gone(stubbed):
    group, stubber = stubbed
    _refuse(stubber, GONE)
    stubber.add_response(
        "describe_auto_scaling_groups", _group_listing(KEPT), {"AutoScalingGroupNames": [GROUP]}
    )
    assert group.terminate(GONE, decrement=True) is False


def test_a_refusal_for_an_instance_still_in_the_group_is_raised(stubbed):
    group, stubber = stubbed
    _refuse(stubber, KEPT)
    stubber.add_response(
        "describe_auto_scaling_groups", _group_listing(KEPT), {"AutoScalingGroupNames": [GROUP]}
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        group.terminate(KEPT, decrement=True)


def test_other_errors_are_not_taken_for_a_gone_instance(stubbed):
    group, stubber = stubbed
    stubber.add_client_error(
        "terminate_instance_in_auto_scaling_group",
        service_error_code="Throttling",
        http_status_code=400,
    )
    with pytest.raises(ClientError, match="Throttling"):
        group.terminate(GONE, decrement=True)
