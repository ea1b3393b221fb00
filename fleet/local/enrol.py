"""Booting new hosts and registering them with GitHub just in time.

``boot.yml`` preloads images into each fresh engine and, given a host's JIT config, starts
its ephemeral runner. JIT configs go in as host variables of an inventory that lives in a
private temporary directory (never a command line) and are dropped once the run ends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fleet.core.clock import Report
from fleet.core.github.errors import GitHubError
from fleet.errors import FleetError
from fleet.local import docker as backend
from fleet.local import provision
from fleet.local.registration import Registrar


@dataclass
class HostRow:
    name: str
    state: str
    converge_seconds: float | None = None
    checks_passed: int = 0
    checks_total: int = 0
    problems: list[str] = field(default_factory=list)
    github: str = "-"  # runner id once registered


def boot_hosts(
    names: Sequence[str], variables: dict[str, Any], jit: dict[str, str] | None = None
) -> provision.ConvergeResult:
    """Run boot.yml on ``names``; a host with a JIT config in ``jit`` starts its runner."""
    inventory = provision.docker_inventory(list(names))
    hostvars = inventory["all"]["children"]["runners"]["hosts"]
    for name, config in (jit or {}).items():
        hostvars[name]["actions_runner_jitconfig"] = config
    # Two tasks: starting Mitogen's interpreter costs more than it saves here (1.5 s and
    # 1.4 CPU-s against 1.1 s and 1.0 CPU-s per host under the stock strategy).
    return provision.converge(inventory, "boot.yml", variables, strategy="linear")


def _boot_failed(result: provision.ConvergeResult, name: str) -> bool:
    stats = result.stats.get(name, {})
    return bool(stats.get("failures") or stats.get("dark") or name not in result.stats)


def host_rows(
    names: Sequence[str], result: provision.ConvergeResult, seconds: float, good: str
) -> dict[str, HostRow]:
    """One row per host: ``good`` if its boot run succeeded, else "boot failed"."""
    return {
        name: HostRow(
            name=name,
            state="boot failed" if _boot_failed(result, name) else good,
            converge_seconds=seconds,
            problems=[m for m in result.failures if m.startswith(name + ":")],
        )
        for name in names
    }


def register_hosts(
    fleet: str,
    names: Sequence[str],
    variables: dict[str, Any],
    registrar: Registrar | None,
    labels: Sequence[str],
) -> tuple[dict[str, str], list[str]]:
    """Register each host just in time and start its runner; ({name: runner id},
    problems). Without GitHub settings every host is marked ready unregistered."""
    if registrar is None:
        for container in backend.list_hosts(fleet):
            if container.name in names:
                backend.mark_booted(container)
        return {}, []
    configs: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name in names:
        jit = registrar.register(name, labels)
        configs[name] = jit.encoded_jit_config
        ids[name] = str(jit.runner.id)
    result = boot_hosts(list(configs), variables, configs)
    del configs
    for container in backend.list_hosts(fleet):
        if container.name in ids and not _boot_failed(result, container.name):
            backend.mark_booted(container)
    return ids, list(result.failures)


def register_and_boot(
    fleet: str,
    names: list[str],
    variables: dict[str, Any],
    registrar: Registrar,
    labels: Sequence[str],
    started: float,
    report: Report,
) -> list[HostRow]:
    """Register and boot in one run (hosts from an image ``up`` validated): one row each."""
    report(f"registering and booting {', '.join(names)} (JIT, playbooks/boot.yml)")
    configs: dict[str, str] = {}
    ids: dict[str, str] = {}
    problems: list[str] = []
    for name in names:
        try:
            jit = registrar.register(name, labels)
        except (FleetError, GitHubError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        configs[name], ids[name] = jit.encoded_jit_config, str(jit.runner.id)
    result = (
        boot_hosts(list(configs), variables, configs)
        if configs
        else provision.ConvergeResult("failed", 1, 0.0, {}, [])
    )
    del configs
    rows = host_rows(names, result, time.monotonic() - started, "registered")
    for container in backend.list_hosts(fleet):
        row = rows.get(container.name)
        if row is None:
            continue
        row.problems += [p for p in problems if p.startswith(container.name + ":")]
        if row.state == "registered" and container.name in ids:
            row.github = ids[container.name]
            backend.mark_booted(container)
        elif row.state == "registered":
            row.state = "register failed"
    return [rows[n] for n in names]
