"""Fixtures for the local fleet's unit tests: an App key pair, a FAKE GitHub with jobs, and one
with runner scale sets on a threaded loopback server (``world``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.core.github.runners import Scope
from fleet.local.registration import GitHubSettings, Registrar
from fleet.local.scale_set import StateFile, state_path
from tests.fakes.github import app_key_pair
from tests.fakes.github_jobs import FakeGitHubWithJobs, WallClock
from tests.fakes.scaleset_agent import threaded_server
from tests.fakes.scaleset_github import FakeGitHubWithScaleSets

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


@dataclass
class World:
    fake: FakeGitHubWithScaleSets
    rest: Registrar
    directory: Path

    def state(self) -> StateFile:
        return StateFile(state_path("f", self.directory))


@pytest.fixture(scope="module")
def server():
    with threaded_server() as running:
        yield running


@pytest.fixture
def world(server, app_keys, tmp_path):
    fake = FakeGitHubWithScaleSets(
        server=server, app_id=APP_ID, public_key=app_keys[1], clock=WallClock()
    )
    fake.scalesets.hold_seconds = 0.05
    fake.install(ORG, 1)
    fake.add_group(ORG, "local-fleet", group_id=7)
    settings = GitHubSettings(
        app_id=APP_ID,
        private_key=app_keys[0].decode(),
        scope=Scope.for_org(ORG),
        api_url=fake.base_url,
        runner_group="local-fleet",
    )
    try:
        yield World(fake, Registrar(settings), tmp_path)
    finally:
        server.clear()
