"""The FAKE GitHub with scale sets both scale-set measurements run against
(``bench/_scale_set_fleet.py``, ``bench/_scale_set_idle.py``), and the fleet's GitHub settings
that point at it."""

from __future__ import annotations

from pathlib import Path

from pytest_httpserver import HTTPServer

from bench.scale_set import APP_ID, GROUP, GROUP_ID, ORG
from tests.fakes.github_jobs import WallClock
from tests.fakes.scaleset_github import FakeGitHubWithScaleSets


def fake_github(server: HTTPServer, public_key: bytes, hold: float) -> FakeGitHubWithScaleSets:
    """The fake on ``server``, on the wall clock, holding a quiet long poll ``hold`` seconds,
    with the App installed on the organisation and the fleet's runner group."""
    github = FakeGitHubWithScaleSets(
        server=server, app_id=APP_ID, public_key=public_key, clock=WallClock()
    )
    github.scalesets.hold_seconds = hold
    github.install(ORG, 1)
    github.add_group(ORG, GROUP, group_id=GROUP_ID)
    return github


def github_settings(directory: Path, private_key: bytes, api_url: str) -> dict[str, str]:
    """The fleet's ``FLEET_GITHUB_*`` settings for the fake at ``api_url``; the App's key is
    written (0600) to ``directory``/app.pem."""
    key = directory / "app.pem"
    key.write_bytes(private_key)
    key.chmod(0o600)
    return {
        "FLEET_GITHUB_APP_ID": APP_ID,
        "FLEET_GITHUB_APP_PRIVATE_KEY_FILE": str(key),
        "FLEET_GITHUB_SCOPE": ORG,
        "FLEET_GITHUB_API_URL": api_url,
        "FLEET_GITHUB_RUNNER_GROUP": GROUP,
    }
