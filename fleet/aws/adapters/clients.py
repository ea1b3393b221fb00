"""The boto3 clients of the control plane, with retry settings that cannot become a retry
storm, and how to read a ``ClientError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

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
