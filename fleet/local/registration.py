"""Register local runner hosts with GitHub just in time, through a GitHub App.

Settings come from the environment (``FLEET_GITHUB_*``) or a YAML file (``--github-config``),
validated by the shared model (``fleet.core.config.settings.GitHubAppSettings``);
with none given the fleet is provisioned and validated but not registered. The App's private
key stays in this process: a host only ever receives its own one-use JIT config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from fleet.core.config.problems import problems_of
from fleet.core.config.settings import GITHUB_APP_SOURCES, GitHubAppSettings, from_environ
from fleet.core.github.app import GitHubApp
from fleet.core.github.auth import AppJwtSigner
from fleet.core.github.client import DEFAULT_BASE_URL, GitHubClient, TokenSource
from fleet.core.github.errors import GitHubAuthError, GitHubError, GitHubForbidden, GitHubNotFound
from fleet.core.github.runners import JitConfig, Runner, RunnerBusyError, RunnersAPI, Scope
from fleet.errors import FleetError
from fleet.local.yaml_files import load_mapping

ENV_APP_ID, ENV_KEY_FILE, ENV_SCOPE, ENV_API_URL, ENV_RUNNER_GROUP = (
    GITHUB_APP_SOURCES[name][0]
    for name in ("app_id", "private_key_file", "scope", "api_url", "runner_group")
)
# The installation token asks for no more than the runners API needs.
ORG_PERMISSIONS = {"organization_self_hosted_runners": "write"}
REPO_PERMISSIONS = {"administration": "write"}
FILE_KEYS = {file_key for _, file_key in GITHUB_APP_SOURCES.values()}

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


_HINTS = {
    "app_id": "it is shown as 'App ID' on the App's settings page",
    "scope": "give an organization (my-org) or a repository (owner/name)",
    "api_url": "https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server",
    "runner_group": "the name of a runner group of the organization (Settings > Actions)",
}


def _validated(values: Mapping[str, str], from_file: bool, where: str) -> GitHubAppSettings:
    """The shared model (fleet.core.config.settings) over the given values; its problems as
    one FleetError naming the variable (or file key) and the fix."""
    try:
        if from_file:
            return GitHubAppSettings.model_validate(values)
        return from_environ(GitHubAppSettings, values)
    except ValidationError as error:
        problems = problems_of(error, GitHubAppSettings, missing=lambda key: "is missing")
    column = 1 if from_file else 0
    setting = {names[column]: name for name, names in GITHUB_APP_SOURCES.items()}
    first = setting.get(problems[0][0], "")
    raise FleetError(
        f"GitHub App settings ({where}): "
        + "; ".join(f"{key}: {message}" for key, message in problems),
        hint=_HINTS.get(first, "fix the setting named above"),
    )


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path | None = None
) -> GitHubSettings | None:
    """GitHub settings from ``config_file`` (if given) or the environment; None if neither
    names an App. Half-given settings are an error that names what is missing."""
    env = os.environ if env is None else env
    column = 1 if config_file is not None else 0
    names = {name: sources[column] for name, sources in GITHUB_APP_SOURCES.items()}
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
    else:
        where = "environment"
        values = {
            variable: env[variable] for variable in names.values() if env.get(variable, "").strip()
        }
    required = ("app_id", "private_key_file", "scope")
    given = {name for name, key in names.items() if key in values}
    if not given & set(required):
        return None
    missing = [names[name] for name in required if name not in given]
    if missing:
        raise FleetError(
            f"GitHub App settings are incomplete ({where}): {', '.join(missing)} missing",
            hint="give the App id, its private key file and the scope (org or owner/repo), "
            "or none of them to run unregistered",
        )
    app = _validated(values, config_file is not None, where)
    return GitHubSettings(
        app_id=app.app_id,
        private_key=_read_key(app.private_key_file, names["private_key_file"]),
        scope=app.runner_scope,
        api_url=app.api_url,
        runner_group=app.runner_group,
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
