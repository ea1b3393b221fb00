"""Reaper function (schedule): clean up what the event-driven path missed, and reconcile.

Reaping (``fleet.aws.observe.reap_plan``), always deregistering from GitHub before terminating:

* busy runners not protected from scale-in are protected (the scaler's backstop);
* ghost runners (registered, no instance left, not busy) are deregistered;
* runners offline past the boot deadline are deregistered and their instance terminated
  without decrement, so the group replaces it;
* instances with no runner by the boot deadline are terminated without decrement (replaced),
  counted in the ``BootFailures`` metric (alarmed);
* idle runners past the maximum lifetime are retired (deregister, re-check, terminate);
  busy ones never are (``OverdueBusyRunners`` reports them);
* JIT parameters whose instance is gone are deleted.

Reconciling the ledger with GitHub:

* failed webhook deliveries are redelivered (``fleet.core.github.deliveries``; the delivery id is
  kept, so a redelivery of something that did arrive changes nothing);
* jobs queued or in progress for too long are looked up on GitHub and the ledger converges
  to what GitHub says (a lost ``completed`` no longer holds capacity); jobs still queued past
  the threshold raise ``JobsQueuedTooLong`` (alarmed) and trigger a scaling cycle at once;
* jobs recorded for retry (runner taken away mid-job) are re-run once they have failed;
* the runner group is kept closed to public repositories unless the stack allows them.

In scaleSet mode there are no webhooks and no ledger: only the reaping and the runner group.

Nothing is terminated when GitHub cannot be read: the pass stops and the next one retries.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleet.aws.adapters.dynamodb import StoredJob
from fleet.aws.handlers.runtime import Runtime, shared_runtime
from fleet.aws.handlers.scaler import read_fleet, run_cycle, scale_in
from fleet.aws.observe import ACTIVE_LIFECYCLE_STATES, reap_plan
from fleet.core.github.actions import get_job, rerun_job, set_runner_group_public_access
from fleet.core.github.deliveries import redeliver_failed
from fleet.core.github.errors import GitHubError, GitHubNotFound
from fleet.core.github.ratelimit import RateLimitExceeded
from fleet.core.github.runners import RunnerBusyError
from fleet.core.ledger import JobRecord, JobState, in_progress_longer_than, queued_longer_than

log = logging.getLogger(__name__)

GITHUB_UNCERTAIN = (GitHubError, RateLimitExceeded)
# Jobs looked up on GitHub per pass (oldest first): bounds the pass's API use.
MAX_JOB_LOOKUPS = 25
SUCCESSFUL = {"success", "skipped", "neutral"}


@dataclass
class ReapReport:
    skipped: str | None = None
    protected: list[str] = field(default_factory=list)
    ghosts_deregistered: list[str] = field(default_factory=list)
    terminated_offline: list[str] = field(default_factory=list)
    terminated_never_registered: list[str] = field(default_factory=list)
    retired_expired: list[str] = field(default_factory=list)
    spared: list[tuple[str, str]] = field(default_factory=list)
    overdue_busy: list[str] = field(default_factory=list)
    parameters_deleted: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    converged_jobs: list[int] = field(default_factory=list)
    queued_too_long: list[int] = field(default_factory=list)
    rerun_jobs: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    scaled: dict[str, Any] | None = None


def reap(rt: Runtime, report: ReapReport, now: datetime) -> None:
    s = rt.settings
    group, view = read_fleet(rt, now)
    plan = reap_plan(view, s.limits, now)
    github = rt.github
    if view.unprotected_busy:
        # Backstop for the scaler: a runner with a job is never left open to scale-in.
        rt.group.set_protection(view.unprotected_busy, True)
        report.protected += view.unprotected_busy

    for ghost in plan.ghosts:
        try:
            if github.runners.delete_runner(ghost.id):
                report.ghosts_deregistered.append(ghost.name)
        except RunnerBusyError:
            report.spared.append((ghost.name, "ghost runner busy"))
        except GITHUB_UNCERTAIN as exc:
            report.errors.append(f"ghost {ghost.name}: {exc}")

    offline = scale_in(rt, view, plan.offline, decrement=False)
    report.terminated_offline += offline.terminated
    report.spared += offline.spared

    for instance_id in plan.never_registered:
        # No registration to remove: nothing can be running on it.
        if rt.group.terminate(instance_id, decrement=False):
            report.terminated_never_registered.append(instance_id)

    expired = scale_in(rt, view, plan.expired_idle, decrement=True)
    report.retired_expired += expired.terminated
    report.spared += expired.spared
    report.overdue_busy += plan.overdue_busy

    active = {
        i.instance_id for i in group.instances if i.lifecycle_state in ACTIVE_LIFECYCLE_STATES
    }
    for instance_id in rt.jit_parameters.instance_ids():
        if instance_id not in active and rt.jit_parameters.delete(instance_id):
            report.parameters_deleted.append(instance_id)


def reconcile(rt: Runtime, report: ReapReport, now: datetime) -> None:
    """Catch up with GitHub: redeliver failed deliveries, look up stale jobs, re-run jobs whose
    runner was taken away, and keep the runner group closed to public repositories. In
    scaleSet mode only the last: no webhooks to redeliver, no ledger, and GitHub keeps and
    re-queues the scale set's jobs itself."""
    if rt.settings.scale_set:
        _close_runner_group(rt, report)
        return
    _redeliver(rt, report, now)
    open_jobs = rt.ledger.open_jobs()
    _look_up_stale_jobs(rt, report, now, [job.record for job in open_jobs])
    _rerun_interrupted_jobs(rt, report, open_jobs)
    _close_runner_group(rt, report)


def _redeliver(rt: Runtime, report: ReapReport, now: datetime) -> None:
    s = rt.settings
    github = rt.github
    try:
        redelivery = redeliver_failed(
            github.client, github.app.jwt_auth, since=now - s.reconcile_lookback, now=now
        )
        report.redelivered += redelivery.redelivered
        report.errors += redelivery.errors
    except GITHUB_UNCERTAIN as exc:
        report.errors.append(f"redelivery: {exc}")


def _look_up_stale_jobs(
    rt: Runtime, report: ReapReport, now: datetime, records: list[JobRecord]
) -> None:
    s = rt.settings
    github = rt.github
    stale = queued_longer_than(records, now=now, threshold=s.queued_too_long)
    stale += in_progress_longer_than(
        records, now=now, threshold=s.job_timeout + s.limits.boot_deadline
    )
    lookups = sorted(stale, key=lambda r: r.queued_at)[:MAX_JOB_LOOKUPS]
    checked: set[int] = set()
    for record in lookups:
        try:
            status = get_job(github.client, github.installation, record.repository, record.job_id)
        except GitHubNotFound:
            continue  # deleted run or no access: nothing GitHub will ever run
        except GITHUB_UNCERTAIN as exc:
            report.errors.append(f"job {record.job_id}: {exc}")
            break
        checked.add(record.job_id)
        _, changed = rt.ledger.record(status.to_event())
        if changed:
            report.converged_jobs.append(record.job_id)
        if status.state is JobState.QUEUED and record.state is JobState.QUEUED:
            report.queued_too_long.append(record.job_id)
    # Stale jobs not looked up this pass still count as queued too long.
    report.queued_too_long += [
        r.job_id for r in stale if r.state is JobState.QUEUED and r.job_id not in checked
    ]


def _rerun_interrupted_jobs(rt: Runtime, report: ReapReport, open_jobs: list[StoredJob]) -> None:
    github = rt.github
    for job in open_jobs:
        if job.retry != "requested":
            continue
        current = rt.ledger.get(job.job_id) or job
        if current.record.state is not JobState.COMPLETED:
            continue
        if (current.record.conclusion or "") in SUCCESSFUL:
            rt.ledger.settle_retry(job.job_id, "not-needed")
            continue
        try:
            rerun_job(github.client, github.installation, current.record.repository, job.job_id)
        except GITHUB_UNCERTAIN as exc:
            report.errors.append(f"re-run of job {job.job_id}: {exc}")
            continue
        rt.ledger.settle_retry(job.job_id, "rerun")
        report.rerun_jobs.append(job.job_id)


def _close_runner_group(rt: Runtime, report: ReapReport) -> None:
    s = rt.settings
    github = rt.github
    scope = s.scope
    if scope.org is not None:
        try:
            group = next(
                (
                    g
                    for g in github.runners.list_runner_groups()
                    if g.name.casefold() == s.runner_group.casefold()
                ),
                None,
            )
            if (
                group is not None
                and group.allows_public_repositories != s.allow_public_repositories
            ):
                set_runner_group_public_access(
                    github.client,
                    github.installation,
                    scope.org,
                    group.id,
                    s.allow_public_repositories,
                )
                log.warning(
                    "runner group %s: public repositories set to %s",
                    group.name,
                    s.allow_public_repositories,
                )
        except GITHUB_UNCERTAIN as exc:
            report.errors.append(f"runner group: {exc}")


def run(rt: Runtime, *, now: datetime | None = None) -> ReapReport:
    """One reaper pass."""
    now = now or rt.now()
    report = ReapReport()
    try:
        reap(rt, report, now)
    except GITHUB_UNCERTAIN as exc:
        log.warning("reaper pass skipped, GitHub unavailable: %s", exc)
        report.skipped = f"GitHub unavailable: {exc}"
        rt.metrics.put({"ReaperPassesSkipped": 1})
        return report
    reconcile(rt, report, now)
    if report.queued_too_long:
        report.scaled = run_cycle(rt, now=now).summary()
    rt.metrics.put(
        {
            "BootFailures": len(report.terminated_never_registered)
            + len(report.terminated_offline),
            "JobsQueuedTooLong": len(report.queued_too_long),
            "OverdueBusyRunners": len(report.overdue_busy),
            "GhostRunnersRemoved": len(report.ghosts_deregistered),
            "RedeliveredDeliveries": len(report.redelivered),
        }
    )
    for error in report.errors:
        log.warning("reaper: %s", error)
    log.info("reaper pass: %s", json.dumps(report.__dict__, default=str))
    return report


def handle(event: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    return dict(run(rt).__dict__)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return handle(event, shared_runtime())
