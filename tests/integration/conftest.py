"""Integration fixtures: moto with IAM enforced, the fake GitHub, and the simulated fleet.

``make_fleet`` builds a fresh world per test: moto's state, the enforcer's record of calls,
the lifecycle actions and the fake GitHub all start empty. AWS retry backoff and GitHub
backoff move the simulated clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import botocore_client_speed, moto_dynamodb_speed, moto_kms_speed
from tests.fakes.github import app_key_pair
from tests.integration.harness import REGION, MakeFleet, fleet_maker, recorded_aws_sleeps

moto_dynamodb_speed.install()
moto_kms_speed.install()
botocore_client_speed.install()


@pytest.fixture(scope="session")
def app_keys() -> tuple[str, bytes]:
    private, public = app_key_pair()
    return private.decode(), public


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may reach real AWS: no ambient credentials, a fixed region.
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # moto otherwise builds ~13,000 stock images (and a snapshot each) into every EC2 backend
    # it creates: most of a test's set-up. The launch template names an image nothing
    # validates (moto checks image ids only under MOTO_ENABLE_AMI_VALIDATION).
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture
def aws_sleeps() -> Iterator[list[float]]:
    """botocore's retry backoff, recorded instead of slept."""
    with recorded_aws_sleeps() as sleeps:
        yield sleeps


@pytest.fixture
def make_fleet(
    httpserver: Any, app_keys: tuple[str, bytes], aws_sleeps: list[float]
) -> Iterator[MakeFleet]:
    with fleet_maker(httpserver, app_keys) as make:
        yield make
