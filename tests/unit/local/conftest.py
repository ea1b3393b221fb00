"""Fixtures for the local fleet's unit tests: an App key pair and a FAKE GitHub with jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.core.github.runners import Scope
from fleet.local.registration import GitHubSettings
from tests.fakes.github import app_key_pair
from tests.fakes.github_jobs import FakeGitHubWithJobs, WallClock

APP_ID = "31337"
ORG = "octo-org"


@pytest.fixture(scope="session")
def app_keys() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a throwaway RSA key made for this test session."""
    return app_key_pair()


@pytest.fixture
def key_file(tmp_path: Path, app_keys: tuple[bytes, bytes]) -> Path:
    path = tmp_path / "app.pem"
    path.write_bytes(app_keys[0])
    path.chmod(0o600)
    return path


@pytest.fixture
def github(httpserver, app_keys) -> FakeGitHubWithJobs:
    """The FAKE GitHub on a local port, with the App installed on ORG and a runner group."""
    fake = FakeGitHubWithJobs(
        server=httpserver, app_id=APP_ID, public_key=app_keys[1], clock=WallClock()
    )
    fake.install(ORG, 1)
    fake.add_group(ORG, "local-fleet", group_id=7)
    return fake


@pytest.fixture
def settings(github: FakeGitHubWithJobs, app_keys) -> GitHubSettings:
    return GitHubSettings(
        app_id=APP_ID,
        private_key=app_keys[0].decode(),
        scope=Scope.for_org(ORG),
        api_url=github.base_url,
        runner_group="local-fleet",
    )
