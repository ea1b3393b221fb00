"""What a control plane function works with: settings, AWS adapters and the GitHub App.

A ``Runtime`` is built once per function container (``Runtime.from_env``) and reused across
invocations, so secrets, installation tokens and the runner group id are fetched once and
refreshed only when they expire. Tests build one around moto-backed clients, a fake GitHub
and a fake clock (``Runtime(settings, clients, clock=..., sleep=...)``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import boto3
import requests
from botocore.config import Config

from fleet.aws.adapters.autoscaling import AutoScalingGroup
from fleet.aws.adapters.clients import DEFAULT_CONFIG, AwsClients, aws_clients
from fleet.aws.adapters.cloudwatch import Metrics
from fleet.aws.adapters.dynamodb import DynamoLedger, DynamoTokenBucket
from fleet.aws.adapters.ec2 import FleetInstances
from fleet.aws.adapters.listener_session import ListenerSessionMemory
from fleet.aws.adapters.sqs import DeliveryQueue
from fleet.aws.adapters.ssm import JitParameters, SecureParameters
from fleet.aws.handlers.settings import Settings
from fleet.core.github.app import GitHubApp, InstallationAuth
from fleet.core.github.auth import AppJwtSigner
from fleet.core.github.client import GitHubClient, RetryPolicy
from fleet.core.github.runners import RunnersAPI
from fleet.core.github.scaleset.service import Clients, ScaleSetService, connect
from fleet.core.github.scaleset.target import Target

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# A function must finish well inside its timeout: never sleep long on GitHub's rate limit;
# raise GitHubRateLimited (transient) and let the queue or the next schedule retry.
LAMBDA_RETRY = RetryPolicy(
    max_attempts=4, backoff_base=1.0, backoff_cap=8.0, max_rate_limit_wait=20.0
)
JIT_MAX_WAIT_SECONDS = 20.0


@dataclass
class GitHub:
    """The App's clients for this fleet's scope."""

    client: GitHubClient
    app: GitHubApp
    installation: InstallationAuth
    runners: RunnersAPI
    _group_id: int | None = None

    def runner_group_id(self, name: str) -> int:
        """The runner group's id (looked up once; repositories always use group 1)."""
        if self._group_id is None:
            self._group_id = self.runners.runner_group_id(name)
        return self._group_id


def installation_permissions(settings: Settings) -> dict[str, str]:
    """What installation tokens ask for: runner administration and job re-runs, nothing else."""
    if settings.scope.org is not None:
        return {"organization_self_hosted_runners": "write", "actions": "write"}
    return {"administration": "write", "actions": "write"}


class Runtime:
    """Settings plus lazily built adapters (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        clients: AwsClients,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        http: requests.Session | None = None,
        github_retry: RetryPolicy = LAMBDA_RETRY,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.clock = clock
        self.sleep = sleep
        self._http = http
        self._github_retry = github_retry
        self._lock = threading.Lock()
        self._github: GitHub | None = None
        self._scale_sets: ScaleSetService | None = None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        session: boto3.session.Session | None = None,
        config: Config = DEFAULT_CONFIG,
    ) -> Runtime:
        """The runtime a deployed function uses: settings from its environment, clients from
        its role's credentials."""
        settings = Settings.from_env(os.environ if environ is None else environ)
        return cls(settings, aws_clients(session, region=settings.region, config=config))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- AWS ------------------------------------------------------------------------------

    @cached_property
    def group(self) -> AutoScalingGroup:
        return AutoScalingGroup(self.clients.autoscaling, self.settings.asg_name)

    @cached_property
    def instances(self) -> FleetInstances:
        return FleetInstances(
            self.clients.ec2, tag_key=self.settings.fleet_tag, tag_value=self.settings.fleet_name
        )

    @cached_property
    def jit_parameters(self) -> JitParameters:
        s = self.settings
        return JitParameters(
            self.clients.ssm,
            template=s.jit_parameter_template,
            kms_key_arn=s.kms_key_arn,
            tag_key=s.jit_instance_tag,
        )

    @cached_property
    def secrets(self) -> SecureParameters:
        return SecureParameters(self.clients.ssm, clock=self.clock)

    @cached_property
    def queue(self) -> DeliveryQueue:
        return DeliveryQueue(self.clients.sqs, self._webhook_only(self.settings.queue_url))

    @cached_property
    def ledger(self) -> DynamoLedger:
        """The job ledger (webhook mode: scaleSet mode has none, GitHub keeps the jobs)."""
        return DynamoLedger(
            self.clients.dynamodb,
            self._webhook_only(self.settings.ledger_table),
            fleet=self.settings.fleet_name,
            clock=self.clock,
            sleep=self.sleep,
        )

    @cached_property
    def listener_session(self) -> ListenerSessionMemory:
        """scaleSet mode: the session the listener holds, remembered for the next run."""
        name = self.settings.listener_session_parameter
        if name is None:
            raise ValueError("FLEET_LISTENER_SESSION_PARAMETER is not set (githubMode webhook?)")
        return ListenerSessionMemory(self.clients.ssm, name)

    @cached_property
    def metrics(self) -> Metrics:
        return Metrics(
            self.clients.cloudwatch,
            namespace=self.settings.metrics_namespace,
            fleet=self.settings.fleet_name,
        )

    def webhook_secret(self) -> str:
        return self.secrets.get(self._webhook_only(self.settings.webhook_secret_parameter))

    @staticmethod
    def _webhook_only(name: str | None) -> str:
        if name is None:
            raise ValueError("githubMode scaleSet has no webhook secret, deliveries or ledger")
        return name

    # -- GitHub ---------------------------------------------------------------------------

    @property
    def github(self) -> GitHub:
        """The GitHub App for this fleet (App id and key read from SSM on first use)."""
        with self._lock:
            if self._github is None:
                self._github = self._connect()
            return self._github

    @property
    def scale_sets(self) -> ScaleSetService:
        """The scale-set service for this fleet's scope, through the same App installation."""
        github = self.github
        with self._lock:
            if self._scale_sets is None:
                clients = Clients(
                    session=self._http,
                    retry=self._github_retry,
                    sleep=self.sleep,
                    clock=self.clock,
                )
                self._scale_sets = connect(
                    github.client,
                    github.installation,
                    Target.parse(self.settings.github_scope),
                    clients=clients,
                    clock=self.clock,
                    sleep=self.sleep,
                )
            return self._scale_sets

    def _connect(self) -> GitHub:
        s = self.settings
        app_id = self.secrets.get(s.app_id_parameter).strip()
        private_key = self.secrets.get(s.app_private_key_parameter)
        client = GitHubClient(
            s.github_api_url,
            session=self._http,
            retry=self._github_retry,
            sleep=self.sleep,
            clock=self.clock,
        )
        app = GitHubApp(
            client,
            AppJwtSigner(app_id, private_key, clock=self.clock),
            clock=self.clock,
            permissions=installation_permissions(s),
        )
        scope = s.scope
        if scope.org is not None:
            installation_id = app.installation_id_for_org(scope.org)
        else:
            installation_id = app.installation_id_for_repo(str(scope.repository))
        installation = app.installation_auth(installation_id)
        # Webhook mode's REST JIT configs share a rate in the ledger table; scaleSet mode's
        # come from the scale set (lifecycle.jit_config) and there is no table.
        bucket = (
            DynamoTokenBucket(
                self.clients.dynamodb,
                s.ledger_table,
                rate_per_minute=s.jit_rate_per_minute,
                clock=self.clock,
            )
            if s.ledger_table is not None
            else None
        )
        runners = RunnersAPI(
            client,
            scope,
            installation,
            jit_bucket=bucket,  # type: ignore[arg-type]  # same acquire() contract
            jit_max_wait=JIT_MAX_WAIT_SECONDS,
            sleep=self.sleep,
        )
        return GitHub(client=client, app=app, installation=installation, runners=runners)


_RUNTIME: Runtime | None = None
_RUNTIME_LOCK = threading.Lock()


def shared_runtime() -> Runtime:
    """The container's runtime, built from the environment on first use."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            _RUNTIME = Runtime.from_env()
        return _RUNTIME
