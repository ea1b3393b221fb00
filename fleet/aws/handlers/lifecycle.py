"""Lifecycle function: Auto Scaling lifecycle actions and EC2 spot interruption warnings.

Launch (``EC2 Instance-launch Lifecycle Action``): create the instance's just-in-time runner
config through the GitHub App (rate limited by a token bucket shared in DynamoDB), store it
as a SecureString under the fleet's KMS key at the instance's own path, tagged with the
instance ARN (the instance policy lets only that instance read and delete it), then CONTINUE.
A launch into the warm pool gets no config yet and is not completed here: the instance
completes it itself once its bake is done (completing it at once would let AWS stop the
instance in the middle of its bake). Redelivered events are harmless: a runner that
already registered is left alone, and a registration made by an earlier, failed attempt is
replaced (``generate_jitconfig(replace_stale=True)``).

Terminate (``EC2 Instance-terminate Lifecycle Action``: scale-in, spot, rebalance, the runner
leaving after its job): deregister the runner; if it is still running a job (GitHub refuses,
or the ledger names a job on it), record that job for a re-run (webhook mode; in scaleSet mode
there is no ledger and GitHub re-queues the job of a scale-set runner that went away); delete
any JIT parameter left behind; CONTINUE.

Spot warning (``EC2 Spot Instance Interruption Warning``): the same release for an instance of
this fleet, two minutes ahead of the interruption.

When GitHub cannot issue the config the function raises: Lambda retries the event with
backoff, then sends it to the dead-letter queue (alarmed); the launch hook, never completed,
times out into ABANDON and the group replaces the instance. A refusal that retrying cannot fix
(wrong App key or permissions, clock skew) is also counted in ``JitConfigFailures``. It is not
abandoned at once on purpose: the group would relaunch immediately, in a tight loop of
instances that cannot register either.
"""

from __future__ import annotations

import logging
from typing import Any

from fleet.aws.handlers.runtime import Runtime, shared_runtime
from fleet.aws.observe import runner_name
from fleet.core.github.errors import GitHubError
from fleet.core.github.ratelimit import RateLimitExceeded
from fleet.core.github.runners import RunnerBusyError
from fleet.core.ledger import JobState

log = logging.getLogger(__name__)

LAUNCH = "EC2 Instance-launch Lifecycle Action"
TERMINATE = "EC2 Instance-terminate Lifecycle Action"
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"


class TransientLifecycleError(Exception):
    """Retry the event later (GitHub unavailable or rate limited)."""


class JitConfigError(Exception):
    """GitHub refused the JIT config; retrying soon will not help (see the module docstring)."""


def jit_config(rt: Runtime, name: str) -> tuple[str, int]:
    """A JIT config for runner ``name``: the REST API's (webhook mode) or, in scaleSet mode,
    the scale set's; returns (encoded config, runner id). A scale-set registration left by an
    earlier, failed attempt is removed first (a busy one is not: ``JobStillRunning``)."""
    s = rt.settings
    if not s.scale_set:
        group_id = rt.github.runner_group_id(s.runner_group)
        jit = rt.github.runners.generate_jitconfig(name, s.runner_labels, runner_group_id=group_id)
        return jit.encoded_jit_config, jit.runner.id
    service = rt.scale_sets
    group = service.runner_group(s.runner_group)
    scale_set = service.get_scale_set(group.id, s.scale_set_name)
    if scale_set is None or scale_set.id is None:
        raise TransientLifecycleError(
            f"scale set {s.scale_set_name!r} does not exist yet: the listener creates it"
        )
    stale = service.get_runner_by_name(name)
    if stale is not None:
        service.remove_runner(stale.id)
    scale_jit = service.generate_jit_config(scale_set.id, name)
    return scale_jit.encoded_jit_config, scale_jit.runner.id


def on_launch(detail: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    s = rt.settings
    instance_id = str(detail["EC2InstanceId"])
    hook = str(detail["LifecycleHookName"])
    token = detail.get("LifecycleActionToken")
    if detail.get("Destination") == "WarmPool":
        return {"instance": instance_id, "result": "warm-pool: the instance completes it"}
    name = runner_name(s.fleet_name, instance_id)
    try:
        github = rt.github
        registered = [r for r in github.runners.list_runners(name=name) if r.name == name]
        if any(r.online or r.busy for r in registered):
            rt.group.complete_lifecycle_action(hook, instance_id, token, "CONTINUE")
            return {"instance": instance_id, "result": "already-registered"}
        encoded, runner_id = jit_config(rt, name)
    except RateLimitExceeded as exc:
        raise TransientLifecycleError(f"{instance_id}: JIT issuance rate limited: {exc}") from exc
    except GitHubError as exc:
        if exc.transient:
            raise TransientLifecycleError(f"{instance_id}: GitHub unavailable: {exc}") from exc
        log.error("GitHub refused the JIT config for %s: %s", instance_id, exc)
        rt.metrics.put({"JitConfigFailures": 1})
        raise JitConfigError(f"{instance_id}: {exc}") from exc
    rt.jit_parameters.put(instance_id, s.instance_arn(instance_id), encoded)
    completed = rt.group.complete_lifecycle_action(hook, instance_id, token, "CONTINUE")
    log.info("JIT config stored for %s (runner %s, id %s)", instance_id, name, runner_id)
    return {
        "instance": instance_id,
        "result": "jit-config-stored",
        "runner_id": runner_id,
        "hook_completed": completed,
    }


def release_runner(rt: Runtime, instance_id: str, reason: str) -> dict[str, Any]:
    """Deregister an instance's runner; record its job for a re-run if it was mid-job.

    A runner still registered while its instance goes away did not finish normally (GitHub
    removes an ephemeral runner after its job), so a job on it (GitHub says busy, or the
    ledger names one) is recorded for retry.
    """
    s = rt.settings
    name = runner_name(s.fleet_name, instance_id)
    try:
        registered = [r for r in rt.github.runners.list_runners(name=name) if r.name == name]
    except (GitHubError, RateLimitExceeded) as exc:
        raise TransientLifecycleError(f"{instance_id}: cannot list its runner: {exc}") from exc
    busy = False
    for runner in registered:
        try:
            rt.github.runners.delete_runner(runner.id)
        except RunnerBusyError:
            busy = True
        except GitHubError as exc:
            if exc.transient:
                raise TransientLifecycleError(f"{instance_id}: {exc}") from exc
            raise
        busy = busy or runner.busy
    retry_job: int | None = None
    if registered and s.scale_set:
        # No ledger: GitHub puts a job whose scale-set runner went away back in the queue
        # itself, and the listener sees it again.
        if busy:
            log.warning("%s was busy (%s): GitHub re-queues its job", name, reason)
    elif registered:
        job = next(
            (
                j
                for j in rt.ledger.open_jobs()
                if j.record.state is JobState.IN_PROGRESS
                and (j.record.runner_name or "").casefold() == name.casefold()
            ),
            None,
        )
        if job is not None:
            retry_job = job.job_id
            rt.ledger.request_retry(job.job_id, f"{reason}: runner {name} on {instance_id}")
        elif busy:
            log.warning("%s was busy but the ledger knows no job on it (%s)", name, reason)
    if retry_job is not None:
        rt.metrics.put({"InterruptedJobs": 1})
        log.warning("job %s interrupted (%s); recorded for re-run", retry_job, reason)
    return {
        "instance": instance_id,
        "deregistered": bool(registered) and not busy,
        "busy": busy,
        "retry_job": retry_job,
    }


def on_terminate(detail: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    instance_id = str(detail["EC2InstanceId"])
    result = release_runner(rt, instance_id, "instance terminating")
    rt.jit_parameters.delete(instance_id)
    rt.group.complete_lifecycle_action(
        str(detail["LifecycleHookName"]),
        instance_id,
        detail.get("LifecycleActionToken"),
        "CONTINUE",
    )
    return {**result, "result": "released"}


def on_spot_warning(detail: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    instance_id = str(detail["instance-id"])
    info = rt.instances.get(instance_id)
    if info is None or info.tags.get("aws:autoscaling:groupName") != rt.settings.asg_name:
        return {"instance": instance_id, "result": "not-this-fleet"}
    return {**release_runner(rt, instance_id, "spot interruption"), "result": "released"}


def handle(event: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """Dispatch one EventBridge event."""
    kind = event.get("detail-type")
    detail = event.get("detail") or {}
    if kind in (LAUNCH, TERMINATE):
        if detail.get("AutoScalingGroupName") != rt.settings.asg_name:
            return {"result": "not-this-fleet"}
        return on_launch(detail, rt) if kind == LAUNCH else on_terminate(detail, rt)
    if kind == SPOT_WARNING:
        return on_spot_warning(detail, rt)
    log.warning("ignoring event %r from %r", kind, event.get("source"))
    return {"result": "ignored"}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return handle(event, shared_runtime())
