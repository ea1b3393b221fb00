"""Settings read from the environment, with pydantic-settings, on the shared field types.

``ControlPlaneSettings`` is what every control plane function gets: the Pulumi program
(infra/control_plane.py, ``function_environment``) writes these variables from the stack
model, so the functions accept exactly what the stack accepted. ``GitHubAppSettings`` is the
local fleet's GitHub App (``FLEET_GITHUB_*``, or the same keys lower-case in a YAML file).
The environment is text, so these models are lax where the stack model is strict ("10" is 10).

``from_environ(cls, environ)`` reads a given mapping instead of ``os.environ`` (tests, and a
Lambda handler that is handed its environment).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from fleet.core.config import fields, rules
from fleet.core.config.defaults import FLEET_TAG, JIT_INSTANCE_TAG, SCALE_SET_MODE
from fleet.core.github.runners import Scope
from fleet.core.scaling import FleetLimits

S = TypeVar("S", bound=BaseSettings)
_GIVEN: ContextVar[Mapping[str, str] | None] = ContextVar("fleet_environ", default=None)


class _GivenEnvironment(EnvSettingsSource):
    """The environment source over a given mapping rather than ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._given = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _EnvironmentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,
        env_ignore_empty=True,
        str_strip_whitespace=True,
        extra="ignore",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = _GIVEN.get()
        if given is None:
            return (init_settings, env_settings)
        return (init_settings, _GivenEnvironment(settings_cls, given))


@contextmanager
def _reading(environ: Mapping[str, str]) -> Iterator[None]:
    token = _GIVEN.set(environ)
    try:
        yield
    finally:
        _GIVEN.reset(token)


def from_environ(cls: type[S], environ: Mapping[str, str]) -> S:
    """``cls`` from ``environ``; raises pydantic's ValidationError (``problems`` words it)."""
    with _reading(environ):
        return cls()


def _env(name: str, description: str, default: Any = ..., **kwargs: Any) -> Any:
    return Field(default, validation_alias=name, description=description, **kwargs)


def _comma_separated(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(label.strip() for label in value.split(",") if label.strip())
    return value


CommaSeparatedLabels = Annotated[fields.RunnerLabels, NoDecode, BeforeValidator(_comma_separated)]
Partition = Literal[rules.PARTITIONS]  # type: ignore[valid-type]


# githubMode webhook only: the webhook secret, the deliveries queue and the job ledger.
WEBHOOK_ONLY = ("webhook_secret_parameter", "queue_url", "ledger_table")


class ControlPlaneSettings(_EnvironmentSettings):
    """Everything a control plane function needs, validated (names, paths and numbers only:
    secrets stay in SSM and are read at run time)."""

    fleet_name: fields.FleetName = _env(
        "FLEET_NAME", "the fleet's name; runner names are <name>-<instance-id>"
    )
    github_scope: fields.GitHubScope = _env(
        "FLEET_GITHUB_SCOPE", "organization ('my-org') or repository ('owner/repo') served"
    )
    github_api_url: fields.GitHubApiUrl = _env(
        "FLEET_GITHUB_API_URL",
        "GitHub API base URL (GitHub Enterprise Server: https://HOST/api/v3)",
        "https://api.github.com",
    )
    runner_labels: CommaSeparatedLabels = _env("FLEET_RUNNER_LABELS", "comma-separated labels")
    runner_group: fields.RunnerGroup = _env(
        "FLEET_RUNNER_GROUP", "runner group name (organization scope)", "runner-fleet"
    )
    allow_public_repositories: bool = _env(
        "FLEET_ALLOW_PUBLIC_REPOSITORIES", "true to let public repositories use the group", False
    )
    github_mode: fields.GitHubMode = _env(
        "FLEET_GITHUB_MODE",
        "how jobs are learnt: webhook, or scaleSet (a runner scale set)",
        "webhook",
    )
    app_id_parameter: fields.SsmParameterName = _env(
        "FLEET_APP_ID_PARAMETER", "SSM SecureString with the GitHub App id"
    )
    app_private_key_parameter: fields.SsmParameterName = _env(
        "FLEET_APP_PRIVATE_KEY_PARAMETER", "SSM SecureString with the GitHub App private key"
    )
    webhook_secret_parameter: fields.SsmParameterName | None = _env(
        "FLEET_WEBHOOK_SECRET_PARAMETER",
        "SSM SecureString with the webhook secret",
        None,
        validate_default=True,
    )
    asg_name: fields.GroupName = _env("FLEET_ASG_NAME", "the runners' Auto Scaling group")
    fleet_tag: str = _env(
        "FLEET_FLEET_TAG", "tag key that marks the fleet's resources", FLEET_TAG, min_length=1
    )
    kms_key_arn: fields.KmsKeyArn = _env(
        "FLEET_KMS_KEY_ARN", "customer-managed KMS key for JIT config parameters"
    )
    jit_parameter_template: fields.JitParameterTemplate = _env(
        "FLEET_JIT_PARAMETER_TEMPLATE", "JIT parameter name with {instance_id}"
    )
    jit_instance_tag: str = _env(
        "FLEET_JIT_INSTANCE_TAG",
        "tag key holding the instance ARN on each JIT parameter",
        JIT_INSTANCE_TAG,
        min_length=1,
    )
    queue_url: fields.QueueUrl | None = _env(
        "FLEET_QUEUE_URL", "SQS queue of webhook deliveries", None, validate_default=True
    )
    ledger_table: fields.TableName | None = _env(
        "FLEET_LEDGER_TABLE", "DynamoDB table of the job ledger", None, validate_default=True
    )
    metrics_namespace: str = _env(
        "FLEET_METRICS_NAMESPACE", "CloudWatch namespace of the fleet's metrics", "RunnerFleet"
    )
    partition: Partition = _env("FLEET_AWS_PARTITION", "AWS partition", "aws")
    account_id: fields.AccountId = _env(
        "FLEET_AWS_ACCOUNT_ID", "12-digit account id (instance ARNs)"
    )
    region: fields.Region = _env("AWS_REGION", "region (set by Lambda)")
    min_size: fields.GroupSize = _env("FLEET_MIN_SIZE", "smallest group size", 0)
    max_size: fields.MaxGroupSize = _env("FLEET_MAX_SIZE", "largest group size")
    warm_idle: fields.GroupSize = _env("FLEET_WARM_IDLE", "idle runners to keep ready", 0)
    max_scale_up_per_cycle: int = _env(
        "FLEET_MAX_SCALE_UP_PER_CYCLE", "most instances added per scaling cycle", 10, ge=1, le=1000
    )
    boot_deadline_minutes: fields.RegistrationTimeoutMinutes = _env(
        "FLEET_BOOT_DEADLINE_MINUTES", "minutes an instance has to register its runner", 20
    )
    max_lifetime_minutes: fields.RunnerLifetimeMinutes = _env(
        "FLEET_MAX_LIFETIME_MINUTES", "minutes after which idle runners are retired", 360
    )
    job_timeout_minutes: fields.JobTimeoutMinutes = _env(
        "FLEET_JOB_TIMEOUT_MINUTES", "longest job, in minutes", 180
    )
    idle_grace_minutes: int = _env(
        "FLEET_IDLE_GRACE_MINUTES",
        "minutes a surplus runner stays idle before it is retired",
        5,
        ge=0,
        le=1440,
    )
    queued_too_long_minutes: int = _env(
        "FLEET_QUEUED_TOO_LONG_MINUTES",
        "minutes queued after which a job raises the alarm",
        15,
        ge=1,
        le=10_080,
    )
    jit_rate_per_minute: float = _env(
        "FLEET_JIT_RATE_PER_MINUTE",
        "JIT configs the fleet may create per minute",
        150,
        ge=0.1,
        le=10_000,
    )
    reconcile_lookback_minutes: int = _env(
        "FLEET_RECONCILE_LOOKBACK_MINUTES",
        "how far back the reconciler looks for failed deliveries",
        180,
        ge=5,
        le=4320,
    )
    configured_scale_set_name: fields.ScaleSetName | None = _env(
        "FLEET_SCALE_SET_NAME",
        "the runner scale set's name (scaleSet mode; default: the fleet's)",
        None,
    )
    listener_session_parameter: fields.SsmParameterName | None = _env(
        "FLEET_LISTENER_SESSION_PARAMETER",
        "SSM String parameter where the listener remembers its open session (scaleSet mode)",
        None,
        validate_default=True,
    )

    @field_validator(*WEBHOOK_ONLY, "listener_session_parameter")
    @classmethod
    def _mode_has_its_variables(cls, value: Any, info: ValidationInfo) -> Any:
        """Webhook mode needs its secret, queue and ledger; scaleSet mode has none of them
        (nothing reads them there) but needs the listener's session parameter. A mode that
        is itself invalid is checked as webhook mode."""
        scale_set = info.data.get("github_mode") == SCALE_SET_MODE
        wanted = scale_set == (info.field_name == "listener_session_parameter")
        if value is None and wanted:
            field = cls.model_fields[str(info.field_name)]
            raise fields.refuse(
                f"is not set ({field.description})", key=str(field.validation_alias)
            )
        return value

    @model_validator(mode="after")
    def _limits_hold(self) -> ControlPlaneSettings:
        try:
            self.limits  # noqa: B018 - FleetLimits checks the sizes and times together
        except ValueError as exc:
            raise fields.refuse(str(exc), key="FLEET_MIN_SIZE/FLEET_MAX_SIZE/...") from None
        return self

    @property
    def limits(self) -> FleetLimits:
        return FleetLimits(
            min_size=self.min_size,
            max_size=self.max_size,
            warm_idle=self.warm_idle,
            max_lifetime=timedelta(minutes=self.max_lifetime_minutes),
            boot_deadline=timedelta(minutes=self.boot_deadline_minutes),
            max_scale_up_per_cycle=self.max_scale_up_per_cycle,
            idle_grace=timedelta(minutes=self.idle_grace_minutes),
        )

    @property
    def job_timeout(self) -> timedelta:
        return timedelta(minutes=self.job_timeout_minutes)

    @property
    def queued_too_long(self) -> timedelta:
        return timedelta(minutes=self.queued_too_long_minutes)

    @property
    def reconcile_lookback(self) -> timedelta:
        return timedelta(minutes=self.reconcile_lookback_minutes)

    @property
    def scale_set(self) -> bool:
        """githubMode scaleSet: jobs come from a runner scale set's listener, not webhooks."""
        return self.github_mode == SCALE_SET_MODE

    @property
    def scale_set_name(self) -> str:
        """The scale set jobs name in ``runs-on``: FLEET_SCALE_SET_NAME, or the fleet's name."""
        return self.configured_scale_set_name or self.fleet_name

    @property
    def scope(self) -> Scope:
        if "/" in self.github_scope:
            return Scope.for_repository(self.github_scope)
        return Scope.for_org(self.github_scope)

    @property
    def owner(self) -> str:
        return self.github_scope.split("/", 1)[0]

    def instance_arn(self, instance_id: str) -> str:
        return f"arn:{self.partition}:ec2:{self.region}:{self.account_id}:instance/{instance_id}"


def variables(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> what it means, in the model's order."""
    return {
        str(field.validation_alias): str(field.description)
        for field in cls.model_fields.values()
        if isinstance(field.validation_alias, str)
    }


def _both(file_key: str, variable: str, description: str, default: Any = ...) -> Any:
    return Field(
        default, validation_alias=AliasChoices(variable, file_key), description=description
    )


class GitHubAppSettings(_EnvironmentSettings):
    """Where and as whom local runners register: the App, its key file and the scope. From
    the environment (``FLEET_GITHUB_*``) or a YAML file with the keys in ``FILE_KEYS``."""

    app_id: fields.GitHubAppId = _both("app_id", "FLEET_GITHUB_APP_ID", "the App's numeric id")
    private_key_file: str = _both(
        "private_key_file", "FLEET_GITHUB_APP_PRIVATE_KEY_FILE", "the App's private key (.pem)"
    )
    scope: fields.GitHubScope = _both(
        "scope", "FLEET_GITHUB_SCOPE", "organization (my-org) or repository (owner/name)"
    )
    api_url: fields.GitHubApiUrl = _both(
        "api_url", "FLEET_GITHUB_API_URL", "GitHub API base URL", "https://api.github.com"
    )
    runner_group: fields.RunnerGroup | None = _both(
        "runner_group", "FLEET_GITHUB_RUNNER_GROUP", "runner group (organizations)", None
    )

    @property
    def runner_scope(self) -> Scope:
        return Scope.for_repository(self.scope) if "/" in self.scope else Scope.for_org(self.scope)


# Setting -> (environment variable, key in a --github-config file).
GITHUB_APP_SOURCES: dict[str, tuple[str, str]] = {
    name: tuple(field.validation_alias.choices)  # type: ignore[union-attr,misc]
    for name, field in GitHubAppSettings.model_fields.items()
}
