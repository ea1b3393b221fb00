"""The boto3 clients of the control plane, with retry settings that cannot become a retry
storm, and how to read a ``ClientError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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


class AwsClients:
    """The boto3 clients the control plane uses, each made at its first use.

    A function container makes only the clients its handler calls (the webhook function
    reads SSM and writes to SQS; it never makes the other four): each boto3 client costs
    milliseconds of CPU to build, paid in the cold start. Clients given by name (test
    doubles) are used as they are; ``make(service)`` builds the others.
    """

    def __init__(self, make: Callable[[str], Any] | None = None, /, **given: Any) -> None:
        unknown = sorted(set(given) - set(SERVICES))
        if unknown:
            raise TypeError(f"unknown AWS clients {unknown}; the control plane uses {SERVICES}")
        self._make = make
        self._clients: dict[str, Any] = dict(given)
        self._lock = threading.Lock()  # a boto3 session is not safe to share between threads

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                if self._make is None:
                    raise AttributeError(f"no {service} client was given and none can be made")
                self._clients[service] = self._make(service)
            return self._clients[service]

    @property
    def autoscaling(self) -> Any:
        return self._client("autoscaling")

    @property
    def ec2(self) -> Any:
        return self._client("ec2")

    @property
    def ssm(self) -> Any:
        return self._client("ssm")

    @property
    def sqs(self) -> Any:
        return self._client("sqs")

    @property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @property
    def cloudwatch(self) -> Any:
        return self._client("cloudwatch")


def aws_clients(
    session: boto3.session.Session | None = None,
    *,
    region: str | None = None,
    config: Config = DEFAULT_CONFIG,
) -> AwsClients:
    """Clients for every service the control plane calls, from one session, each made at its
    first use."""
    session = session or boto3.session.Session()
    return AwsClients(lambda name: session.client(name, region_name=region, config=config))


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))
