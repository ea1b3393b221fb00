"""Integration fixtures: moto with IAM enforced, the fake GitHub, and the simulated fleet.

``make_fleet`` builds a fresh world per test: moto's state, the enforcer's record of calls,
the lifecycle actions and the fake GitHub all start empty. AWS retry backoff and GitHub
backoff move the simulated clock instead of sleeping.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import botocore.endpoint
import pytest
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

from tests.fakes import moto_dynamodb_speed
from tests.fakes.github import FakeGitHubActions, app_key_pair
from tests.integration import moto_asg
from tests.integration.harness import (
    ACCOUNT,
    APP_ID,
    GROUP_ID,
    INSTALLATION_ID,
    ORG,
    REGION,
    AwsWorld,
    Fleet,
    OffsetClock,
    Throttler,
    fleet_environment,
)
from tests.integration.moto_iam import PolicyEnforcer

MakeFleet = Callable[..., Fleet]

moto_dynamodb_speed.install()


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


@pytest.fixture
def aws_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry backoff, recorded instead of slept."""
    sleeps: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=sleeps.append))
    return sleeps


@pytest.fixture
def make_fleet(
    httpserver: Any, app_keys: tuple[str, bytes], aws_sleeps: list[float]
) -> Iterator[MakeFleet]:
    stack = ExitStack()
    stack.enter_context(mock_aws())
    enforcer = PolicyEnforcer(ACCOUNT, REGION)
    stack.enter_context(enforcer.installed())
    actions = stack.enter_context(moto_asg.patched(moto_asg.LifecycleActions()))

    def make(*, max_size: int = 10, throttle: Throttler | None = None, **env: Any) -> Fleet:
        clock = OffsetClock()
        github = FakeGitHubActions(
            server=httpserver, app_id=APP_ID, public_key=app_keys[1], clock=clock
        )
        github.install(ORG, INSTALLATION_ID)
        github.add_group(ORG, "runner-fleet", group_id=GROUP_ID)
        aws = AwsWorld(enforcer, app_keys[0], max_size=max_size)
        stack.enter_context(enable_iam_authentication())
        return Fleet(
            aws=aws,
            github=github,
            clock=clock,
            actions=actions,
            throttler=throttle or Throttler(),
            env=fleet_environment(aws, github.base_url, **env),
        )

    with stack:
        yield make
