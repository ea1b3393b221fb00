"""Fixtures for the control-plane unit tests: an App key pair, a fake clock, a fake GitHub."""

from __future__ import annotations

import pytest

from fleet.core.github.app import GitHubApp
from fleet.core.github.auth import AppJwtSigner
from fleet.core.github.client import GitHubClient, RetryPolicy
from tests.fakes.github_api import FakeClock, FakeGitHub, app_key_pair

APP_ID = "424242"


@pytest.fixture(scope="session")
def app_keys() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a throwaway RSA key made for this test session."""
    return app_key_pair()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_github(httpserver, app_keys, clock) -> FakeGitHub:
    return FakeGitHub(server=httpserver, app_id=APP_ID, public_key=app_keys[1], clock=clock)


@pytest.fixture
def client(fake_github, clock) -> GitHubClient:
    """A client pointed at the fake; sleeping advances the fake clock; no random jitter."""
    with GitHubClient(
        fake_github.base_url,
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda: 0.0,
        retry=RetryPolicy(max_attempts=4),
        timeout=(2.0, 5.0),
    ) as github:
        yield github


@pytest.fixture
def app(client, app_keys, clock) -> GitHubApp:
    signer = AppJwtSigner(APP_ID, app_keys[0], clock=clock)
    return GitHubApp(client, signer, clock=clock)
