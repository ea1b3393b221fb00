"""The local fleet's commands: ``up``, ``scale``, ``status`` and ``down`` (``fleet.cli`` parses
the command line and prints; this module does the work).

``up`` = bootstrap the machine, bake the fleet's image once (``bake``), start hosts from it
and run only ``boot.yml`` on them, validate them with the testinfra suite and, with GitHub
App settings, register each just in time. ``scale`` and ``serve`` add and remove hosts the
same way. The same playbooks and checks serve AWS.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.core.clock import Report
from fleet.core.github.errors import GitHubError
from fleet.errors import FleetError
from fleet.local import docker as backend
from fleet.local.bake import check_free_space
from fleet.local.engine.bootstrap import Bootstrap, bootstrap
from fleet.local.enrol import HostRow
from fleet.local.fleet import DEFAULT_LABELS, LocalFleet, check_name
from fleet.local.hosts import runner_prefix
from fleet.local.observe import OUTDATED_STATE, host_state
from fleet.local.registration import Registrar, RunnerBusyError
from fleet.local.scale_set import StateFile, connect_service, delete_if_created, state_path
from fleet.local.serve.jobs_file import DEFAULT_DIRECTORY, JobsFile
from fleet.local.serve.jobs_file import default_path as default_jobs_path
from fleet.local.validate import Extras
from fleet.local.yaml_files import load_mapping

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MAX_RUNNERS = 50


@dataclass
class UpOptions:
    name: str = "local"
    runners: int = 1
    labels: tuple[str, ...] = DEFAULT_LABELS
    vars_file: Path | None = None
    agent_url: str | None = None
    agent_sha256: str | None = None
    agent_version: str | None = None  # a release, or "latest"
    trust_host_cas: bool = True
    cache_dir: Path | None = None
    junit: Path | None = None
    canary: bool = True
    extras: Extras = field(default_factory=Extras)


def check_runner_count(count: int, flag: str = "--runners") -> int:
    if not 0 <= count <= MAX_RUNNERS:
        raise FleetError(
            f"{flag} {count} is out of range", hint=f"use 0 to {MAX_RUNNERS} runner hosts"
        )
    return count


def load_vars_file(path: Path | None) -> dict[str, Any]:
    """User role variables (the same the playbooks take), as a mapping."""
    if path is None:
        return {}
    data = load_mapping(
        path, "vars file", mapping_of="role variables", hint="e.g. docker_host_log_max_file: 5"
    )
    if "actions_runner_jitconfig" in data:
        raise FleetError(
            f"vars file {path} sets actions_runner_jitconfig",
            hint="JIT configs are made per host by the fleet (GitHub App settings); remove it",
        )
    return data


def local_extravars(boot: Bootstrap, options: UpOptions) -> dict[str, Any]:
    """Variables that make the playbooks fit a local host, then the user's own."""
    variables: dict[str, Any] = {
        "docker_host_preload_images": [
            {
                "name": boot.images.base,
                "path": f"{backend.PRELOAD_MOUNT}/{boot.images.preload_tar.name}",
            }
        ],
    }
    if options.trust_host_cas and HOST_CA_BUNDLE.exists():
        # Machines behind a TLS-inspecting proxy: runner hosts must trust what this
        # machine trusts, or pip and git inside them fail.
        variables["docker_host_extra_ca_certificates"] = [
            {"name": "fleet-machine-trust", "content": HOST_CA_BUNDLE.read_text()}
        ]
    if options.agent_url:
        variables["actions_runner_url"] = options.agent_url
    if options.agent_sha256:
        variables["actions_runner_sha256"] = options.agent_sha256
    if options.agent_version:
        variables["actions_runner_version"] = options.agent_version
    variables.update(load_vars_file(options.vars_file))
    return variables


def fleet_for(
    name: str,
    boot: Bootstrap,
    options: UpOptions,
    registrar: Registrar | None,
    report: Report,
) -> LocalFleet:
    """The fleet as ``up`` configures it (from the command line's options)."""
    fleet = LocalFleet(
        name, boot, local_extravars(boot, options), options.labels, registrar, report
    )
    fleet.extras = options.extras
    return fleet


def existing_fleet(
    name: str,
    boot: Bootstrap,
    labels: Sequence[str],
    registrar: Registrar | None,
    report: Report,
    vars_file: Path | None = None,
) -> LocalFleet:
    """The fleet as its baked image says it was made (``scale``, ``serve``, ``validate``)."""
    fleet = LocalFleet(
        name, boot, local_extravars(boot, UpOptions(name=name)), labels, registrar, report
    )
    fleet.adopt_image_vars(load_vars_file(vars_file))
    return fleet


def up(options: UpOptions, report: Report, registrar: Registrar | None = None) -> list[HostRow]:
    """Bring the fleet to ``options.runners`` validated hosts; returns one row per host."""
    check_name(options.name)
    if not 1 <= options.runners <= MAX_RUNNERS:
        raise FleetError(
            f"--runners {options.runners} is out of range", hint=f"use 1 to {MAX_RUNNERS}"
        )
    if registrar is not None:
        report(f"checking the GitHub App's access to {registrar.settings.scope_text}")
        registrar.check()
    boot = bootstrap(report, options.cache_dir)
    report(
        f"engine {boot.engine.version} ready, image {boot.images.runner_host} "
        f"({boot.seconds:.1f} s)"
    )
    fleet = fleet_for(options.name, boot, options, registrar, report)
    existing, busy = fleet.checkable()
    if busy:
        report(f"{len(busy)} host(s) running a job, not checked: {', '.join(busy)}")
    rows: dict[str, HostRow] = {}
    _replace_outdated(fleet, existing, fleet.ensure_image(), report)
    missing = max(0, options.runners - len(existing) - len(busy))
    if missing:
        check_free_space(report)
        for row in fleet.add(missing, canary=options.canary, junit=options.junit):
            rows[row.name] = row
    if existing:
        rows.update(_check_existing(fleet, existing, options, report))
    failed = [r for r in rows.values() if r.problems]
    if failed and all(r.state in ("boot failed", "register failed") for r in rows.values()):
        raise FleetError(
            "booting the runner hosts failed:\n  "
            + "\n  ".join(p for r in failed for p in r.problems[:5]),
            hint="fix the task named above, then run `python -m fleet up` again "
            "(hosts are kept; `python -m fleet down` removes them)",
        )
    return [rows[name] for name in sorted(rows)]


def _replace_outdated(fleet: LocalFleet, existing: list[str], current: str, report: Report) -> None:
    """The playbooks or variables changed: idle hosts of an older image make way for hosts
    of the new one (deregistered first; a host that took a job meanwhile stays). Retired
    hosts leave ``existing``."""
    outdated = fleet.outdated(existing, current)
    if not outdated:
        return
    report(f"replacing {len(outdated)} idle host(s) of an older image: {', '.join(outdated)}")
    registrations = fleet.observe().by_name()
    for name in outdated:
        view = registrations.get(name)
        if fleet.retire(name, view.registration if view else None):
            existing.remove(name)


def _check_existing(
    fleet: LocalFleet, existing: list[str], options: UpOptions, report: Report
) -> dict[str, HostRow]:
    """Validate the hosts ``up`` found; register those validated but not registered yet."""
    report(f"validating {len(existing)} existing host(s) with tests/runner")
    outcome = fleet.validate(existing, options.junit, canary=options.canary)
    rows = {}
    for name in existing:
        counts = outcome.counts(name)
        ok = counts["passed"] == sum(counts.values()) and counts["passed"] > 0
        rows[name] = HostRow(
            name=name,
            state="validated" if ok else "checks failed",
            checks_passed=counts["passed"],
            checks_total=sum(counts.values()),
        )
    if fleet.registrar is None:
        return rows
    registrations = fleet.registrar.runners(runner_prefix(options.name))
    for name, row in rows.items():
        if name in registrations:
            row.state, row.github = "registered", str(registrations[name].id)
    waiting = [
        name
        for name, _, probe in fleet.hosts()
        if name in rows
        and rows[name].state == "validated"
        and not probe.unit_started
        and name not in registrations
    ]
    if waiting:
        ids, _ = fleet.register(waiting)
        for name in waiting:
            if name in ids:
                rows[name].state, rows[name].github = "registered", ids[name]
    return rows


def scale(
    name: str,
    count: int,
    options: UpOptions,
    report: Report,
    registrar: Registrar | None = None,
) -> tuple[list[HostRow], list[str]]:
    """Add hosts (from the baked image) or retire idle ones until the fleet has ``count``;
    returns (rows of new hosts, names of retired hosts)."""
    check_name(name)
    check_runner_count(count, "scale")
    boot = bootstrap(report, options.cache_dir)
    fleet = existing_fleet(name, boot, options.labels, registrar, report, options.vars_file)
    fleet.extras = options.extras
    live = [n for n, _, probe in fleet.hosts() if probe.running and not probe.finished]
    if count > len(live):
        check_free_space(report)
        return fleet.add(count - len(live), canary=options.canary, junit=options.junit), []
    if count < len(live):
        return [], fleet.retire_idle(len(live) - count)
    return [], []


def status(name: str, registrar: Registrar | None = None) -> list[dict[str, str]]:
    check_name(name)
    registrations = registrar.runners(runner_prefix(name)) if registrar is not None else None
    rows = []
    for container in backend.list_hosts(name):
        probe = backend.probe_host(container)
        registration = (registrations or {}).get(container.name)
        state = host_state(probe, registration, registered_fleet=registrations is not None)
        runner_state = str(state)
        if probe.agent_outdated:
            runner_state = OUTDATED_STATE
        github = "-"
        if registration is not None:
            github = f"{registration.id} {'busy' if registration.busy else registration.status}"
        rows.append(
            {
                "runner": container.name,
                "state": container.status,
                "runner state": runner_state,
                "github": github,
                "image": (container.image.tags or [container.image.short_id])[0],
                "labels": container.labels.get(backend.LABEL_RUNNER_LABELS, ""),
                "started": container.attrs.get("State", {}).get("StartedAt", "")[:19],
            }
        )
    return rows


def mode_line(name: str, registrar: Registrar | None, directory: Path = DEFAULT_DIRECTORY) -> str:
    """How the fleet takes jobs, for ``status``: its scale set (and the service's counts,
    with GitHub settings), or webhooks/polling."""
    try:
        state = StateFile(state_path(name, directory)).load()
    except FleetError as exc:
        return f"mode: unknown ({exc.message})"
    if state is None:
        return "mode: runners registered with the REST API (serve follows webhooks or polls)"
    line = (
        f"mode: {state.describe()}, runner group {state.runner_group!r}, labels "
        f"{','.join(state.labels)}; listener session "
        + (state.session_id or "none open (serve --scale-set is not running)")
    )
    if registrar is None:
        return line
    try:
        found = connect_service(registrar).get_scale_set_by_id(state.scale_set_id)
    except GitHubError as exc:
        return f"{line}\n  the scale set could not be read: {exc}"
    stats = found.statistics
    if stats is None:
        return line
    return (
        f"{line}\n  GitHub: {stats.total_available_jobs} job(s) available, "
        f"{stats.total_assigned_jobs} assigned ({stats.total_running_jobs} running), "
        f"{stats.total_registered_runners} runner(s) ({stats.total_busy_runners} busy, "
        f"{stats.total_idle_runners} idle)"
    )


def down(name: str, registrar: Registrar | None = None, report: Report = print) -> dict[str, int]:
    """Remove every Docker object of the fleet and, with GitHub settings, its registrations
    (a busy one is reported and left: GitHub refuses to delete a runner with a job), and the
    scale set if this fleet created it (an adopted one is left; either way it says so)."""
    check_name(name)
    deregistered = 0
    if registrar is not None:
        for runner in registrar.runners(runner_prefix(name)).values():
            try:
                deregistered += bool(registrar.deregister(runner))
            except RunnerBusyError:
                report(f"{runner.name} is running a job on GitHub: its registration is left")
    # The scale set goes before the fleet's network does: anything this machine reaches
    # GitHub through on that network is still there (the e2e tests' fake GitHub listens on
    # its gateway address).
    rest = getattr(registrar, "rest", registrar)  # a scale set's registrar wraps the REST one
    said = delete_if_created(rest, StateFile(state_path(name)), report)
    removed = backend.remove_fleet(name)
    removed["registrations"] = deregistered
    if said:
        report(said)
    removed["jobs files"] = int(JobsFile(default_jobs_path(name)).remove())
    return removed


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"
