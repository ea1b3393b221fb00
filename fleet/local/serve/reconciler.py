"""One reconcile cycle of a local fleet: catch up with GitHub, observe, clear away, decide,
realise.

Each cycle reads the fleet (Docker labels + what each host reports + GitHub's runners),
clears away hosts that are done (ephemeral runner finished its job) or were stopped from
outside, asks ``fleet.core.scaling.decide`` what the fleet should be, and realises that:
retire idle hosts beyond the target (``fleet.core.retire``: deregister first, never a busy
one), end hosts that never registered, and start fresh hosts from the baked image. GitHub
trouble ends the cycle before anything is removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from fleet.core.clock import Clock, Report, utc_now
from fleet.core.github.errors import (
    GitHubError,
    GitHubForbidden,
    GitHubNotFound,
    GitHubValidationError,
)
from fleet.core.github.runners import Runner
from fleet.core.scaling import Decision, FleetLimits, decide
from fleet.errors import FleetError
from fleet.local.hosts import retire_host
from fleet.local.observe import HostProbe, HostState, Observation, outdated_message
from fleet.local.registration import RunnerBusyError
from fleet.local.serve.catch_up import JobSource, RedeliverySchedule, stale_jobs
from fleet.local.serve.intake import Intake


class Fleet(Protocol):
    """What the autoscaler needs from a fleet (``fleet.local.fleet.LocalFleet`` in production)."""

    name: str
    labels: tuple[str, ...]

    @property
    def registered(self) -> bool: ...

    def observe(self, busy_names: Iterable[str] = ()) -> Observation: ...

    def probe(self, name: str) -> HostProbe: ...

    def remove(self, name: str) -> None: ...

    def remove_orphans(self) -> list[str]: ...

    def deregister(self, registration: Runner) -> bool: ...

    def add(self, count: int, *, validate_hosts: bool = ..., canary: bool = ...) -> list[Any]: ...


@dataclass(frozen=True)
class ServeOptions:
    """How the autoscaler runs; see ``python -m fleet serve --help``."""

    idle: int = 1
    min_size: int = 0
    max_size: int = 10
    interval: float = 15.0
    idle_grace: float = 120.0
    boot_deadline: float = 600.0
    max_lifetime: float = 8 * 3600.0
    max_launch_per_cycle: int = 4
    bind: str = "127.0.0.1"
    port: int | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    allowed_owners: tuple[str, ...] | None = None
    validate: bool = False
    once: bool = False
    max_cycles: int | None = None
    # Catching up with GitHub (only with webhooks and GitHub App settings); 0 turns either off.
    redeliver_every: float = 300.0
    redeliver_lookback: float = 3600.0  # how far back the first redelivery pass looks
    stale_after: float = 600.0
    max_job_lookups: int = 20  # per cycle: bounds the API calls a backlog can cost

    def limits(self) -> FleetLimits:
        try:
            return FleetLimits(
                min_size=self.min_size,
                max_size=self.max_size,
                warm_idle=self.idle,
                max_lifetime=timedelta(seconds=self.max_lifetime),
                boot_deadline=timedelta(seconds=self.boot_deadline),
                max_scale_up_per_cycle=self.max_launch_per_cycle,
                idle_grace=timedelta(seconds=self.idle_grace),
            )
        except ValueError as exc:
            raise FleetError(str(exc), hint="see `python -m fleet serve --help`") from exc


@dataclass
class CycleResult:
    """What one cycle saw and did (for the log and the tests)."""

    decision: Decision | None = None
    observed: dict[str, int] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)  # finished or stopped from outside
    deregistered: list[str] = field(default_factory=list)  # ghost registrations
    retired: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    launched: list[str] = field(default_factory=list)
    kept_busy: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)  # delivery guids GitHub sends again
    converged_jobs: list[int] = field(default_factory=list)  # looked up, GitHub knew more
    dropped_jobs: list[int] = field(default_factory=list)  # looked up, GitHub knows none
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        seen = ", ".join(f"{k} {v}" for k, v in self.observed.items() if v) or "no hosts"
        did = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("removed", self.removed),
                ("deregistered", self.deregistered),
                ("retired", self.retired),
                ("terminated", self.terminated),
                ("launched", self.launched),
                ("kept busy", self.kept_busy),
                ("redelivered", self.redelivered),
                ("updated from GitHub job", [str(job) for job in self.converged_jobs]),
                ("dropped deleted job", [str(job) for job in self.dropped_jobs]),
            )
            if names
        ]
        queued = self.decision.queued if self.decision else 0
        return f"{seen}; queued {queued}" + (f"; {'; '.join(did)}" if did else "")


class Reconciler:
    """One fleet, one cycle at a time: catch up with GitHub (given ``jobs``), observe, clear
    away, decide, realise."""

    def __init__(
        self,
        fleet: Fleet,
        options: ServeOptions,
        intake: Intake,
        report: Report,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        jobs: JobSource | None = None,
    ) -> None:
        self.fleet = fleet
        self.options = options
        self.limits = options.limits()
        self.intake = intake
        self.report = report
        self.clock = clock
        self.monotonic = monotonic
        self.jobs = jobs
        self.redelivery = RedeliverySchedule(
            every=timedelta(seconds=options.redeliver_every),
            lookback=timedelta(seconds=options.redeliver_lookback),
        )
        self._launch_failures = 0
        self._launch_not_before = 0.0
        self._agent_outdated = False  # the last used host's agent exited 7

    def _busy_names(self) -> set[str]:
        """Runners the job ledger shows running a job (webhook mode: the intake)."""
        return self.intake.busy_runner_names()

    def _queued(self, seen: Observation) -> int:
        """Jobs waiting for a runner of this fleet (webhook mode: the intake's)."""
        return self.intake.queued()

    def _busy(self, name: str) -> bool:
        return name in self._busy_names()

    def _deregister(self, registration: Runner | None, result: CycleResult) -> None:
        if registration is None:
            return
        try:
            self.fleet.deregister(registration)
        except RunnerBusyError:
            result.errors.append(
                f"GitHub still shows {registration.name} running a job: registration kept"
            )

    def cycle(self) -> CycleResult:
        """One reconcile cycle. GitHub trouble ends the cycle before anything is removed."""
        result = CycleResult()
        if self.jobs is not None:
            # First, so the decision counts what GitHub says rather than a lost webhook.
            self._redeliver(self.jobs, result)
            self._look_up_stale_jobs(self.jobs, result)
        try:
            seen = self.fleet.observe(self._busy_names())
        except (GitHubError, FleetError) as exc:
            # Uncertain state: touch nothing this cycle.
            result.errors.append(f"cannot read the fleet's state, nothing changed: {exc}")
            return result
        result.observed = {
            state: sum(1 for h in seen.hosts if h.state == state)
            for state in ("booting", "idle", "busy", "finished", "gone")
        }
        try:
            self._clear_away(seen, result)
            queued = self._queued(seen)
            decision = decide(queued, seen.runners, self.limits, self.clock())
            result.decision = decision
            self._shrink(seen, decision, result)
            self._grow(decision, result)
        except (GitHubError, FleetError) as exc:
            result.errors.append(str(exc))
        return result

    def _redeliver(self, jobs: JobSource, result: CycleResult) -> None:
        now = self.clock()
        since = self.redelivery.due(now)
        if since is None:
            return
        try:
            report = jobs.redeliver_failed(since, now)
        except (GitHubError, ValueError, KeyError) as exc:  # the latter two: a garbled answer
            self.redelivery.done(now, since, ok=False)
            result.errors.append(
                f"redelivery of failed webhook deliveries: {exc}; "
                f"next try in {self.options.redeliver_every:.0f} s"
            )
            return
        self.redelivery.done(now, since, ok=True)
        result.redelivered += report.redelivered
        result.errors += [f"GitHub refused a redelivery: {error}" for error in report.errors]

    def _look_up_stale_jobs(self, jobs: JobSource, result: CycleResult) -> None:
        """Ask GitHub where jobs stand that no webhook spoke of for ``stale_after`` seconds.

        A looked-up job counts as heard from, so it is asked about again only after another
        ``stale_after``. GitHub trouble ends this cycle's look-ups; the next cycle goes on.
        """
        if self.options.stale_after <= 0:
            return
        stale = stale_jobs(
            self.intake.last_news(),
            now=self.clock(),
            stale_after=timedelta(seconds=self.options.stale_after),
            limit=self.options.max_job_lookups,
        )
        for record in stale:
            try:
                status = jobs.job(record.repository, record.job_id)
            except GitHubNotFound:
                # Its run was deleted (or the App cannot see it): no runner will ever take it.
                if self.intake.drop(record.job_id):
                    result.dropped_jobs.append(record.job_id)
                continue
            except (GitHubError, ValueError, KeyError) as exc:
                hint = ""
                if isinstance(exc, GitHubForbidden | GitHubValidationError):
                    hint = " (the App needs Repository permissions > Actions: Read-only)"
                result.errors.append(
                    f"looking up stale job {record.job_id} of {record.repository}: {exc}{hint}"
                )
                return
            if self.intake.merge(status.to_event()):
                result.converged_jobs.append(record.job_id)

    def _check_agents(self, seen: Observation, result: CycleResult) -> None:
        """An agent that exited 7 is too old for GitHub: the hosts are named with how to
        re-bake, and launches back off (10 s, doubling, up to 5 minutes: a new host of the
        same image would do the same) until a host takes a job again."""
        if seen.outdated:
            self._agent_outdated = True
            self._back_off(result, outdated_message(host.name for host in seen.outdated))
        elif any(h.state is HostState.BUSY for h in seen.hosts) or seen.finished:
            self._agent_outdated = False

    def _clear_away(self, seen: Observation, result: CycleResult) -> None:
        self._check_agents(seen, result)
        for host in (*seen.gone, *seen.finished):
            self._deregister(host.registration, result)
            self.fleet.remove(host.name)
            result.removed.append(host.name)
        for ghost in seen.ghosts:
            if ghost.busy:
                continue  # GitHub thinks a job runs there: left for GitHub to time out
            try:
                if self.fleet.deregister(ghost):
                    result.deregistered.append(ghost.name)
            except RunnerBusyError:
                continue
        self.fleet.remove_orphans()

    def _shrink(self, seen: Observation, decision: Decision, result: CycleResult) -> None:
        hosts = seen.by_name()
        for name in decision.retire:
            if retire_host(self.fleet, name, hosts[name].registration, self.report, self._busy):
                result.retired.append(name)
            else:
                result.kept_busy.append(name)
        for name in decision.terminate:
            # Never registered in time (or above max_size while booting): no job can run
            # there unless GitHub or the host says so, which the re-check catches.
            if retire_host(self.fleet, name, hosts[name].registration, self.report, self._busy):
                result.terminated.append(name)
            else:
                result.kept_busy.append(name)

    def _grow(self, decision: Decision, result: CycleResult) -> None:
        if decision.launch <= 0:
            return
        if self.monotonic() < self._launch_not_before:
            result.errors.append(
                f"launch of {decision.launch} host(s) postponed: the last launch failed"
            )
            return
        try:
            rows = self.fleet.add(
                decision.launch, validate_hosts=self.options.validate, canary=False
            )
        except (GitHubError, FleetError) as exc:
            self._back_off(result, f"starting {decision.launch} host(s) failed: {exc}")
            return
        good = {"registered"} if self.fleet.registered else {"booted", "validated"}
        failed = [row for row in rows if row.state not in good]
        for row in rows:
            if row in failed:
                self.fleet.remove(row.name)
            else:
                result.launched.append(row.name)
        if failed:
            problems = "; ".join(p for row in failed for p in row.problems[:2]) or failed[0].state
            self._back_off(result, f"{len(failed)} new host(s) failed ({problems}); removed")
        elif not self._agent_outdated:
            self._launch_failures = 0

    def _back_off(self, result: CycleResult, problem: str) -> None:
        """No launch storm: the next attempt waits 10 s, 20 s, ... up to 5 minutes."""
        self._launch_failures += 1
        delay = min(300.0, 5.0 * 2**self._launch_failures)
        self._launch_not_before = self.monotonic() + delay
        result.errors.append(f"{problem}; next launch in {delay:.0f} s")
