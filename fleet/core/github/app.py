"""A GitHub App: JWT-authenticated App endpoints and installation tokens, cached and
refreshed before they expire."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleet.core.github.auth import AppJwtSigner, InstallationToken, InstallationTokenCache
from fleet.core.github.client import GitHubClient, TokenSource
from fleet.core.github.errors import GitHubError

Clock = Callable[[], float]


@dataclass(frozen=True)
class InstallationAuth:
    """Token source for one installation, backed by a shared ``InstallationTokenCache``."""

    cache: InstallationTokenCache
    installation_id: int

    def token(self) -> str:
        return self.cache.token(self.installation_id)

    def invalidate(self) -> None:
        self.cache.invalidate(self.installation_id)


def _parse_expiry(value: Any, *, path: str) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise GitHubError("POST", path, 201, f"bad expires_at {value!r} in token answer") from exc


class GitHubApp:
    """A GitHub App: JWT-authenticated App endpoints and cached installation tokens."""

    def __init__(
        self,
        client: GitHubClient,
        signer: AppJwtSigner,
        *,
        clock: Clock = time.time,
        refresh_before: float = 300,
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.signer = signer
        # Least privilege: ask for only these permissions on each installation token.
        self.permissions = dict(permissions) if permissions else None
        self.tokens = InstallationTokenCache(
            self.create_installation_token, clock=clock, refresh_before=refresh_before
        )

    @property
    def jwt_auth(self) -> TokenSource:
        """Token source for endpoints that need the App JWT (``/app/...``)."""
        return self.signer

    def installation_id_for_org(self, org: str) -> int:
        """The App's installation id on ``org`` (GET /orgs/{org}/installation)."""
        return int(self.client.get_json(f"/orgs/{org}/installation", auth=self.signer)["id"])

    def installation_id_for_repo(self, full_name: str) -> int:
        """The App's installation id for ``owner/repo`` (GET /repos/{owner}/{repo}/installation)."""
        owner, _, repo = full_name.partition("/")
        if not owner or not repo or "/" in repo:
            raise ValueError(f"repository must be 'owner/name', got {full_name!r}")
        path = f"/repos/{owner}/{repo}/installation"
        return int(self.client.get_json(path, auth=self.signer)["id"])

    def create_installation_token(self, installation_id: int) -> InstallationToken:
        """A new installation token (POST /app/installations/{id}/access_tokens)."""
        path = f"/app/installations/{int(installation_id)}/access_tokens"
        body = {"permissions": self.permissions} if self.permissions else None
        answer = self.client.post_json(path, auth=self.signer, json=body)
        if not isinstance(answer, dict) or not answer.get("token"):
            raise GitHubError("POST", path, 201, "token answer has no 'token'")
        return InstallationToken(
            token=str(answer["token"]),
            expires_at=_parse_expiry(answer.get("expires_at"), path=path),
            installation_id=int(installation_id),
        )

    def installation_auth(self, installation_id: int) -> InstallationAuth:
        """Token source for ``installation_id`` (cached, refreshed before expiry)."""
        return InstallationAuth(self.tokens, int(installation_id))
