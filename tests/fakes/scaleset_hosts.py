"""A FAKE host side of a local fleet in a scale set (tests only): runner hosts in memory.

``FakeScaleSetHosts`` is what ``serve`` needs from a fleet (``fleet.local.serve.reconciler.
Fleet``) without Docker: starting a host registers it through the product's registrar (a
scale-set JIT config from the fake service) and gives it a ``StepAgent`` the test drives
(online, take a job, finish it), and each host's probe says what its agent is doing, as a
real host's probe would. Removing a host whose job's worker runs is recorded in
``removed_busy``: a test asserts it stays empty.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleet.local.enrol import HostRow
from fleet.local.observe import HostProbe, Observation, observe
from tests.fakes.scaleset_agent import StepAgent

LISTENING = HostProbe(unit_state="active", unit_started=True, booted=True)
WORKING = HostProbe(unit_state="active", unit_started=True, worker=True, booted=True)
FINISHED = HostProbe(unit_state="inactive", unit_started=True, unit_exit_status=0, booted=True)
TOO_OLD = HostProbe(unit_state="failed", unit_started=True, unit_exit_status=7, booted=True)


@dataclass
class FakeHost:
    name: str
    created: datetime
    agent: StepAgent
    probe: HostProbe


class FakeScaleSetHosts:
    """See the module docstring. ``registrar`` is the product's ``ScaleSetRegistrar``."""

    registered = True

    def __init__(self, registrar: Any, name: str = "f", labels=("self-hosted", "linux")) -> None:
        self.registrar = registrar
        self.name = name
        self.labels = tuple(labels)
        self.hosts: dict[str, FakeHost] = {}
        self.launched: list[str] = []
        self.removed: list[str] = []
        self.removed_busy: list[str] = []
        self.agents_too_old = False  # new agents end at once with exit 7
        self._count = 0
        self._lock = threading.RLock()

    @property
    def prefix(self) -> str:
        return f"{self.name}-runner-"

    # -- serve's side ---------------------------------------------------------------------

    def add(self, count: int, *, validate_hosts: bool = False, canary: bool = False) -> list:
        rows = []
        for _ in range(count):
            with self._lock:
                self._count += 1
                name = f"{self.prefix}{self._count:03d}"
            jit = self.registrar.register(name, self.labels)
            agent = StepAgent(jit.encoded_jit_config)
            if self.agents_too_old:
                probe = TOO_OLD
            else:
                agent.online()
                probe = LISTENING
            with self._lock:
                self.hosts[name] = FakeHost(name, datetime.now(UTC), agent, probe)
                self.launched.append(name)
            rows.append(HostRow(name=name, state="registered", github=str(jit.runner.id)))
        return rows

    def observe(self, busy_names=()) -> Observation:
        registrations = self.registrar.runners(self.prefix)
        with self._lock:
            hosts = [(h.name, h.created, h.probe) for h in self.hosts.values()]
        return observe(hosts, registrations, runner_prefix=self.prefix, busy_names=busy_names)

    def probe(self, name: str) -> HostProbe:
        with self._lock:
            host = self.hosts.get(name)
            return host.probe if host else HostProbe(running=False)

    def remove(self, name: str) -> None:
        with self._lock:
            host = self.hosts.pop(name, None)
            if host is None:
                return
            self.removed.append(name)
            if host.probe.worker:
                self.removed_busy.append(name)

    def remove_orphans(self) -> list[str]:
        return []

    def deregister(self, registration: Any) -> bool:
        return self.registrar.deregister(registration)

    # -- the test's side --------------------------------------------------------------------

    def names(self) -> set[str]:
        with self._lock:
            return set(self.hosts)

    def busy(self) -> set[str]:
        with self._lock:
            return {n for n, h in self.hosts.items() if h.probe.worker}

    def take_jobs(self, count: int) -> list[str]:
        """Let idle hosts ask for a job until ``count`` took one; the names that did."""
        took = []
        with self._lock:
            idle = [h for h in self.hosts.values() if h.probe == LISTENING]
        for host in idle:
            if len(took) >= count:
                break
            if host.agent.take_job() is not None:
                with self._lock:
                    host.probe = WORKING
                took.append(host.name)
        return took

    def finish(self, name: str, exit_code: int = 0) -> None:
        with self._lock:
            host = self.hosts[name]
        host.agent.finish(exit_code)
        with self._lock:
            host.probe = FINISHED
