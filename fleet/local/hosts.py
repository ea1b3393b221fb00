"""A local fleet's runner hosts on the engine: names, listing, starting, probing, removing,
and retiring (``fleet.core.retire`` over Docker, a host probe and serve's job ledger)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from fleet.core.clock import Report
from fleet.core.github.runners import Runner
from fleet.core.retire import LEDGER_BUSY, Candidate, retire
from fleet.local import docker as backend
from fleet.local.engine.bootstrap import Bootstrap
from fleet.local.observe import HostProbe


def runner_prefix(fleet: str) -> str:
    """Every host (and runner registration) of a fleet is named ``<fleet>-runner-<hex>``."""
    return f"{fleet}-runner-"


def new_host_name(fleet: str) -> str:
    return f"{runner_prefix(fleet)}{secrets.token_hex(3)}"


def _created(attrs: dict[str, Any]) -> datetime:
    """A container's creation time (Docker gives nanoseconds; Python takes microseconds)."""
    text = attrs.get("Created", "")
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", text)
    if not match:
        return datetime.now(UTC)
    fraction = (match.group(2) or ".0")[:7]
    return datetime.fromisoformat(match.group(1) + fraction).replace(tzinfo=UTC)


def list_hosts(fleet: str) -> list[tuple[str, datetime, HostProbe]]:
    """Every runner host of the fleet with its creation time and what it reports."""
    return [(c.name, _created(c.attrs), backend.probe_host(c)) for c in backend.list_hosts(fleet)]


def probe_host(fleet: str, name: str) -> HostProbe:
    for container in backend.list_hosts(fleet):
        if container.name == name:
            return backend.probe_host(container)
    return HostProbe(running=False)


def remove_host(fleet: str, name: str) -> None:
    for container in backend.list_hosts(fleet):
        if container.name == name:
            backend.remove_host(container)
            return


def outdated_hosts(fleet: str, names: Sequence[str], image: str) -> list[str]:
    """Of ``names``, the hosts that run an older image of the fleet than ``image``."""
    return [
        c.name
        for c in backend.list_hosts(fleet)
        if c.name in names and image not in (c.image.tags or [])
    ]


def start_hosts(
    fleet: str, image: str, boot: Bootstrap, labels: Sequence[str], count: int
) -> list[str]:
    """Start ``count`` hosts from ``image``, in parallel; returns their names. If one fails
    to start, all of them are removed and its error raised."""
    names = [new_host_name(fleet) for _ in range(count)]
    label_values = {backend.LABEL_RUNNER_LABELS: ",".join(labels)}

    def start_one(name: str) -> None:
        spec = backend.HostSpec(
            name=name,
            fleet=fleet,
            image=image,
            preload_dir=boot.images.preload_dir,
            labels=label_values,
        )
        # boot.yml waits for what is still starting (the preloaded images).
        container = backend.start_host(spec, boot.engine.cgroup_version)
        backend.wait_until_booted(container, late_boot=False)

    with ThreadPoolExecutor(max_workers=min(8, max(1, count))) as pool:
        errors = [f.exception() for f in [pool.submit(start_one, n) for n in names]]
    failed = [e for e in errors if e is not None]
    if failed:
        for name in names:
            remove_host(fleet, name)
        raise failed[0]
    return names


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
