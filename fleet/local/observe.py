"""Pure: what local runner hosts and GitHub report, joined into what ``fleet.core.scaling`` reads.

No I/O and no clock (``now`` is an argument). A host's runner name is its container name,
so a host and its GitHub registration are found without a lookup table.

How a host's status is read (the host's own word first, GitHub's second):

* container not running (killed, exited)                -> GONE: remove and replace
* a job's worker process runs                            -> BUSY (never retired)
* runner unit ran and ended (its one job is done)        -> FINISHED: remove and replace
  (exit 7: the agent is too old for GitHub, ``outdated``: re-bake, see AGENT_OUTDATED_HINT)
* GitHub says busy, or the ledger has a job running on it -> BUSY (assigned, worker not up)
* boot part not finished                                 -> BOOTING
* fleet not registered with GitHub, booted               -> IDLE (provisioned, no agent)
* agent running and registered                           -> IDLE
* otherwise (no registration, or no agent)               -> BOOTING: the boot deadline
                                                            ends a host that never registers
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from fleet.core.github.runners import Runner
from fleet.core.scaling import FleetRunner, RunnerStatus

# The agent's exit status when GitHub deems it too old (the runner unit sets
# ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1): it takes no job, and every host of the
# same image will do the same. `status` shows OUTDATED_STATE as the host's runner state; status
# and serve (webhook and scale-set modes alike) name the hosts with ``outdated_message``.
AGENT_OUTDATED_EXIT_STATUS = 7
OUTDATED_STATE = "agent outdated (exit 7)"
AGENT_OUTDATED_HINT = (
    "the runner agent baked into this fleet's image is too old for GitHub (exit 7): hosts "
    "from it cannot take jobs. Re-bake with a current agent: `python -m fleet up "
    "--agent-version latest` (the newest release, verified against its published sha256), "
    "a newer pinned --agent-version (playbooks/roles/actions_runner/README.md), or "
    "--agent-url/--agent-sha256 of the current actions/runner release; a fleet already "
    "baked with latest needs `python -m fleet down` first"
)


def outdated_message(names: Iterable[str]) -> str:
    """The hosts whose agent exited 7, and how to re-bake."""
    return f"{', '.join(names)}: {AGENT_OUTDATED_HINT}"


@dataclass(frozen=True)
class HostProbe:
    """What one host says about itself (see ``fleet.local.docker.PROBE_SCRIPT``)."""

    running: bool = True
    unit_state: str = "inactive"  # systemd ActiveState of actions-runner.service
    unit_started: bool = False  # the unit's main process has started at least once
    unit_exit_status: int | None = None
    worker: bool = False  # a job's worker process (Runner.Worker) runs
    booted: bool = False  # the boot part finished (marker on the host's /run)

    @property
    def agent_running(self) -> bool:
        return self.unit_state in ("active", "activating", "reloading", "deactivating")

    @property
    def finished(self) -> bool:
        """The ephemeral runner ran and ended: this host has served its one job."""
        return self.unit_started and not self.agent_running

    @property
    def agent_outdated(self) -> bool:
        """The runner ended because GitHub deems its agent too old (no job ran)."""
        return self.finished and self.unit_exit_status == AGENT_OUTDATED_EXIT_STATUS


def parse_probe(text: str) -> HostProbe:
    """Read the probe's ``Key=value`` lines; unknown lines are ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key] = value.strip()
    started = values.get("ExecMainStartTimestampMonotonic", "0")
    status = values.get("ExecMainStatus", "")
    return HostProbe(
        running=True,
        unit_state=values.get("ActiveState", "inactive") or "inactive",
        unit_started=started.isdigit() and int(started) > 0,
        unit_exit_status=int(status) if status.lstrip("-").isdigit() else None,
        worker=values.get("Worker") == "yes",
        booted=values.get("Booted") == "yes",
    )


class HostState(StrEnum):
    GONE = "gone"  # container not running
    FINISHED = "finished"  # served its job
    BOOTING = "booting"
    IDLE = "idle"
    BUSY = "busy"


@dataclass(frozen=True)
class HostView:
    """One host as the fleet sees it."""

    name: str
    created: datetime
    probe: HostProbe
    state: HostState
    registration: Runner | None = None


@dataclass(frozen=True)
class Observation:
    """The fleet now: hosts for ``decide``, hosts to clear away, ghost registrations."""

    hosts: tuple[HostView, ...]
    runners: tuple[FleetRunner, ...]  # what decide() reads: booting, idle, busy
    gone: tuple[HostView, ...]  # killed or exited from outside
    finished: tuple[HostView, ...]  # served their one job
    outdated: tuple[HostView, ...] = ()  # of those: ended because the agent is too old
    ghosts: tuple[Runner, ...] = ()  # registrations of this fleet with no host
    reasons: tuple[str, ...] = field(default=())

    def by_name(self) -> dict[str, HostView]:
        return {h.name: h for h in self.hosts}


def host_state(
    probe: HostProbe,
    registration: Runner | None,
    *,
    registered_fleet: bool,
    ledger_busy: bool = False,
) -> HostState:
    """One host's state from its probe, its GitHub registration and the job ledger."""
    if not probe.running:
        return HostState.GONE
    if probe.worker:
        return HostState.BUSY  # a job in flight is never cut short
    if probe.finished:
        # The agent is gone: nothing on this host can still be running a job, whatever a
        # lagging busy flag or a lost `completed` webhook says.
        return HostState.FINISHED
    if (registration is not None and registration.busy) or ledger_busy:
        return HostState.BUSY  # assigned, worker not started yet
    if not probe.booted:
        return HostState.BOOTING
    if not registered_fleet:
        return HostState.IDLE
    if probe.agent_running and registration is not None:
        return HostState.IDLE
    return HostState.BOOTING


_STATUS = {
    HostState.BOOTING: RunnerStatus.BOOTING,
    HostState.IDLE: RunnerStatus.IDLE,
    HostState.BUSY: RunnerStatus.BUSY,
}


def observe(
    hosts: Sequence[tuple[str, datetime, HostProbe]],
    registrations: Mapping[str, Runner] | None,
    *,
    runner_prefix: str,
    busy_names: Iterable[str] = (),
) -> Observation:
    """Join hosts (name, created, probe), GitHub registrations by name (None: the fleet is
    not registered with GitHub) and runner names the job ledger shows running a job."""
    registered_fleet = registrations is not None
    regs = dict(registrations or {})
    busy = {name.casefold() for name in busy_names}
    views: list[HostView] = []
    for name, created, probe in hosts:
        registration = regs.get(name)
        state = host_state(
            probe,
            registration,
            registered_fleet=registered_fleet,
            ledger_busy=name.casefold() in busy,
        )
        views.append(HostView(name, created, probe, state, registration))
    names = {view.name for view in views}
    ghosts = tuple(
        runner
        for name, runner in sorted(regs.items())
        if name.startswith(runner_prefix) and name not in names
    )
    runners = tuple(
        FleetRunner(instance_id=v.name, status=_STATUS[v.state], launched_at=v.created, name=v.name)
        for v in views
        if v.state in _STATUS
    )
    reasons = []
    gone = tuple(v for v in views if v.state is HostState.GONE)
    finished = tuple(v for v in views if v.state is HostState.FINISHED)
    if gone:
        names = ", ".join(v.name for v in gone)
        reasons.append(f"{len(gone)} host(s) stopped from outside: {names}")
    outdated = tuple(v for v in finished if v.probe.agent_outdated)
    if finished:
        reasons.append(f"{len(finished)} host(s) finished their job")
    if outdated:
        reasons.append(f"{len(outdated)} host(s) with an outdated agent: {AGENT_OUTDATED_HINT}")
    if ghosts:
        reasons.append(f"{len(ghosts)} registration(s) without a host")
    return Observation(
        hosts=tuple(views),
        runners=runners,
        gone=gone,
        finished=finished,
        outdated=outdated,
        ghosts=ghosts,
        reasons=tuple(reasons),
    )
