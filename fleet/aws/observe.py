"""Pure: what the Auto Scaling group, GitHub and the job ledger report, joined into one view.

``observe`` turns the three sources into the ``FleetRunner`` list ``fleet.core.scaling.decide``
reasons about, plus what the reaper needs (ghost runners, offline runners, never-registered
instances). No I/O and no clock: ``now`` is an argument. Cost: one pass over each input.

Naming ties the sources together: the runner of instance ``i-0abc`` is ``<fleet>-i-0abc``
(``runner_name``), so an instance and its registration are found without any lookup table.

How an instance's status is read (GitHub's word first, the ledger's second):

* no registration -> BOOTING (launch hook or agent start still to come);
* registration busy, or an in-progress job in the ledger names it -> BUSY (GitHub's ``busy``
  flag lags a job assignment by tens of seconds; the ledger closes that gap);
* online -> IDLE;
* offline within the boot deadline -> BOOTING (a JIT registration shows offline until the
  agent connects); offline after it -> OFFLINE, which nothing here terminates: the reaper
  deregisters it first (GitHub refuses while it runs a job) and only then ends the instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fleet.core.github.runners import Runner
from fleet.core.ledger import JobRecord, JobState
from fleet.core.scaling import FleetLimits, FleetRunner, RunnerStatus

# Auto Scaling lifecycle states of an instance that holds (or will hold) a runner. Warm-pool,
# standby, detaching and terminating instances are not capacity.
ACTIVE_LIFECYCLE_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})


def runner_name(fleet: str, instance_id: str) -> str:
    """The GitHub runner name of an instance of ``fleet``."""
    return f"{fleet}-{instance_id}"


def instance_id_of(fleet: str, name: str) -> str | None:
    """The instance id in a runner name of ``fleet``, or None if the runner is not ours."""
    prefix = f"{fleet}-"
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    return rest if rest.startswith("i-") and len(rest) > 2 else None


@dataclass(frozen=True)
class GroupInstance:
    """An instance as the Auto Scaling group lists it."""

    instance_id: str
    lifecycle_state: str
    protected: bool = False

    @property
    def active(self) -> bool:
        return self.lifecycle_state in ACTIVE_LIFECYCLE_STATES


@dataclass(frozen=True)
class FleetView:
    """The fleet as seen this cycle."""

    runners: tuple[FleetRunner, ...]  # one per active instance
    queued: int  # jobs the ledger holds as queued (waiting ones need no runner yet)
    registrations: Mapping[str, Runner]  # instance id -> its GitHub runner, if registered
    ghosts: tuple[Runner, ...]  # runners of this fleet without an active instance
    unprotected_busy: tuple[str, ...]  # busy instances the group could still scale in
    jobs_by_runner: Mapping[str, int]  # runner name (casefolded) -> job id in progress on it

    def runner_of(self, instance_id: str) -> Runner | None:
        return self.registrations.get(instance_id)


# Long on purpose: one pass that joins the group, GitHub and the ledger; its branches are the
# status rules, which read best together.
def observe(
    *,
    fleet: str,
    instances: Sequence[GroupInstance],
    launched_at: Mapping[str, datetime],
    runners: Iterable[Runner],
    jobs: Iterable[JobRecord],
    boot_deadline: timedelta,
    now: datetime,
) -> FleetView:
    """Join group instances, GitHub runners and open ledger jobs into a ``FleetView``.

    An instance missing from ``launched_at`` (EC2 not caught up yet) counts as launched
    ``now``: it is never taken for one that missed its boot deadline.
    """
    queued = 0
    jobs_by_runner: dict[str, int] = {}
    for job in jobs:
        if job.state is JobState.QUEUED:
            queued += 1
        elif job.state is JobState.IN_PROGRESS and job.runner_name:
            jobs_by_runner[job.runner_name.casefold()] = job.job_id

    active = {i.instance_id: i for i in instances if i.active}
    registrations: dict[str, Runner] = {}
    ghosts: list[Runner] = []
    for runner in runners:
        instance_id = instance_id_of(fleet, runner.name)
        if instance_id is None:
            continue  # another fleet's (or a hand-registered) runner: not ours to judge
        if instance_id in active:
            registrations[instance_id] = runner
        else:
            ghosts.append(runner)

    fleet_runners: list[FleetRunner] = []
    unprotected_busy: list[str] = []
    for instance_id, instance in active.items():
        launched = launched_at.get(instance_id, now)
        runner = registrations.get(instance_id)
        name = runner_name(fleet, instance_id)
        if runner is None:
            status = RunnerStatus.BOOTING
        elif runner.busy or name.casefold() in jobs_by_runner:
            status = RunnerStatus.BUSY
        elif runner.online:
            status = RunnerStatus.IDLE
        elif now - launched <= boot_deadline:
            status = RunnerStatus.BOOTING
        else:
            status = RunnerStatus.OFFLINE
        if status is RunnerStatus.BUSY and not instance.protected:
            unprotected_busy.append(instance_id)
        fleet_runners.append(
            FleetRunner(
                instance_id=instance_id,
                status=status,
                launched_at=launched,
                name=name if runner is not None else None,
            )
        )
    return FleetView(
        runners=tuple(fleet_runners),
        queued=queued,
        registrations=registrations,
        ghosts=tuple(ghosts),
        unprotected_busy=tuple(unprotected_busy),
        jobs_by_runner=jobs_by_runner,
    )


@dataclass(frozen=True)
class ReapPlan:
    """What the reaper does this pass. Every instance here is deregistered before it ends."""

    ghosts: tuple[Runner, ...]  # registered, no active instance, not busy: deregister
    offline: tuple[str, ...]  # instances whose runner went offline past the boot deadline
    never_registered: tuple[str, ...]  # no runner by the boot deadline: terminate, replace
    expired_idle: tuple[str, ...]  # idle past the maximum lifetime: retire
    overdue_busy: tuple[str, ...]  # busy past the maximum lifetime: reported, never touched


def reap_plan(view: FleetView, limits: FleetLimits, now: datetime) -> ReapPlan:
    """Pure choice of what the reaper deregisters and terminates (see ``ReapPlan``)."""
    offline: list[str] = []
    never: list[str] = []
    expired: list[str] = []
    overdue: list[str] = []
    for runner in view.runners:
        age = runner.age(now)
        if runner.status is RunnerStatus.OFFLINE:
            offline.append(runner.instance_id)
        elif runner.status is RunnerStatus.BOOTING and age > limits.boot_deadline:
            never.append(runner.instance_id)
        elif runner.status is RunnerStatus.IDLE and age > limits.max_lifetime:
            expired.append(runner.instance_id)
        elif runner.status is RunnerStatus.BUSY and age > limits.max_lifetime:
            overdue.append(runner.instance_id)
    ghosts = tuple(
        r for r in view.ghosts if not r.busy and r.name.casefold() not in view.jobs_by_runner
    )
    return ReapPlan(
        ghosts=ghosts,
        offline=tuple(offline),
        never_registered=tuple(never),
        expired_idle=tuple(expired),
        overdue_busy=tuple(overdue),
    )
