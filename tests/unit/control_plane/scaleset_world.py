"""The scale-set client wired to the FAKE GitHub with scale sets, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from pytest_httpserver import HTTPServer

from fleet.core.github.app import GitHubApp
from fleet.core.github.auth import AppJwtSigner
from fleet.core.github.client import GitHubClient, RetryPolicy
from fleet.core.github.scaleset.service import Clients, ScaleSetService, connect
from fleet.core.github.scaleset.session import MessageSession
from fleet.core.github.scaleset.target import Target
from tests.fakes.github_api import FakeClock
from tests.fakes.scaleset_agent import threaded_server
from tests.fakes.scaleset_github import FakeGitHubWithScaleSets

APP_ID = "424242"
ORG = "octo-org"
GROUP = "fleet-group"
GROUP_ID = 7


class TimeoutRecorder(requests.Session):
    """A requests session that records the timeout of every call it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[Any] = []

    def request(self, method, url, **kwargs):  # type: ignore[override]
        self.timeouts.append(kwargs.get("timeout"))
        return super().request(method, url, **kwargs)


@dataclass
class World:
    fake: FakeGitHubWithScaleSets
    clock: FakeClock
    service: ScaleSetService
    http: TimeoutRecorder

    def session(self, scale_set_id: int, owner: str = "listener-1") -> MessageSession:
        return MessageSession(self.service, scale_set_id, owner, poll_timeout=(2.0, 10.0))


@contextmanager
def scaleset_world(
    app_keys: tuple[bytes, bytes],
    server: HTTPServer | None = None,
    *,
    max_attempts: int = 3,
    hold_seconds: float = 0.05,
) -> Iterator[World]:
    """A world on ``server`` (cleared afterwards; shared between tests, it spares each one
    the server's half-second shutdown) or on a server of its own."""
    if server is None:
        with (
            threaded_server() as own,
            scaleset_world(app_keys, own, max_attempts=max_attempts) as world,
        ):
            yield world
        return
    clock = FakeClock()
    try:
        fake = FakeGitHubWithScaleSets(
            server=server, app_id=APP_ID, public_key=app_keys[1], clock=clock
        )
        fake.scalesets.hold_seconds = hold_seconds
        fake.install(ORG, 1)
        fake.add_group(ORG, GROUP, group_id=GROUP_ID)
        http = TimeoutRecorder()
        retry = RetryPolicy(max_attempts=max_attempts, max_rate_limit_wait=60.0)
        api = GitHubClient(
            fake.base_url, session=http, sleep=clock.sleep, clock=clock, jitter=lambda: 0.0
        )
        app = GitHubApp(api, AppJwtSigner(APP_ID, app_keys[0], clock=clock), clock=clock)
        installation = app.installation_auth(app.installation_id_for_org(ORG))
        clients = Clients(
            session=http, retry=retry, sleep=clock.sleep, clock=clock, jitter=lambda: 0.0
        )
        service = connect(
            api, installation, Target.parse(ORG), clients=clients, clock=clock, sleep=clock.sleep
        )
        yield World(fake, clock, service, http)
    finally:
        server.clear()
