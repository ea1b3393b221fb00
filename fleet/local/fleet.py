"""The local fleet model: one fleet's runner hosts on this machine's Docker engine.

``LocalFleet`` is what ``up``, ``scale``, ``validate`` and ``serve`` go through, so a host is
made and removed the same way whichever command asks. It composes four parts, each in its
own module: the baked image (``bake``), the hosts on the engine (``hosts``), booting and
registering them (``enrol``) and checking them (``validate``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fleet.core.clock import Report
from fleet.core.github.errors import GitHubError
from fleet.core.github.runners import Runner
from fleet.errors import FleetError
from fleet.local import bake, enrol, hosts, validate, validation_report
from fleet.local import docker as backend
from fleet.local.engine.bootstrap import Bootstrap
from fleet.local.enrol import HostRow
from fleet.local.hosts import runner_prefix
from fleet.local.observe import HostProbe, HostState, Observation, observe
from fleet.local.registration import Registrar

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
DEFAULT_LABELS = ("self-hosted", "linux", "x64", "dind")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise FleetError(
            f"fleet name {name!r} is not valid",
            hint="use 1-31 lower-case letters, digits and dashes, starting with a letter or digit",
        )
    return name


class LocalFleet:
    """One fleet's hosts on this engine: start, boot, validate, register, remove."""

    def __init__(
        self,
        name: str,
        boot: Bootstrap,
        variables: dict[str, Any],
        labels: Sequence[str],
        registrar: Registrar | None,
        report: Report,
    ) -> None:
        self.name = check_name(name)
        self.boot = boot
        self.variables = variables
        self.labels = tuple(labels)
        self.registrar = registrar
        self.report = report
        self.image: str | None = None
        # What validations do beyond the checks (your suite, the performance baseline).
        self.extras = validate.Extras()

    @property
    def registered(self) -> bool:
        return self.registrar is not None

    # --- the image (fleet.local.bake) ---------------------------------------------------

    def ensure_image(self) -> str:
        """The fleet's baked image for the current playbooks and variables (bake if none)."""
        wanted = bake.bake_hash(self.variables, self.boot.images.runner_host)
        found = backend.find_baked_image(self.name, wanted)
        if found:
            self.image = found
            self.adopt_image_vars()
            self.report(f"baked image {found} is current (playbooks and variables unchanged)")
            return found
        self.image = bake.bake_image(self.name, self.boot, self.variables, wanted, self.report)
        return self.image

    def current_image(self) -> str:
        """The newest baked image of this fleet (``up`` makes it)."""
        if self.image is None:
            self.image = backend.find_baked_image(self.name)
        if self.image is None:
            raise FleetError(
                f"fleet {self.name!r} has no baked image",
                hint=f"run `python -m fleet up --name {self.name}` first",
            )
        return self.image

    def adopt_image_vars(self, overrides: dict[str, Any] | None = None) -> None:
        """Take the variables the current image was baked with (``bake.image_vars``)."""
        self.variables = bake.image_vars(self.current_image(), self.variables, overrides)

    # --- the hosts (fleet.local.hosts) --------------------------------------------------

    def hosts(self) -> list[tuple[str, datetime, HostProbe]]:
        """Every runner host of the fleet with its creation time and what it reports."""
        return hosts.list_hosts(self.name)

    def checkable(self) -> tuple[list[str], list[str]]:
        """(hosts the checks may run on, busy hosts left alone). The checks run the job
        hooks, which remove every container: never on a host that is running a job."""
        seen = self.observe()
        free = [h.name for h in seen.hosts if h.state in (HostState.IDLE, HostState.BOOTING)]
        busy = [h.name for h in seen.hosts if h.state is HostState.BUSY]
        return free, busy

    def outdated(self, names: Sequence[str], image: str) -> list[str]:
        """Of ``names``, the hosts that run an older image of the fleet than ``image``."""
        return hosts.outdated_hosts(self.name, names, image)

    def probe(self, name: str) -> HostProbe:
        return hosts.probe_host(self.name, name)

    def remove(self, name: str) -> None:
        hosts.remove_host(self.name, name)

    def remove_orphans(self) -> list[str]:
        return backend.remove_orphan_volumes(self.name)

    def observe(self, busy_names: Iterable[str] = ()) -> Observation:
        """Hosts, their registrations and the job ledger, joined (see fleet.local.observe)."""
        registrations = self.registrar.runners(runner_prefix(self.name)) if self.registrar else None
        return observe(
            self.hosts(),
            registrations,
            runner_prefix=runner_prefix(self.name),
            busy_names=busy_names,
        )

    def deregister(self, registration: Runner) -> bool:
        """Delete a GitHub registration (False if gone); ``RunnerBusyError`` if busy."""
        return self.registrar.deregister(registration) if self.registrar else False

    def retire(
        self,
        name: str,
        registration: Runner | None,
        busy: Callable[[str], bool] = lambda _name: False,
    ) -> bool:
        """Deregister first, re-check, then remove (``fleet.local.hosts.retire_host``)."""
        return hosts.retire_host(self, name, registration, self.report, busy)

    def retire_idle(self, count: int) -> list[str]:
        """Retire up to ``count`` idle hosts, oldest first; busy hosts are never touched."""
        seen = self.observe()
        idle = [h for h in seen.hosts if h.state in (HostState.IDLE, HostState.BOOTING)]
        idle.sort(key=lambda h: (h.state is HostState.IDLE, h.created))
        retired = []
        for host in idle:
            if len(retired) >= count:
                break
            if self.retire(host.name, host.registration):
                retired.append(host.name)
        busy = len([h for h in seen.hosts if h.state is HostState.BUSY])
        if len(retired) < count and busy:
            self.report(
                f"{busy} busy host(s) kept: they go away after their jobs (ephemeral runners)"
            )
        return retired

    def start(self, count: int) -> list[str]:
        """Start ``count`` hosts from the baked image, in parallel; returns their names."""
        return hosts.start_hosts(self.name, self.current_image(), self.boot, self.labels, count)

    # --- boot, registration (fleet.local.enrol) and validation --------------------------

    def boot_hosts(
        self, names: Sequence[str], jit: dict[str, str] | None = None
    ) -> enrol.provision.ConvergeResult:
        """Run boot.yml (``enrol.boot_hosts``)."""
        return enrol.boot_hosts(names, self.variables, jit)

    def register(self, names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """Register each host just in time and start its runner (``enrol.register_hosts``)."""
        return enrol.register_hosts(self.name, names, self.variables, self.registrar, self.labels)

    def validate(
        self, names: Sequence[str], junit: Path | None, canary: bool = True
    ) -> validate.Validation:
        outcome = validate.run_validation(
            self.name, list(names), self.variables, junit, canary, self.extras
        )
        for line in validation_report.summary_lines(outcome):
            self.report(line)
        return outcome

    def add(
        self,
        count: int,
        *,
        validate_hosts: bool = True,
        canary: bool = True,
        junit: Path | None = None,
    ) -> list[HostRow]:
        """Start, boot, (validate,) and register ``count`` new hosts; one row per host.

        With validation a host registers only once it has passed the checks (boot.yml runs
        twice: preload, then the runner's start). Without it (``serve`` replacing a used
        runner from an image ``up`` validated) registration and boot are one run.
        """
        self.report(f"starting {count} runner host(s) from {self.current_image()}")
        started = time.monotonic()
        names = self.start(count)
        if self.registrar is not None and not validate_hosts:
            return enrol.register_and_boot(
                self.name, names, self.variables, self.registrar, self.labels, started, self.report
            )
        self.report(f"booting {', '.join(names)} with playbooks/boot.yml")
        result = self.boot_hosts(names)
        rows = enrol.host_rows(names, result, time.monotonic() - started, "booted")
        ready = [n for n in names if rows[n].state == "booted"]
        if validate_hosts and ready:
            ready = self._validate_new(ready, rows, junit, canary)
        if ready:
            self._register_new(ready, rows)
        return [rows[n] for n in names]

    def _validate_new(
        self, ready: list[str], rows: dict[str, HostRow], junit: Path | None, canary: bool
    ) -> list[str]:
        """Check freshly booted hosts; returns those that passed every check."""
        self.report(
            f"validating {len(ready)} host(s) with tests/runner"
            + (" (with the canary: about a minute)" if canary else " (without the canary)")
        )
        outcome = self.validate(ready, junit, canary=canary)
        for name in ready:
            counts = outcome.counts(name)
            rows[name].checks_passed = counts["passed"]
            rows[name].checks_total = sum(counts.values())
            ok = counts["passed"] == rows[name].checks_total and counts["passed"] > 0
            rows[name].state = "validated" if ok else "checks failed"
        return [n for n in ready if rows[n].state == "validated"]

    def _register_new(self, ready: list[str], rows: dict[str, HostRow]) -> None:
        """Register hosts that are ready (without GitHub settings: mark them ready)."""
        if self.registrar is not None:
            self.report(f"registering {len(ready)} host(s) with GitHub (just in time)")
        try:
            ids, problems = self.register(ready)
        except (FleetError, GitHubError) as exc:
            ids, problems = {}, [f"{name}: {exc}" for name in ready]
        if self.registrar is None:
            return
        for name in ready:
            mine = [p for p in problems if p.startswith(name + ":")]
            if name in ids and not mine:
                rows[name].state, rows[name].github = "registered", ids[name]
            else:
                rows[name].state = "register failed"
                rows[name].problems += mine
