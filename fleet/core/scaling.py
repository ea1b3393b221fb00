"""Pure scaling decisions: queued jobs + the fleet's runners + its limits -> what to do now.

No I/O, no clock: ``now`` is an argument. The backends (AWS, Docker) realise a ``Decision``.

How capacity is counted. A runner is not bound to the job it was launched for: any queued job
with matching labels may take any idle or booting runner of the fleet (one fleet serves one
label set, and the webhook already dropped jobs it does not serve). So queued jobs are matched
against the *number* of runners that can still take a job:

    available = idle + booting (within the boot deadline)
    demand    = queued jobs + warm idle target
    target    = busy + offline + demand, clamped to [min, max]

Busy runners run their one job and go away; offline runners (registered, not reachable) hold
an instance but serve nothing, so both count as capacity that is not available. Booting
instances past the boot deadline never registered: they are terminated and, through ``target``,
replaced. Idle runners past the maximum lifetime are retired; busy ones never are (a job may
run for hours). Idle runners beyond demand are retired only after ``idle_grace``, oldest first,
and never below ``min_size``.

Scale-in happens only through ``retire`` (deregister from GitHub first, then terminate) and
``terminate``; ``desired_capacity`` never asks the ASG to pick victims among what is kept.
Scale-up above ``max(kept, min_size)`` is limited to ``max_scale_up_per_cycle``; ``min_size``
itself is restored at once (the ASG enforces its minimum anyway).

Cost: one pass over the runners plus choosing the k runners to retire (O(n log k)).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class RunnerStatus(StrEnum):
    BOOTING = "booting"  # instance up, runner not registered yet
    IDLE = "idle"  # registered, online, no job
    BUSY = "busy"  # running its job
    OFFLINE = "offline"  # registered but offline: uncertain, so never touched here


@dataclass(frozen=True)
class FleetRunner:
    """One instance of the fleet and what its runner is doing."""

    instance_id: str
    status: RunnerStatus
    launched_at: datetime
    name: str | None = None  # runner name once registered
    idle_since: datetime | None = None  # when it became idle (defaults to launched_at)

    def age(self, now: datetime) -> timedelta:
        return now - self.launched_at

    def idle_for(self, now: datetime) -> timedelta:
        return now - (self.idle_since or self.launched_at)


@dataclass(frozen=True)
class FleetLimits:
    """Bounds a fleet's size and pace; validated on creation."""

    min_size: int = 0
    max_size: int = 10
    warm_idle: int = 0
    max_lifetime: timedelta = timedelta(hours=8)
    boot_deadline: timedelta = timedelta(minutes=10)
    max_scale_up_per_cycle: int = 10
    idle_grace: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        problems = []
        if self.min_size < 0:
            problems.append(f"min_size must be >= 0 (got {self.min_size})")
        if self.max_size < max(self.min_size, 1):
            problems.append(
                f"max_size must be >= 1 and >= min_size (got {self.max_size} < {self.min_size})"
            )
        if self.warm_idle < 0:
            problems.append(f"warm_idle must be >= 0 (got {self.warm_idle})")
        if self.max_scale_up_per_cycle < 1:
            problems.append(
                f"max_scale_up_per_cycle must be >= 1 (got {self.max_scale_up_per_cycle})"
            )
        if self.boot_deadline <= timedelta(0):
            problems.append("boot_deadline must be positive")
        if self.max_lifetime <= self.boot_deadline:
            problems.append("max_lifetime must be longer than boot_deadline (and the longest job)")
        if self.idle_grace < timedelta(0):
            problems.append("idle_grace must be >= 0")
        if problems:
            raise ValueError("invalid fleet limits: " + "; ".join(problems))


@dataclass(frozen=True)
class Decision:
    """What to do this cycle. Instance ids in ``retire`` and ``terminate`` are disjoint."""

    desired_capacity: int
    launch: int  # new instances this cycle: desired_capacity - kept, or 0
    kept: int  # instances that stay (everything not retired or terminated)
    retire: tuple[str, ...]  # idle runners: deregister first, re-check, then terminate
    terminate: tuple[str, ...]  # never registered (boot deadline passed), or over max_size
    queued: int
    busy: int
    idle: int
    booting: int
    offline: int
    overdue_busy: tuple[str, ...] = ()  # busy past max_lifetime: reported, never retired here
    reasons: tuple[str, ...] = ()


def _oldest(runners: Iterable[FleetRunner], count: int) -> list[FleetRunner]:
    if count <= 0:
        return []
    return heapq.nsmallest(count, runners, key=lambda r: (r.launched_at, r.instance_id))


# Long on purpose: the scaling decision as one sequence (count, clamp, retire, terminate, launch),
# each step feeding the next; the property tests check it as a whole.
def decide(
    queued: int, runners: Sequence[FleetRunner], limits: FleetLimits, now: datetime
) -> Decision:
    """Desired capacity and what to retire/terminate, from ``queued`` matching jobs and runners."""
    if queued < 0:
        raise ValueError(f"queued job count must be >= 0, got {queued}")
    busy: list[FleetRunner] = []
    idle: list[FleetRunner] = []
    booting: list[FleetRunner] = []
    expired: list[FleetRunner] = []
    dead: list[FleetRunner] = []
    overdue: list[str] = []
    offline = 0
    seen: set[str] = set()
    for runner in runners:
        if runner.instance_id in seen:
            raise ValueError(f"instance {runner.instance_id} listed twice")
        seen.add(runner.instance_id)
        age = runner.age(now)
        if runner.status is RunnerStatus.BUSY:
            busy.append(runner)
            if age > limits.max_lifetime:
                overdue.append(runner.instance_id)
        elif runner.status is RunnerStatus.IDLE:
            (expired if age > limits.max_lifetime else idle).append(runner)
        elif runner.status is RunnerStatus.BOOTING:
            (dead if age > limits.boot_deadline else booting).append(runner)
        else:
            offline += 1

    reasons: list[str] = []
    if expired:
        reasons.append(f"retire {len(expired)} idle runner(s) past max lifetime")
    if dead:
        reasons.append(f"terminate {len(dead)} instance(s) that never registered in time")

    demand = queued + limits.warm_idle
    kept = len(busy) + offline + len(idle) + len(booting)

    # Idle runners beyond what demand needs from idle ones alone, idle long enough, oldest
    # first, never below min_size. Booting surplus is left to become idle (no race with a
    # registration in flight) and is retired here on a later cycle if still not needed.
    surplus = min(len(idle) - demand, kept - limits.min_size)
    eligible = [r for r in idle if r.idle_for(now) >= limits.idle_grace]
    retire = _oldest(eligible, surplus)
    if retire:
        reasons.append(f"retire {len(retire)} surplus idle runner(s)")
    kept -= len(retire)

    # Above max_size (the limit was lowered, or the group drifted): shed idle, then booting.
    over_max: list[FleetRunner] = []
    over = kept - limits.max_size
    if over > 0:
        chosen = {r.instance_id for r in retire}
        more_idle = _oldest((r for r in idle if r.instance_id not in chosen), over)
        retire += more_idle
        over -= len(more_idle)
        if over > 0:
            # Newest booting first: they have had the least time to pick up a job.
            over_max = heapq.nlargest(over, booting, key=lambda r: (r.launched_at, r.instance_id))
        kept -= len(more_idle) + len(over_max)
        reasons.append(f"shed {len(more_idle) + len(over_max)} instance(s) above max_size")

    target = min(limits.max_size, max(limits.min_size, len(busy) + offline + demand))
    floor = max(kept, limits.min_size)
    growth = min(limits.max_scale_up_per_cycle, max(0, target - floor))
    if target - floor > growth:
        reasons.append(
            f"scale-up limited to {limits.max_scale_up_per_cycle} this cycle "
            f"({target - floor} wanted)"
        )
    desired = min(limits.max_size, floor + growth)
    if len(busy) + offline + demand > limits.max_size:
        reasons.append(f"demand exceeds max_size {limits.max_size}")
    launch = max(0, desired - kept)

    return Decision(
        desired_capacity=desired,
        launch=launch,
        kept=kept,
        retire=tuple(r.instance_id for r in expired + retire),
        terminate=tuple(r.instance_id for r in dead + over_max),
        queued=queued,
        busy=len(busy),
        idle=len(idle) + len(expired),
        booting=len(booting) + len(dead),
        offline=offline,
        overdue_busy=tuple(overdue),
        reasons=tuple(reasons),
    )


def desired_runners(assigned_jobs: int, *, min_idle: int, max_runners: int) -> int:
    """A scale set's runner count: ``min(max_runners, min_idle + assigned_jobs)``.

    ``assigned_jobs`` is the service's ``totalAssignedJobs``: jobs GitHub has given the scale
    set and not finished (running ones included, so a busy runner is always counted).
    """
    for name, value in (
        ("assigned_jobs", assigned_jobs),
        ("min_idle", min_idle),
        ("max_runners", max_runners),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    return min(max_runners, min_idle + assigned_jobs)
