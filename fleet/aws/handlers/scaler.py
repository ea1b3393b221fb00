"""Scaler function: SQS batches of deliveries and a schedule -> job ledger -> one scaling cycle.

A batch first goes into the ledger (conditional writes; duplicates and out-of-order events
change nothing). Records that could not be written are reported back as batch item failures,
so SQS retries just those and, after ``maxReceiveCount`` attempts, moves them to the dead-letter
queue (alarmed): a message is never dropped silently. Then one cycle runs:

1. read the fleet: the group (1 call), EC2 launch times (1 call per 1000 instances), the open
   ledger jobs (1 call per ~1 MB) and GitHub's runners;
2. ``fleet.aws.observe.observe`` + ``fleet.core.scaling.decide`` (pure);
3. protect busy runners that are not protected yet (at most 1 call per 50);
4. scale in only explicitly: deregister from GitHub first, re-check GitHub and the ledger, and
   terminate (with decrement) only what is still not running a job (1 call per instance);
5. set the desired capacity once (at most 1 call), then put the cycle's metrics (1 call).

If GitHub cannot be read the cycle stops before step 2: nothing is decided, let alone
terminated, on uncertain state; the next cycle (the schedule runs every minute) tries again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.aws.adapters.dynamodb import LedgerConflict
from fleet.aws.handlers.runtime import Runtime, shared_runtime
from fleet.aws.observe import FleetView, observe, runner_name
from fleet.core.github.errors import GitHubError
from fleet.core.github.ratelimit import RateLimitExceeded
from fleet.core.ledger import JobState
from fleet.core.retire import LEDGER_BUSY, Candidate, retire
from fleet.core.scaling import Decision, decide
from fleet.core.webhook import QueuedDelivery

log = logging.getLogger(__name__)

GITHUB_UNCERTAIN = (GitHubError, RateLimitExceeded)


@dataclass(frozen=True)
class ScaleInOutcome:
    terminated: tuple[str, ...] = ()
    spared: tuple[tuple[str, str], ...] = ()  # (instance id, why it was not terminated)


@dataclass(frozen=True)
class CycleReport:
    """What one cycle saw and did."""

    skipped: str | None = None
    decision: Decision | None = None
    desired_capacity: int | None = None
    previous_capacity: int | None = None
    protected: tuple[str, ...] = ()
    terminated: tuple[str, ...] = ()
    spared: tuple[tuple[str, str], ...] = ()
    reasons: tuple[str, ...] = field(default=())

    def summary(self) -> dict[str, Any]:
        if self.skipped:
            return {"skipped": self.skipped}
        decision = self.decision
        assert decision is not None
        return {
            "desired_capacity": self.desired_capacity,
            "previous_capacity": self.previous_capacity,
            "queued": decision.queued,
            "busy": decision.busy,
            "idle": decision.idle,
            "booting": decision.booting,
            "offline": decision.offline,
            "protected": list(self.protected),
            "terminated": list(self.terminated),
            "spared": [list(item) for item in self.spared],
            "reasons": list(self.reasons),
        }


def read_fleet(rt: Runtime, now: datetime) -> tuple[Any, FleetView]:
    """The group and the joined view of it; raises GitHub errors (the caller decides)."""
    s = rt.settings
    group = rt.group.describe()
    runners = rt.github.runners.list_runners()
    launched = {i: info.launched_at for i, info in rt.instances.describe().items()}
    # scaleSet mode has no ledger: the listener passes the scale set's demand as ``queued``.
    jobs = [] if s.scale_set else [job.record for job in rt.ledger.open_jobs()]
    view = observe(
        fleet=s.fleet_name,
        instances=group.instances,
        launched_at=launched,
        runners=runners,
        jobs=jobs,
        boot_deadline=s.limits.boot_deadline,
        now=now,
    )
    return group, view


def scale_in(
    rt: Runtime, view: FleetView, instance_ids: Sequence[str], *, decrement: bool
) -> ScaleInOutcome:
    """Deregister each instance's runner, re-check, and terminate what is not running a job
    (``fleet.core.retire``).

    GitHub refuses to delete a runner that is running a job (busy); a runner still listed
    after deletion, a GitHub error (uncertain), or an in-progress job the ledger names on it
    (GitHub's busy flag lags) all spare the instance. The ledger is re-read once, after every
    deregistration, so a job that started meanwhile is seen. scaleSet mode has no ledger: a
    busy runner is still refused deletion by GitHub, and the re-check still sees it.
    """
    runners = rt.github.runners

    def in_progress(instance_ids: Sequence[str]) -> dict[str, str]:
        if rt.settings.scale_set:
            return {}  # no ledger: GitHub's refusal and the re-check decide (retire)
        running = {
            job.record.runner_name.casefold()
            for job in rt.ledger.open_jobs()
            if job.record.state is JobState.IN_PROGRESS and job.record.runner_name
        }
        fleet = rt.settings.fleet_name
        return {
            instance_id: LEDGER_BUSY
            for instance_id in instance_ids
            if runner_name(fleet, instance_id).casefold() in running
        }

    outcome = retire(
        [Candidate(i, view.runner_of(i)) for i in instance_ids],
        deregister=lambda runner: runners.delete_runner(runner.id),
        recheck=lambda runner: runners.get_runner(runner.id),
        busy_after=in_progress,
        remove=lambda instance_id: rt.group.terminate(instance_id, decrement=decrement),
        uncertain=GITHUB_UNCERTAIN,
    )
    for instance_id, why in outcome.spared:
        log.info("not terminating %s: %s", instance_id, why)
    return ScaleInOutcome(terminated=outcome.removed, spared=outcome.spared)


def run_cycle(
    rt: Runtime, *, now: datetime | None = None, queued: int | None = None
) -> CycleReport:
    """One scaling cycle (see the module docstring). ``queued`` replaces the ledger's count of
    queued jobs (in scaleSet mode the listener has it from the service's statistics)."""
    s = rt.settings
    now = now or rt.now()
    try:
        group, view = read_fleet(rt, now)
    except GITHUB_UNCERTAIN as exc:
        log.warning("scaling cycle skipped, GitHub unavailable: %s", exc)
        rt.metrics.put({"ScaleCyclesSkipped": 1})
        return CycleReport(skipped=f"GitHub unavailable: {exc}")

    decision = decide(view.queued if queued is None else queued, view.runners, s.limits, now)
    if view.unprotected_busy:
        rt.group.set_protection(view.unprotected_busy, True)
    outcome = scale_in(rt, view, decision.retire + decision.terminate, decrement=True)
    # Instances spared from scale-in are still there: keep room for them.
    ceiling = min(s.limits.max_size, group.max_size)
    desired = max(group.min_size, min(ceiling, decision.desired_capacity + len(outcome.spared)))
    if outcome.terminated or desired != group.desired_capacity:
        rt.group.set_desired_capacity(desired)
    rt.metrics.put(
        {
            "QueuedJobs": decision.queued,
            "BusyRunners": decision.busy,
            "IdleRunners": decision.idle,
            "BootingRunners": decision.booting,
            "OfflineRunners": decision.offline,
            "DesiredCapacity": desired,
            "RetiredRunners": len(outcome.terminated),
        }
    )
    report = CycleReport(
        decision=decision,
        desired_capacity=desired,
        previous_capacity=group.desired_capacity,
        protected=view.unprotected_busy,
        terminated=outcome.terminated,
        spared=outcome.spared,
        reasons=decision.reasons,
    )
    log.info("scaling cycle: %s", json.dumps(report.summary()))
    return report


def record_batch(records: Sequence[dict[str, Any]], rt: Runtime) -> list[str]:
    """Write each SQS record into the ledger; returns the message ids that failed."""
    failures: list[str] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            delivery = QueuedDelivery.from_message(json.loads(record["body"]))
        except (KeyError, TypeError, ValueError) as exc:
            # Not transient: every retry fails the same way and ends in the dead-letter queue.
            log.error("message %s is not a queued delivery: %s", message_id, exc)
            failures.append(message_id)
            continue
        try:
            _, changed = rt.ledger.record(delivery.job)
        except (BotoCoreError, ClientError, LedgerConflict) as exc:
            log.warning("delivery %s not recorded yet: %s", delivery.delivery_id, exc)
            failures.append(message_id)
            continue
        if not changed:
            log.info("delivery %s changed nothing (duplicate or stale)", delivery.delivery_id)
    return failures


def handle(event: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """An SQS batch (``Records``) or a scheduled event."""
    if "Records" in event:
        failures = record_batch(event["Records"], rt)
        try:
            run_cycle(rt)
        except Exception:
            # The batch is safely in the ledger; the scheduled cycle retries the scaling.
            log.exception("scaling cycle failed after recording the batch")
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}
    if rt.settings.scale_set:
        # The listener runs every cycle with the scale set's counts; a cycle from the (empty)
        # ledger would see no demand and retire runners GitHub has assigned jobs to.
        return {"skipped": "githubMode scaleSet: the listener function runs the cycles"}
    return run_cycle(rt).summary()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return handle(event, shared_runtime())
