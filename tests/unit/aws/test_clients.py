"""The control plane's boto3 clients are made at their first use, once, and never for a
service the handler does not call (the webhook function's cold start)."""

from __future__ import annotations

import boto3
import pytest

from fleet.aws.adapters.clients import SERVICES, AwsClients, aws_clients

pytestmark = pytest.mark.unit


def test_a_client_is_made_at_its_first_use_and_only_once():
    made: list[str] = []

    def make(service: str) -> object:
        made.append(service)
        return object()

    clients = AwsClients(make)
    assert made == []
    first = clients.sqs
    assert clients.sqs is first and clients.ssm is not first
    assert made == ["sqs", "ssm"]


def test_given_clients_are_used_as_they_are_and_unknown_ones_are_refused():
    double = object()
    clients = AwsClients(ec2=double)
    assert clients.ec2 is double
    with pytest.raises(AttributeError, match="no sqs client was given"):
        _ = clients.sqs
    with pytest.raises(TypeError, match=r"unknown AWS clients \['lambda'\]"):
        AwsClients(**{"lambda": double})


def test_aws_clients_makes_each_service_from_the_session_with_its_region():
    session = boto3.session.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    )
    clients = aws_clients(session, region="eu-west-1")
    for name in SERVICES:
        client = getattr(clients, name)
        assert client.meta.service_model.service_name == name
        assert client.meta.region_name == "eu-west-1"
