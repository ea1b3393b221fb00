"""Runner hosts as privileged systemd containers on the local Docker engine.

Everything this backend creates carries Docker labels: the fleet is found by its
labels (never by name patterns), and ``remove_fleet`` deletes exactly that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
from docker.models.containers import Container

from fleet.engine.engine import client
from fleet.errors import FleetError

LABEL_MANAGED = "dev.fleet.managed"
LABEL_FLEET = "dev.fleet.name"
LABEL_KIND = "dev.fleet.kind"
PRELOAD_MOUNT = "/var/cache/fleet/preload"
SYSTEMD_WAIT_SECONDS = 90


@dataclass(frozen=True)
class HostSpec:
    """What one runner-host container is made of."""

    name: str
    fleet: str
    image: str
    preload_dir: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)


def fleet_labels(fleet: str, kind: str) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_FLEET: fleet, LABEL_KIND: kind}


def _filters(fleet: str, kind: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_FLEET}={fleet}", f"{LABEL_KIND}={kind}"]}


def network_name(fleet: str) -> str:
    return f"fleet-{fleet}"


def ensure_network(fleet: str) -> str:
    """The fleet's own bridge network, so fleets do not see each other's hosts."""
    docker_client = client()
    existing = docker_client.networks.list(filters=_filters(fleet, "network"))
    if existing:
        return existing[0].name
    network = docker_client.networks.create(
        network_name(fleet), driver="bridge", labels=fleet_labels(fleet, "network")
    )
    return network.name


def network_gateway(fleet: str) -> str:
    """IP address of this machine on the fleet's network (hosts reach it there)."""
    networks = client().networks.list(filters=_filters(fleet, "network"))
    if not networks:
        raise FleetError(f"fleet {fleet!r} has no network", hint="run `python -m fleet up` first")
    networks[0].reload()
    for config in networks[0].attrs.get("IPAM", {}).get("Config") or []:
        if config.get("Gateway"):
            return config["Gateway"]
    raise FleetError(f"network {networks[0].name} has no gateway address")


def _cgroup_options(cgroup_version: str) -> dict:
    # cgroup v1 hosts: systemd needs the host hierarchy writable; v2 hosts: a private
    # cgroup namespace is enough (the engine mounts it read-write for privileged).
    if cgroup_version == "2":
        return {"cgroupns": "private"}
    return {
        "cgroupns": "host",
        "volumes": {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
    }


def start_host(spec: HostSpec, cgroup_version: str) -> Container:
    """Create the host's Docker volume and start its container (systemd as PID 1)."""
    docker_client = client()
    network = ensure_network(spec.fleet)
    volume = docker_client.volumes.create(
        name=f"{spec.name}-docker",
        labels={**fleet_labels(spec.fleet, "docker-volume"), "dev.fleet.host": spec.name},
    )
    options = _cgroup_options(cgroup_version)
    volumes = dict(options.pop("volumes", {}))
    volumes[volume.name] = {"bind": "/var/lib/docker", "mode": "rw"}
    if spec.preload_dir is not None:
        volumes[str(spec.preload_dir)] = {"bind": PRELOAD_MOUNT, "mode": "ro"}
    try:
        return docker_client.containers.run(
            spec.image,
            name=spec.name,
            hostname=spec.name,
            detach=True,
            privileged=True,
            tmpfs={"/run": "rw,mode=755", "/run/lock": "rw"},
            volumes=volumes,
            network=network,
            labels={**fleet_labels(spec.fleet, "runner-host"), **spec.labels},
            **options,
        )
    except docker.errors.APIError as exc:
        raise FleetError(
            f"could not start runner host {spec.name}: {exc.explanation or exc}",
            hint="run `python -m fleet bootstrap` to check the engine can start privileged "
            "containers, and `docker ps -a` for a name clash",
        ) from exc


def wait_until_booted(container: Container, seconds: int = SYSTEMD_WAIT_SECONDS) -> str:
    """Wait for systemd in the host to finish booting; returns its state."""
    deadline = time.monotonic() + seconds
    state = "unknown"
    while time.monotonic() < deadline:
        container.reload()
        if container.status != "running":
            raise FleetError(
                f"runner host {container.name} stopped while booting: "
                f"{container.logs(tail=20).decode(errors='replace')}",
                hint="systemd needs a privileged container with the host's cgroups mounted",
            )
        result = container.exec_run(["systemctl", "is-system-running"])
        state = result.output.decode().strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    raise FleetError(
        f"systemd in {container.name} did not finish booting in {seconds} s (state {state})",
        hint=f"docker exec {container.name} systemctl list-jobs",
    )


def list_hosts(fleet: str) -> list[Container]:
    return client().containers.list(all=True, filters=_filters(fleet, "runner-host"))


def remove_host(container: Container) -> None:
    """Remove one host and its Docker volume."""
    labels = container.labels
    name = container.name
    container.remove(force=True, v=True)
    if labels.get(LABEL_MANAGED) == "true":
        for volume in client().volumes.list(filters={"label": [f"dev.fleet.host={name}"]}):
            volume.remove(force=True)


def remove_fleet(fleet: str) -> dict[str, int]:
    """Delete every container, volume and network labelled as this fleet's."""
    docker_client = client()
    removed = {"containers": 0, "volumes": 0, "networks": 0}
    for container in docker_client.containers.list(
        all=True, filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_FLEET}={fleet}"]}
    ):
        container.remove(force=True, v=True)
        removed["containers"] += 1
    for volume in docker_client.volumes.list(
        filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_FLEET}={fleet}"]}
    ):
        volume.remove(force=True)
        removed["volumes"] += 1
    for network in docker_client.networks.list(
        filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_FLEET}={fleet}"]}
    ):
        network.remove()
        removed["networks"] += 1
    return removed
