"""The local fleet's GitHub App settings for the FAKE GitHub of the e2e tests: one key pair
per module (``conftest.app_key``) and the FLEET_GITHUB_* environment (``github_app_env``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ORG = "octo-org"
RUNNER_GROUP = "local-fleet"


@contextmanager
def github_app_env(
    app_id: str, key_file: Path, api_url: str, webhook_secret: str | None = None
) -> Iterator[None]:
    """The fleet registers on the fake GitHub's organization ``ORG`` in ``RUNNER_GROUP``
    while this lasts; FLEET_WEBHOOK_SECRET is ``webhook_secret``, or unset."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEET_GITHUB_APP_ID", app_id)
        patch.setenv("FLEET_GITHUB_APP_PRIVATE_KEY_FILE", str(key_file))
        patch.setenv("FLEET_GITHUB_SCOPE", ORG)
        patch.setenv("FLEET_GITHUB_API_URL", api_url)
        patch.setenv("FLEET_GITHUB_RUNNER_GROUP", RUNNER_GROUP)
        if webhook_secret is None:
            patch.delenv("FLEET_WEBHOOK_SECRET", raising=False)
        else:
            patch.setenv("FLEET_WEBHOOK_SECRET", webhook_secret)
        yield
