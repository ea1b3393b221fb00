"""Fixtures for the control-plane unit tests: an App key pair, a fake clock, a fake GitHub,
and the scale-set world (the scale-set client wired to the FAKE GitHub with scale sets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleet.core.github.app import GitHubApp
from fleet.core.github.auth import AppJwtSigner
from fleet.core.github.client import GitHubClient, RetryPolicy
from tests.fakes.github_api import FakeClock, FakeGitHub, app_key_pair
from tests.fakes.scaleset_agent import threaded_server
from tests.unit.control_plane.scaleset_world import World, scaleset_world

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


@pytest.fixture(scope="module")
def scaleset_server():
    """A loopback server for the fake scale-set service, one per test module."""
    with threaded_server() as running:
        yield running


@pytest.fixture
def world(app_keys, scaleset_server) -> Iterator[World]:
    """A scale-set world on the module's server, cleared after each test."""
    with scaleset_world(app_keys, scaleset_server) as w:
        yield w
