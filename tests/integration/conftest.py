"""Integration fixtures: moto with IAM enforced, the fake GitHub, and the simulated fleet.

``make_fleet`` builds a fresh world per test: moto's state, the enforcer's record of calls,
the lifecycle actions and the fake GitHub all start empty. AWS retry backoff and GitHub
backoff move the simulated clock instead of sleeping.

moto, boto3 and the harness are imported by the fixtures, not here: pytest imports this
file in every process, including pytest-xdist's controller, which runs no test and would
spend a second of the layer's start on them before any worker starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.harness import MakeFleet


@pytest.fixture(scope="session", autouse=True)
def moto_speed() -> None:
    """The test-only speed-ups of moto (tests/fakes/moto_*_speed.py), once per process,
    before the first integration test (botocore's: tests/conftest.py)."""
    from tests.fakes import moto_dispatch_speed, moto_dynamodb_speed, moto_kms_speed

    moto_dispatch_speed.install()
    moto_dynamodb_speed.install()
    moto_kms_speed.install()


@pytest.fixture(scope="session")
def app_keys() -> tuple[str, bytes]:
    from tests.fakes.github import app_key_pair

    private, public = app_key_pair()
    return private.decode(), public


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.harness import REGION

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
    from tests.integration.harness import recorded_aws_sleeps

    with recorded_aws_sleeps() as sleeps:
        yield sleeps


@pytest.fixture
def make_fleet(
    httpserver: Any, app_keys: tuple[str, bytes], aws_sleeps: list[float]
) -> Iterator[MakeFleet]:
    from tests.integration.harness import fleet_maker

    with fleet_maker(httpserver, app_keys) as make:
        yield make
