"""The control plane functions' settings: environment variables -> one typed, validated object.

The Pulumi program (infra/control_plane.py, ``function_environment``) writes these variables;
every function gets the same set. They hold names, paths and numbers only: secrets stay in
SSM and are read at run time. ``Settings.from_env`` reports every problem at once, naming the
variable and what a good value looks like.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from fleet.core.github.runners import Scope
from fleet.core.scaling import FleetLimits

T = TypeVar("T")

PREFIX = "FLEET_"
_PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f")
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_ACCOUNT = re.compile(r"^\d{12}$")
_PARAMETER = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")

# Variable -> what it means (also the order of the error report).
VARIABLES: dict[str, str] = {
    "FLEET_NAME": "the fleet's name; runner names are <name>-<instance-id>",
    "FLEET_GITHUB_SCOPE": "organization ('my-org') or repository ('owner/repo') served",
    "FLEET_GITHUB_API_URL": "GitHub API base URL (GitHub Enterprise Server: https://HOST/api/v3)",
    "FLEET_RUNNER_LABELS": "comma-separated runner labels",
    "FLEET_RUNNER_GROUP": "runner group name (organization scope)",
    "FLEET_ALLOW_PUBLIC_REPOSITORIES": "true to let public repositories use the runner group",
    "FLEET_APP_ID_PARAMETER": "SSM SecureString with the GitHub App id",
    "FLEET_APP_PRIVATE_KEY_PARAMETER": "SSM SecureString with the GitHub App private key",
    "FLEET_WEBHOOK_SECRET_PARAMETER": "SSM SecureString with the webhook secret",
    "FLEET_ASG_NAME": "the runners' Auto Scaling group",
    "FLEET_FLEET_TAG": "tag key that marks the fleet's resources (value: the fleet name)",
    "FLEET_KMS_KEY_ARN": "customer-managed KMS key for JIT config parameters",
    "FLEET_JIT_PARAMETER_TEMPLATE": "JIT parameter name with {instance_id}",
    "FLEET_JIT_INSTANCE_TAG": "tag key holding the instance ARN on each JIT parameter",
    "FLEET_QUEUE_URL": "SQS queue of webhook deliveries",
    "FLEET_LEDGER_TABLE": "DynamoDB table of the job ledger",
    "FLEET_METRICS_NAMESPACE": "CloudWatch namespace of the fleet's metrics",
    "FLEET_AWS_PARTITION": "AWS partition (aws, aws-cn, aws-us-gov)",
    "FLEET_AWS_ACCOUNT_ID": "12-digit account id (instance ARNs)",
    "AWS_REGION": "region (set by Lambda)",
    "FLEET_MIN_SIZE": "smallest group size",
    "FLEET_MAX_SIZE": "largest group size",
    "FLEET_WARM_IDLE": "idle runners to keep ready",
    "FLEET_MAX_SCALE_UP_PER_CYCLE": "most instances added per scaling cycle",
    "FLEET_BOOT_DEADLINE_MINUTES": "minutes an instance has to register its runner",
    "FLEET_MAX_LIFETIME_MINUTES": "minutes after which idle runners are retired",
    "FLEET_JOB_TIMEOUT_MINUTES": "longest job, in minutes",
    "FLEET_IDLE_GRACE_MINUTES": "minutes a surplus runner stays idle before it is retired",
    "FLEET_QUEUED_TOO_LONG_MINUTES": "minutes queued after which a job raises the alarm",
    "FLEET_JIT_RATE_PER_MINUTE": "JIT configs the fleet may create per minute",
    "FLEET_RECONCILE_LOOKBACK_MINUTES": "how far back the reconciler looks for failed deliveries",
    "FLEET_GITHUB_MODE": "how jobs are learnt: webhook, or scaleSet (a runner scale set)",
    "FLEET_SCALE_SET_NAME": "the runner scale set's name (scaleSet mode; default: the fleet's)",
}

DEFAULTS: dict[str, str] = {
    "FLEET_GITHUB_API_URL": "https://api.github.com",
    "FLEET_RUNNER_GROUP": "runner-fleet",
    "FLEET_ALLOW_PUBLIC_REPOSITORIES": "false",
    "FLEET_FLEET_TAG": "runner-fleet",
    "FLEET_JIT_INSTANCE_TAG": "runner-fleet-instance-arn",
    "FLEET_METRICS_NAMESPACE": "RunnerFleet",
    "FLEET_AWS_PARTITION": "aws",
    "FLEET_MIN_SIZE": "0",
    "FLEET_WARM_IDLE": "0",
    "FLEET_MAX_SCALE_UP_PER_CYCLE": "10",
    "FLEET_BOOT_DEADLINE_MINUTES": "20",
    "FLEET_MAX_LIFETIME_MINUTES": "360",
    "FLEET_JOB_TIMEOUT_MINUTES": "180",
    "FLEET_IDLE_GRACE_MINUTES": "5",
    "FLEET_QUEUED_TOO_LONG_MINUTES": "15",
    "FLEET_JIT_RATE_PER_MINUTE": "150",
    "FLEET_RECONCILE_LOOKBACK_MINUTES": "180",
    "FLEET_GITHUB_MODE": "webhook",
}
GITHUB_MODES = ("webhook", "scaleSet")


class SettingsError(ValueError):
    """The environment does not configure the control plane; lists every problem."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{name}: {message}" for name, message in problems]
        super().__init__(
            "control plane settings are invalid (they come from the function's environment, "
            "written by infra/control_plane.py):\n  " + "\n  ".join(lines)
        )


@dataclass(frozen=True)
class Settings:
    """Everything a control plane function needs, validated."""

    fleet_name: str
    github_scope: str
    github_api_url: str
    runner_labels: tuple[str, ...]
    runner_group: str
    allow_public_repositories: bool
    app_id_parameter: str
    app_private_key_parameter: str
    webhook_secret_parameter: str
    asg_name: str
    fleet_tag: str
    kms_key_arn: str
    jit_parameter_template: str
    jit_instance_tag: str
    queue_url: str
    ledger_table: str
    metrics_namespace: str
    partition: str
    account_id: str
    region: str
    limits: FleetLimits
    job_timeout: timedelta
    queued_too_long: timedelta
    jit_rate_per_minute: float
    reconcile_lookback: timedelta
    github_mode: str = "webhook"
    scale_set_name: str = ""

    @property
    def scale_set(self) -> bool:
        return self.github_mode == "scaleSet"

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

    # Long on purpose: one line per environment variable, the list infra/control_plane.py's
    # function_environment writes; split, the two lists would no longer read side by side.
    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate; raises ``SettingsError`` naming every bad variable."""
        r = _Reader(environ)
        name = r.text("FLEET_NAME", pattern=re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$"))
        scope = r.text("FLEET_GITHUB_SCOPE")
        if scope:
            try:
                Scope.for_repository(scope) if "/" in scope else Scope.for_org(scope)
            except ValueError as exc:
                r.fail("FLEET_GITHUB_SCOPE", str(exc))
        api_url = r.text("FLEET_GITHUB_API_URL", pattern=re.compile(r"^https?://[^/\s]+(/\S*)?$"))
        labels = tuple(
            label.strip() for label in r.text("FLEET_RUNNER_LABELS").split(",") if label.strip()
        )
        if not labels and "FLEET_RUNNER_LABELS" not in r.failed:
            r.fail("FLEET_RUNNER_LABELS", "no labels: give e.g. self-hosted,linux,dind")
        template = r.text("FLEET_JIT_PARAMETER_TEMPLATE")
        if template and (
            "{instance_id}" not in template
            or not _PARAMETER.match(template.replace("{instance_id}", "i-0"))
        ):
            r.fail(
                "FLEET_JIT_PARAMETER_TEMPLATE",
                f"{template!r} must be an absolute SSM name containing {{instance_id}}",
            )
        partition = r.text("FLEET_AWS_PARTITION")
        if partition and partition not in _PARTITIONS:
            r.fail("FLEET_AWS_PARTITION", f"{partition!r} is not one of {', '.join(_PARTITIONS)}")
        min_size = r.number("FLEET_MIN_SIZE", int, 0, 1000)
        max_size = r.number("FLEET_MAX_SIZE", int, 1, 1000)
        warm_idle = r.number("FLEET_WARM_IDLE", int, 0, 1000)
        step = r.number("FLEET_MAX_SCALE_UP_PER_CYCLE", int, 1, 1000)
        boot = r.number("FLEET_BOOT_DEADLINE_MINUTES", int, 1, 1440)
        lifetime = r.number("FLEET_MAX_LIFETIME_MINUTES", int, 2, 525_600)
        job_timeout = r.number("FLEET_JOB_TIMEOUT_MINUTES", int, 1, 525_600)
        grace = r.number("FLEET_IDLE_GRACE_MINUTES", int, 0, 1440)
        queued_too_long = r.number("FLEET_QUEUED_TOO_LONG_MINUTES", int, 1, 10_080)
        jit_rate = r.number("FLEET_JIT_RATE_PER_MINUTE", float, 0.1, 10_000)
        lookback = r.number("FLEET_RECONCILE_LOOKBACK_MINUTES", int, 5, 4320)
        mode = r.text("FLEET_GITHUB_MODE")
        if mode and mode not in GITHUB_MODES:
            r.fail("FLEET_GITHUB_MODE", f"{mode!r} is not one of {', '.join(GITHUB_MODES)}")
        scale_set_name = (environ.get("FLEET_SCALE_SET_NAME") or "").strip() or name
        if mode == "scaleSet" and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", scale_set_name):
            r.fail("FLEET_SCALE_SET_NAME", f"{scale_set_name!r} is not a valid scale set name")
        limits = FleetLimits()
        if not r.problems:
            try:
                limits = FleetLimits(
                    min_size=min_size,
                    max_size=max_size,
                    warm_idle=warm_idle,
                    max_lifetime=timedelta(minutes=lifetime),
                    boot_deadline=timedelta(minutes=boot),
                    max_scale_up_per_cycle=step,
                    idle_grace=timedelta(minutes=grace),
                )
            except ValueError as exc:
                r.fail("FLEET_MIN_SIZE/FLEET_MAX_SIZE/...", str(exc))
        settings = cls(
            fleet_name=name,
            github_scope=scope,
            github_api_url=api_url.rstrip("/"),
            runner_labels=labels,
            runner_group=r.text("FLEET_RUNNER_GROUP"),
            allow_public_repositories=r.boolean("FLEET_ALLOW_PUBLIC_REPOSITORIES"),
            app_id_parameter=r.text("FLEET_APP_ID_PARAMETER", pattern=_PARAMETER),
            app_private_key_parameter=r.text("FLEET_APP_PRIVATE_KEY_PARAMETER", pattern=_PARAMETER),
            webhook_secret_parameter=r.text("FLEET_WEBHOOK_SECRET_PARAMETER", pattern=_PARAMETER),
            asg_name=r.text("FLEET_ASG_NAME"),
            fleet_tag=r.text("FLEET_FLEET_TAG"),
            kms_key_arn=r.text("FLEET_KMS_KEY_ARN", pattern=_KMS_ARN),
            jit_parameter_template=template,
            jit_instance_tag=r.text("FLEET_JIT_INSTANCE_TAG"),
            queue_url=r.text("FLEET_QUEUE_URL", pattern=re.compile(r"^https://\S+$")),
            ledger_table=r.text(
                "FLEET_LEDGER_TABLE", pattern=re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
            ),
            metrics_namespace=r.text("FLEET_METRICS_NAMESPACE"),
            partition=partition,
            account_id=r.text("FLEET_AWS_ACCOUNT_ID", pattern=_ACCOUNT),
            region=r.text("AWS_REGION", pattern=re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")),
            limits=limits,
            job_timeout=timedelta(minutes=job_timeout),
            queued_too_long=timedelta(minutes=queued_too_long),
            jit_rate_per_minute=jit_rate,
            reconcile_lookback=timedelta(minutes=lookback),
            github_mode=mode,
            scale_set_name=scale_set_name,
        )
        if r.problems:
            raise SettingsError(r.problems)
        return settings


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[tuple[str, str]] = []
        self.failed: set[str] = set()

    def fail(self, name: str, message: str) -> None:
        self.problems.append((name, message))
        self.failed.add(name)

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or not value.strip():
            return DEFAULTS.get(name)
        return value.strip()

    def text(self, name: str, *, pattern: re.Pattern[str] | None = None) -> str:
        value = self.raw(name)
        if value is None:
            self.fail(name, f"is not set ({VARIABLES[name]})")
            return ""
        if pattern is not None and not pattern.match(value):
            self.fail(name, f"{value!r} is not valid ({VARIABLES[name]})")
            return ""
        return value

    def number(self, name: str, kind: Callable[[str], T], low: Any, high: Any) -> T:
        value = self.raw(name)
        if value is None:
            self.fail(name, f"is not set ({VARIABLES[name]})")
            return kind(str(low))
        try:
            number = kind(value)
        except ValueError:
            self.fail(name, f"{value!r} is not a number ({VARIABLES[name]})")
            return kind(str(low))
        if not low <= number <= high:  # type: ignore[operator]
            self.fail(name, f"{value} is outside {low}-{high}")
            return kind(str(low))
        return number

    def boolean(self, name: str) -> bool:
        value = (self.raw(name) or "").lower()
        if value not in ("true", "false"):
            self.fail(name, f"{value!r} must be true or false")
            return False
        return value == "true"
