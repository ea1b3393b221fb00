"""Register local runner hosts with GitHub just in time, through a GitHub App.

Settings come from the environment (``FLEET_GITHUB_*``) or a YAML file (``--github-config``);
with none given the fleet is provisioned and validated but not registered. The App's private
key stays in this process: a host only ever receives its own one-use JIT config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleet.core.github.app import GitHubApp
from fleet.core.github.auth import AppJwtSigner
from fleet.core.github.client import DEFAULT_BASE_URL, GitHubClient, TokenSource
from fleet.core.github.errors import GitHubAuthError, GitHubError, GitHubForbidden, GitHubNotFound
from fleet.core.github.runners import JitConfig, Runner, RunnerBusyError, RunnersAPI, Scope
from fleet.errors import FleetError
from fleet.local.yaml_files import load_mapping

ENV_APP_ID = "FLEET_GITHUB_APP_ID"
ENV_KEY_FILE = "FLEET_GITHUB_APP_PRIVATE_KEY_FILE"
ENV_SCOPE = "FLEET_GITHUB_SCOPE"
ENV_API_URL = "FLEET_GITHUB_API_URL"
ENV_RUNNER_GROUP = "FLEET_GITHUB_RUNNER_GROUP"
# The installation token asks for no more than the runners API needs.
ORG_PERMISSIONS = {"organization_self_hosted_runners": "write"}
REPO_PERMISSIONS = {"administration": "write"}
FILE_KEYS = {"app_id", "private_key_file", "scope", "api_url", "runner_group"}

__all__ = ["GitHubSettings", "Registrar", "RunnerBusyError", "load_settings"]


@dataclass(frozen=True)
class GitHubSettings:
    """Where and as whom runners register. ``private_key`` never appears in a repr."""

    app_id: str
    private_key: str = field(repr=False)
    scope: Scope
    api_url: str = DEFAULT_BASE_URL
    runner_group: str | None = None

    @property
    def scope_text(self) -> str:
        return self.scope.org or self.scope.repository or ""


def _scope(text: str, where: str) -> Scope:
    text = text.strip()
    try:
        return Scope.for_repository(text) if "/" in text else Scope.for_org(text)
    except ValueError as exc:
        raise FleetError(
            f"{where}: {exc}", hint="give an organization (my-org) or a repository (owner/name)"
        ) from exc


def _read_key(path_text: str, where: str) -> str:
    path = Path(path_text).expanduser()
    try:
        key = path.read_text()
    except OSError as exc:
        raise FleetError(
            f"{where}: cannot read the App's private key {path}: {exc.strerror}",
            hint="download a private key on the App's settings page and point to the .pem file",
        ) from exc
    if "PRIVATE KEY-----" not in key:
        raise FleetError(
            f"{where}: {path} is not a PEM private key",
            hint="use the .pem file GitHub generated for the App (-----BEGIN RSA PRIVATE KEY-----)",
        )
    return key


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path | None = None
) -> GitHubSettings | None:
    """GitHub settings from ``config_file`` (if given) or the environment; None if neither
    names an App. Half-given settings are an error that names what is missing."""
    env = os.environ if env is None else env
    if config_file is not None:
        where = str(config_file)
        data = load_mapping(config_file, "GitHub config")
        unknown = sorted(set(data) - FILE_KEYS)
        if unknown:
            raise FleetError(
                f"GitHub config {config_file}: unknown key(s) {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(FILE_KEYS))}",
            )
        values = {key: str(value) for key, value in data.items() if value is not None}
        names = {key: key for key in FILE_KEYS}
    else:
        where = "environment"
        names = {
            "app_id": ENV_APP_ID,
            "private_key_file": ENV_KEY_FILE,
            "scope": ENV_SCOPE,
            "api_url": ENV_API_URL,
            "runner_group": ENV_RUNNER_GROUP,
        }
        values = {key: env[name] for key, name in names.items() if env.get(name, "").strip()}
    required = ("app_id", "private_key_file", "scope")
    if not any(key in values for key in required):
        return None
    missing = [names[key] for key in required if key not in values]
    if missing:
        raise FleetError(
            f"GitHub App settings are incomplete ({where}): {', '.join(missing)} missing",
            hint="give the App id, its private key file and the scope (org or owner/repo), "
            "or none of them to run unregistered",
        )
    if not values["app_id"].strip().isdigit():
        raise FleetError(
            f"{names['app_id']} must be the App's numeric id, got {values['app_id']!r}",
            hint="it is shown as 'App ID' on the App's settings page",
        )
    api_url = values.get("api_url", DEFAULT_BASE_URL).rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        raise FleetError(
            f"{names['api_url']} must be an http(s) URL, got {api_url!r}",
            hint="https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server",
        )
    return GitHubSettings(
        app_id=values["app_id"].strip(),
        private_key=_read_key(values["private_key_file"], names["private_key_file"]),
        scope=_scope(values["scope"], names["scope"]),
        api_url=api_url,
        runner_group=values.get("runner_group"),
    )


def _explain(exc: GitHubError, settings: GitHubSettings) -> FleetError:
    if isinstance(exc, GitHubAuthError):
        return FleetError(
            f"GitHub refused the App's credentials: {exc}",
            hint=f"check {ENV_APP_ID} and the private key belong to the same App, and that this "
            "machine's clock is right",
        )
    if isinstance(exc, GitHubNotFound):
        return FleetError(
            f"the App is not installed on {settings.scope_text} (or cannot see it): {exc}",
            hint="install the App on the organization or repository (App settings > Install App)",
        )
    if isinstance(exc, GitHubForbidden):
        return FleetError(
            f"the App lacks a permission: {exc}",
            hint="grant 'Self-hosted runners: read and write' (organization) or "
            "'Administration: read and write' (repository), then accept the new permissions",
        )
    return FleetError(
        f"GitHub did not answer as expected: {exc}",
        hint=f"check {ENV_API_URL} ({settings.api_url}) and this machine's network access",
    )


class Registrar:
    """JIT registrations, listings and deregistrations of one fleet's runners."""

    def __init__(self, settings: GitHubSettings, client: GitHubClient | None = None) -> None:
        self.settings = settings
        self.client = client or GitHubClient(settings.api_url)
        try:
            signer = AppJwtSigner(settings.app_id, settings.private_key)
        except Exception as exc:  # pyjwt/cryptography raise several types for a bad key
            raise FleetError(
                f"the App's private key cannot sign a JWT: {type(exc).__name__}",
                hint="use the RSA .pem file GitHub generated for the App",
            ) from exc
        permissions = ORG_PERMISSIONS if settings.scope.org else REPO_PERMISSIONS
        self.app = GitHubApp(self.client, signer, permissions=permissions)
        self._api: RunnersAPI | None = None
        self._auth: TokenSource | None = None
        self._group_id: int | None = None

    def __repr__(self) -> str:
        return f"Registrar(scope={self.settings.scope_text!r}, api={self.settings.api_url!r})"

    def _runners_api(self) -> RunnersAPI:
        if self._api is None:
            scope = self.settings.scope
            try:
                if scope.org:
                    installation = self.app.installation_id_for_org(scope.org)
                else:
                    installation = self.app.installation_id_for_repo(scope.repository or "")
                auth: TokenSource = self.app.installation_auth(installation)
                api = RunnersAPI(self.client, scope, auth)
                if scope.org:
                    group = self.settings.runner_group or "Default"
                    try:
                        self._group_id = api.runner_group_id(group)
                    except LookupError as exc:
                        raise FleetError(str(exc), hint=f"set {ENV_RUNNER_GROUP}") from exc
            except GitHubError as exc:
                raise _explain(exc, self.settings) from exc
            self._api, self._auth = api, auth
        return self._api

    def installation_auth(self) -> TokenSource:
        """The installation token source runner administration goes through (the scale-set
        service's registration takes the same token)."""
        self._runners_api()
        assert self._auth is not None
        return self._auth

    def check(self) -> None:
        """Prove the credentials work (installation found, runners listable) or explain."""
        api = self._runners_api()
        try:
            api.list_runners(name="fleet-credentials-check")
        except GitHubError as exc:
            raise _explain(exc, self.settings) from exc

    def register(self, name: str, labels: Sequence[str]) -> JitConfig:
        """A JIT registration for runner ``name``; its config is a one-use secret."""
        api = self._runners_api()
        try:
            return api.generate_jitconfig(name, labels, runner_group_id=self._group_id)
        except GitHubError as exc:
            raise _explain(exc, self.settings) from exc

    def runners(self, prefix: str) -> dict[str, Runner]:
        """This fleet's registrations (names starting with ``prefix``), by name."""
        api = self._runners_api()
        return {r.name: r for r in api.list_runners() if r.name.startswith(prefix)}

    def deregister(self, runner: Runner) -> bool:
        """Delete a registration; False if already gone. Raises ``RunnerBusyError`` if busy."""
        return self._runners_api().delete_runner(runner.id)
