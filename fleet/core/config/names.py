"""Every name the fleet gives an AWS resource, derived in one place and checked as a whole.

``ResourceNames`` computes the explicit names (group, hooks, functions, log groups, queues,
table, alarms, KMS alias, Image Builder resources, SSM parameters) and the logical names
Pulumi autonames from (IAM roles and instance profiles, EventBridge rules, S3 buckets, the
launch template). Which control plane functions exist depends on ``githubMode``: webhook mode
deploys a webhook function, scaleSet mode a listener in its place (and schedules the listener
instead of the scaler), so the names checked are the ones that mode deploys.
``name_problems`` checks each one against its rule in ``rules``; the stack model refuses a
config whose names AWS would refuse, naming the setting to change.
"""

from __future__ import annotations

import dataclasses

from fleet.core.config.defaults import SCALE_SET_MODE
from fleet.core.config.rules import (
    LONGEST_INSTANCE_ID,
    NAME_RULES,
    queue_problem,
    ssm_parameter_problem,
)

# The control plane functions (fleet/aws/handlers/<name>.py), one Lambda function each, in
# githubMode webhook (the default).
CONTROL_PLANE_FUNCTIONS = ("webhook", "scaler", "lifecycle", "reaper")
# githubMode scaleSet: the scale-set listener (fleet/aws/handlers/listener.py) in place of the
# webhook function, and no scaler function: the listener runs the scaler's cycle in-process,
# and with no deliveries queue and no schedule nothing would start a scaler function.
LISTENER_FUNCTION = "listener"
SCALE_SET_FUNCTIONS = ("lifecycle", "reaper", LISTENER_FUNCTION)
# The image pipeline's function (infra/bake_function.py): starts a bake.
BAKE_FUNCTION = "bake"
# Name suffixes of the fleet's alarms: the control plane's (infra/alarms.py), the one on
# runner agents too old for GitHub (infra/agent_freshness.py) and the bake function's: a bake
# trigger EventBridge or Lambda gave up on, and the function's errors (infra/bake_function.py).
AGENT_OUTDATED_ALARM = "runner-agent-outdated"
QUEUED_TOO_LONG_ALARM = "jobs-queued-too-long"  # webhook mode: from the job ledger
BAKE_DEAD_LETTERS_ALARM = "bake-dead-letters-not-empty"
BAKE_ERRORS_ALARM = "bake-errors"
ALARM_SUFFIXES = (
    "dead-letters-not-empty",
    QUEUED_TOO_LONG_ALARM,
    "boot-failures",
    AGENT_OUTDATED_ALARM,
    BAKE_DEAD_LETTERS_ALARM,
    BAKE_ERRORS_ALARM,
)
# The control plane's scheduled functions (infra/events.py); in scaleSet mode the listener runs
# the scaler's cycle, and is scheduled in its place.
SCHEDULED_FUNCTIONS = ("scaler", "reaper")
SCALE_SET_SCHEDULED_FUNCTIONS = (LISTENER_FUNCTION, "reaper")


def control_plane_functions(github_mode: str = "webhook") -> tuple[str, ...]:
    """The control plane functions ``github_mode`` deploys."""
    return SCALE_SET_FUNCTIONS if github_mode == SCALE_SET_MODE else CONTROL_PLANE_FUNCTIONS


def alarm_suffixes(github_mode: str = "webhook") -> tuple[str, ...]:
    """The alarms ``github_mode`` creates: scaleSet mode has no job ledger, so nothing
    measures jobs queued too long."""
    if github_mode == SCALE_SET_MODE:
        return tuple(a for a in ALARM_SUFFIXES if a != QUEUED_TOO_LONG_ALARM)
    return ALARM_SUFFIXES


def scheduled_functions(github_mode: str = "webhook") -> tuple[str, ...]:
    """The control plane functions ``github_mode`` starts on a schedule."""
    return SCALE_SET_SCHEDULED_FUNCTIONS if github_mode == SCALE_SET_MODE else SCHEDULED_FUNCTIONS


@dataclasses.dataclass(frozen=True)
class ResourceNames:
    """The names of one fleet's AWS resources.

    ``prefix`` names the resources with explicit names (``<ssmParameterPrefix>-<fleetName>``
    with '/' as '-'); ``parameter_root`` is the fleet's SSM path; ``component`` is the
    RunnerFleet component's name, which prefixes the logical names of autonamed resources;
    ``github_mode`` says which control plane functions exist (``functions``);
    ``newest_agent_bakes``: the outdated-agent alarm starts a bake (an EventBridge rule).
    """

    prefix: str
    parameter_root: str | None = None
    component: str | None = None
    image_pipeline: bool = True
    github_mode: str = "webhook"
    newest_agent_bakes: bool = False

    @classmethod
    def for_fleet(
        cls,
        fleet_name: str,
        ssm_parameter_prefix: str = "runner-fleet",
        *,
        component: str | None = None,
        image_pipeline: bool = True,
        github_mode: str = "webhook",
        newest_agent_bakes: bool = False,
    ) -> ResourceNames:
        return cls(
            prefix=f"{ssm_parameter_prefix.replace('/', '-')}-{fleet_name}",
            parameter_root=f"/{ssm_parameter_prefix}/{fleet_name}",
            component=component or fleet_name,
            image_pipeline=image_pipeline,
            github_mode=github_mode,
            newest_agent_bakes=newest_agent_bakes,
        )

    @property
    def functions(self) -> tuple[str, ...]:
        """The control plane functions of this fleet's githubMode."""
        return control_plane_functions(self.github_mode)

    # -- explicit names ------------------------------------------------------------------------

    @property
    def autoscaling_group(self) -> str:
        return self.prefix

    @property
    def launch_hook(self) -> str:
        return f"{self.prefix}-launch"

    @property
    def terminate_hook(self) -> str:
        return f"{self.prefix}-terminate"

    @property
    def kms_alias(self) -> str:
        return f"alias/{self.prefix}"

    def function(self, function: str) -> str:
        return f"{self.prefix}-{function}"

    def log_group(self, function: str) -> str:
        return f"/aws/lambda/{self.function(function)}"

    @property
    def deliveries_queue(self) -> str:
        return f"{self.prefix}-deliveries"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-dead-letters"

    @property
    def ledger_table(self) -> str:
        return f"{self.prefix}-ledger"

    def alarm(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    @property
    def image_builder(self) -> str:
        """The image pipeline's component, recipe, configurations, pipeline and lifecycle
        policy (one name per kind). Lowercase: Image Builder lowercases names in ARNs and log
        group names."""
        return f"{self.prefix.lower()}-image"

    @property
    def image_build_log_group(self) -> str:
        """Where Image Builder's build instance writes its logs (/aws/imagebuilder/<image>)."""
        return f"/aws/imagebuilder/{self.image_builder}"

    @property
    def bake_function(self) -> str:
        """The function that starts a pipeline run when the bundle or the recipe changes."""
        return self.function(BAKE_FUNCTION)

    @property
    def bake_dead_letter_queue(self) -> str:
        """Bake triggers that failed every retry: EventBridge's and the bake function's own."""
        return f"{self.prefix}-bake-dead-letters"

    # -- SSM parameters ------------------------------------------------------------------------

    def _root(self) -> str:
        if self.parameter_root is None:
            raise ValueError("these names were made without a parameter root (for_fleet)")
        return self.parameter_root

    @property
    def runner_parameter_path(self) -> str:
        return f"{self._root()}/runners"

    @property
    def jit_parameter_template(self) -> str:
        """Name of an instance's JIT parameter, with {instance_id} to fill in."""
        return f"{self.runner_parameter_path}/{{instance_id}}/jitconfig"

    @property
    def webhook(self) -> bool:
        """githubMode webhook: the webhook secret, deliveries queue and job ledger exist."""
        return self.github_mode != SCALE_SET_MODE

    @property
    def github_app_parameters(self) -> dict[str, str]:
        """The GitHub App's SecureStrings (the webhook secret only in webhook mode)."""
        base = f"{self._root()}/github-app"
        names = {"app_id": f"{base}/app-id", "private_key": f"{base}/private-key"}
        if self.webhook:
            names["webhook_secret"] = f"{base}/webhook-secret"
        return names

    @property
    def listener_session_parameter(self) -> str:
        """scaleSet mode: the SSM String parameter where the listener function remembers the
        session it holds, so the next run can take it over (docs/control-plane.md)."""
        return f"{self._root()}/listener/session"

    @property
    def image_parameter(self) -> str:
        """The SSM parameter (data type aws:ec2:image) runners launch from: Image Builder's
        distribution writes each new image's id into it. Under /imagebuilder/ because that is
        where Image Builder's service-linked role may write parameters
        (AWSServiceRoleForImageBuilder: ssm:PutParameter on parameter/imagebuilder/*)."""
        return f"/imagebuilder{self._root()}/image-id"

    @property
    def parameters(self) -> list[str]:
        """Every SSM parameter name the fleet uses (a JIT config with the longest instance id)."""
        names = [
            *self.github_app_parameters.values(),
            self.jit_parameter_template.format(instance_id=LONGEST_INSTANCE_ID),
        ]
        if self.github_mode == SCALE_SET_MODE:
            names.append(self.listener_session_parameter)
        if self.image_pipeline:
            names.append(self.image_parameter)
        return names

    # -- autonamed (logical names; Pulumi adds a suffix) ---------------------------------------

    def autonamed(self) -> list[tuple[str, str]]:
        """(rule, logical name) of every resource Pulumi names from its logical name."""
        c = self.component or self.prefix
        names = [
            ("iam_role", f"{c}-instance-role"),
            ("iam_role", f"{c}-image-build-role"),
            ("iam_role", f"{c}-image-bake-role"),
            ("iam_role", f"{c}-image-lifecycle-role"),
            ("instance_profile", f"{c}-instance-profile"),
            ("instance_profile", f"{c}-image-build-profile"),
            ("event_rule", f"{c}-control-plane-lifecycle-events"),
            ("event_rule", f"{c}-control-plane-spot-warnings"),
            ("bucket", f"{c}-bundle-bucket"),
            ("bucket", f"{c}-validation-ssm-bucket"),
        ]
        names += [("iam_role", f"{c}-control-plane-{fn}-role") for fn in self.functions]
        names += [
            ("event_rule", f"{c}-control-plane-{fn}-schedule")
            for fn in scheduled_functions(self.github_mode)
        ]
        if self.image_pipeline and self.newest_agent_bakes:
            names.append(("event_rule", f"{c}-agent-outdated"))
        return names

    # -- all of them ---------------------------------------------------------------------------

    def every_name(self) -> list[tuple[str, str]]:
        """(rule, name) for every explicit name above (parameters: ``parameters``)."""
        names = [
            ("autoscaling_group", self.autoscaling_group),
            ("lifecycle_hook", self.launch_hook),
            ("lifecycle_hook", self.terminate_hook),
            ("kms_alias", self.kms_alias),
            ("queue", self.dead_letter_queue),
            ("queue", self.bake_dead_letter_queue),
        ]
        if self.webhook:
            names += [("queue", self.deliveries_queue), ("table", self.ledger_table)]
        for function in (*self.functions, BAKE_FUNCTION):
            names += [
                ("function", self.function(function)),
                ("log_group", self.log_group(function)),
            ]
        names += [("alarm", self.alarm(suffix)) for suffix in alarm_suffixes(self.github_mode)]
        names += [
            ("image_builder", self.image_builder),
            ("log_group", self.image_build_log_group),
        ]
        return names


def name_problems(names: ResourceNames) -> list[tuple[str, str, str]]:
    """(rule, name, why AWS would refuse it) for each name AWS would refuse; [] when all fit."""
    checks: list[tuple[str, str, str | None]] = []
    for rule, name in names.every_name():
        problem = (
            queue_problem(name, fifo=False) if rule == "queue" else NAME_RULES[rule].problem(name)
        )
        checks.append((rule, name, problem))
    if names.parameter_root is not None:
        checks += [("parameter", name, ssm_parameter_problem(name)) for name in names.parameters]
    checks += [(rule, name, NAME_RULES[rule].problem(name)) for rule, name in names.autonamed()]
    return [(rule, name, problem) for rule, name, problem in checks if problem]
