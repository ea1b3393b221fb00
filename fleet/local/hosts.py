"""Retiring a local runner host: ``fleet.core.retire`` over Docker, a host probe and serve's
job ledger."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from fleet.core.github.runners import Runner
from fleet.core.retire import LEDGER_BUSY, Candidate, retire
from fleet.local.observe import HostProbe

Report = Callable[[str], None]


class Retirable(Protocol):
    """What retiring needs from a fleet (``LocalFleet``, or serve's tests' fleet in memory)."""

    @property
    def registered(self) -> bool: ...

    def deregister(self, registration: Runner) -> bool: ...

    def probe(self, name: str) -> HostProbe: ...

    def remove(self, name: str) -> None: ...


def retire_host(
    fleet: Retirable,
    name: str,
    registration: Runner | None,
    report: Report,
    busy: Callable[[str], bool] = lambda _name: False,
) -> bool:
    """Deregister first, re-check, then remove (property 16). True if the host was removed.

    Kept: a registration GitHub shows busy, a deregistration GitHub refuses (it took a job),
    and a host that, re-checked after deregistration, runs a job's worker or that ``busy``
    (the job ledger) says runs a job.
    """

    def found_busy(names: Sequence[str]) -> dict[str, str]:
        found = {}
        for host in names:
            if fleet.probe(host).worker:
                found[host] = "a job's worker runs on it"
            elif busy(host):
                found[host] = LEDGER_BUSY
        return found

    def remove(host: str) -> bool:
        fleet.remove(host)
        return True

    outcome = retire(
        [Candidate(name, registration if fleet.registered else None)],
        deregister=fleet.deregister,
        busy_after=found_busy,
        remove=remove,
    )
    for host, why in outcome.spared:
        report(f"{host} kept: {why}")
    return bool(outcome.removed)
