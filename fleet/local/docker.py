"""Runner hosts as privileged systemd containers on the local Docker engine.

Everything this backend creates carries Docker labels: the fleet is found by its
labels (never by name patterns), and ``remove_fleet`` deletes exactly that. The
fleet's state *is* these labels plus what each host reports when asked
(``probe_host``); nothing is kept in a file.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
from docker.models.containers import Container
from docker.models.images import Image
from docker.types import Mount

from fleet.errors import FleetError
from fleet.local.engine.engine import client
from fleet.local.observe import HostProbe, parse_probe

LABEL_MANAGED = "dev.fleet.managed"
LABEL_FLEET = "dev.fleet.name"
LABEL_KIND = "dev.fleet.kind"
LABEL_HOST = "dev.fleet.host"
LABEL_BAKE = "dev.fleet.bake"
LABEL_RUNNER_LABELS = "dev.fleet.labels"
KIND_HOST = "runner-host"
KIND_BAKE_HOST = "bake-host"
KIND_IMAGE = "baked-image"
KIND_VOLUME = "docker-volume"
KIND_NETWORK = "network"
BAKED_REPOSITORY = "fleet/baked"
PRELOAD_MOUNT = "/var/cache/fleet/preload"
# On the host's /run (a tmpfs): written once the boot part has run, gone if the
# container is restarted (a restarted host is not trusted to be ready again).
BOOTED_MARKER = "/run/fleet/booted"
RUNNER_UNIT = "actions-runner.service"
# The variables a baked image was made with, inside the image (root only): commands that
# add hosts or check them later expect exactly what the bake configured.
BAKE_VARS_PATH = "/etc/fleet/bake-vars.json"
SYSTEMD_WAIT_SECONDS = 90

# One exec per host and cycle: the runner unit's state, whether a job's worker runs,
# and whether the boot part finished. "[R]" keeps pgrep from matching this shell.
PROBE_SCRIPT = (
    f"systemctl show {RUNNER_UNIT} --property=ActiveState,SubState,"
    "ExecMainStartTimestampMonotonic,ExecMainStatus; "
    "if pgrep -f '[R]unner[.]Worker' >/dev/null; then echo Worker=yes; else echo Worker=no; fi; "
    f"if test -e {BOOTED_MARKER}; then echo Booted=yes; else echo Booted=no; fi"
)


@dataclass(frozen=True)
class HostSpec:
    """What one runner-host container is made of."""

    name: str
    fleet: str
    image: str
    preload_dir: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)
    kind: str = KIND_HOST


def fleet_labels(fleet: str, kind: str) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_FLEET: fleet, LABEL_KIND: kind}


def _filters(fleet: str, kind: str | None = None) -> dict[str, list[str]]:
    labels = [f"{LABEL_MANAGED}=true", f"{LABEL_FLEET}={fleet}"]
    if kind is not None:
        labels.append(f"{LABEL_KIND}={kind}")
    return {"label": labels}


def network_name(fleet: str) -> str:
    return f"fleet-{fleet}"


def ensure_network(fleet: str) -> str:
    """The fleet's own bridge network, so fleets do not see each other's hosts."""
    docker_client = client()
    existing = docker_client.networks.list(filters=_filters(fleet, KIND_NETWORK))
    if existing:
        return existing[0].name
    network = docker_client.networks.create(
        network_name(fleet), driver="bridge", labels=fleet_labels(fleet, KIND_NETWORK)
    )
    return network.name


def network_gateway(fleet: str) -> str:
    """IP address of this machine on the fleet's network (hosts reach it there)."""
    networks = client().networks.list(filters=_filters(fleet, KIND_NETWORK))
    if not networks:
        raise FleetError(f"fleet {fleet!r} has no network", hint="run `python -m fleet up` first")
    networks[0].reload()
    for config in networks[0].attrs.get("IPAM", {}).get("Config") or []:
        if config.get("Gateway"):
            return config["Gateway"]
    raise FleetError(f"network {networks[0].name} has no gateway address")


def bind(source: str, target: str, *, read_only: bool = False) -> Mount:
    """A bind mount given as a mount, not a volume: ``docker commit`` of a container started
    with ``volumes=`` records each target as a VOLUME of the new image, and every container
    of that image then gets an anonymous volume there that outlives it."""
    return Mount(target=target, source=source, type="bind", read_only=read_only)


def _cgroup_options(cgroup_version: str) -> dict:
    # cgroup v1 hosts: systemd needs the host hierarchy writable; v2 hosts: a private
    # cgroup namespace is enough (the engine mounts it read-write for privileged).
    if cgroup_version == "2":
        return {"cgroupns": "private"}
    return {"cgroupns": "host", "mounts": [bind("/sys/fs/cgroup", "/sys/fs/cgroup")]}


def start_host(spec: HostSpec, cgroup_version: str) -> Container:
    """Create the host's Docker volume and start its container (systemd as PID 1)."""
    docker_client = client()
    network = ensure_network(spec.fleet)
    volume = docker_client.volumes.create(
        name=f"{spec.name}-docker",
        labels={**fleet_labels(spec.fleet, KIND_VOLUME), LABEL_HOST: spec.name},
    )
    options = _cgroup_options(cgroup_version)
    mounts = [*options.pop("mounts", []), Mount(target="/var/lib/docker", source=volume.name)]
    if spec.preload_dir is not None:
        mounts.append(bind(str(spec.preload_dir), PRELOAD_MOUNT, read_only=True))
    try:
        return docker_client.containers.run(
            spec.image,
            name=spec.name,
            hostname=spec.name,
            detach=True,
            privileged=True,
            tmpfs={"/run": "rw,mode=755", "/run/lock": "rw"},
            mounts=mounts,
            network=network,
            # Explicit labels win over those a baked image carries.
            labels={**spec.labels, **fleet_labels(spec.fleet, spec.kind)},
            **options,
        )
    except docker.errors.APIError as exc:
        volume.remove(force=True)
        raise FleetError(
            f"could not start runner host {spec.name}: {exc.explanation or exc}",
            hint="run `python -m fleet bootstrap` to check the engine can start privileged "
            "containers, and `docker ps -a` for a name clash",
        ) from exc


def wait_until_booted(
    container: Container, seconds: int = SYSTEMD_WAIT_SECONDS, *, late_boot: bool = True
) -> str:
    """Wait for systemd in the host to finish booting; returns its state.

    ``late_boot=False`` returns as soon as basic.target is reached (state ``starting``):
    systemd and its units can be driven from then on, and what is still starting (a host
    loading its preloaded images) goes on while the caller converges it.
    """
    ready = ("running", "degraded") if late_boot else ("starting", "running", "degraded")
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
        if state in ready:
            return state
        time.sleep(0.5)
    raise FleetError(
        f"systemd in {container.name} did not finish booting in {seconds} s (state {state})",
        hint=f"docker exec {container.name} systemctl list-jobs",
    )


def list_hosts(fleet: str) -> list[Container]:
    """The fleet's runner hosts (any state), oldest first."""
    # ignore_removed: a host removed between the engine's list and docker-py's inspect of it
    # (serve retiring one while `status` looks) is left out instead of failing the list.
    hosts = client().containers.list(
        all=True, filters=_filters(fleet, KIND_HOST), ignore_removed=True
    )
    return sorted(hosts, key=lambda c: (c.attrs.get("Created", ""), c.name))


def probe_host(container: Container) -> HostProbe:
    """Ask a host what its runner is doing (one exec); a stopped host answers nothing."""
    try:
        container.reload()
    except docker.errors.NotFound:
        return HostProbe(running=False)  # removed since it was listed
    if container.status != "running":
        return HostProbe(running=False)
    try:
        result = container.exec_run(["sh", "-c", PROBE_SCRIPT])
    except docker.errors.APIError:
        return HostProbe(running=False)
    return parse_probe(result.output.decode(errors="replace"))


def mark_booted(container: Container) -> None:
    """Record on the host itself that its boot part finished (see BOOTED_MARKER)."""
    marker = Path(BOOTED_MARKER)
    result = container.exec_run(["sh", "-c", f"mkdir -p {marker.parent} && date +%s > {marker}"])
    if result.exit_code != 0:
        raise FleetError(f"could not mark {container.name} booted: {result.output.decode()}")


def remove_host(container: Container) -> None:
    """Remove one host and its Docker volume."""
    labels = container.labels
    name = container.name
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True, v=True)
    if labels.get(LABEL_MANAGED) == "true":
        _remove_volumes_of(labels.get(LABEL_FLEET, ""), name)


def _remove_volumes_of(fleet: str, host: str) -> int:
    removed = 0
    for volume in client().volumes.list(filters={"label": [f"{LABEL_HOST}={host}"]}):
        if volume.attrs.get("Labels", {}).get(LABEL_FLEET) != fleet:
            continue
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)
            removed += 1
    return removed


def remove_orphan_volumes(fleet: str) -> list[str]:
    """Data volumes whose host container is gone (removed from outside): delete them."""
    listed = client().containers.list(all=True, filters=_filters(fleet), ignore_removed=True)
    hosts = {c.name for c in listed}
    orphans = []
    for volume in client().volumes.list(filters=_filters(fleet, KIND_VOLUME)):
        host = volume.attrs.get("Labels", {}).get(LABEL_HOST)
        if host and host not in hosts:
            try:
                volume.remove(force=True)
                orphans.append(volume.name)
            except docker.errors.APIError:
                pass  # still in use by a container being created right now
    return orphans


# --- baked images -----------------------------------------------------------------------


def baked_tag(fleet: str, bake_hash: str) -> str:
    return f"{BAKED_REPOSITORY}-{fleet}:{bake_hash}"


def baked_images(fleet: str) -> list[Image]:
    """The fleet's baked images, newest first."""
    images = client().images.list(filters=_filters(fleet, KIND_IMAGE))
    return sorted(images, key=lambda i: i.attrs.get("Created", ""), reverse=True)


def find_baked_image(fleet: str, bake_hash: str | None = None) -> str | None:
    """Tag of the fleet's baked image for ``bake_hash`` (None: the newest), if any."""
    for image in baked_images(fleet):
        if bake_hash is None or image.labels.get(LABEL_BAKE) == bake_hash:
            tags = image.tags or []
            return tags[0] if tags else image.id
    return None


def commit_baked_image(container: Container, fleet: str, bake_hash: str) -> str:
    """``docker commit`` a converged host as the fleet's image, labelled with its bake hash."""
    tag = baked_tag(fleet, bake_hash)
    repository, _, version = tag.rpartition(":")
    labels = {**fleet_labels(fleet, KIND_IMAGE), LABEL_BAKE: bake_hash}
    changes = [f'LABEL {key}="{value}"' for key, value in labels.items()]
    try:
        container.commit(repository=repository, tag=version, changes=changes)
    except docker.errors.APIError as exc:
        raise FleetError(
            f"could not commit {container.name} as {tag}: {exc.explanation or exc}",
            hint="check free disk space on the engine's data root (`docker system df`)",
        ) from exc
    return tag


def write_bake_vars(container: Container, variables: dict) -> None:
    """Store the bake's variables in the host about to be committed (root only)."""
    data = json.dumps(variables, sort_keys=True).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(Path(BAKE_VARS_PATH).name)
        info.size, info.mode = len(data), 0o600
        tar.addfile(info, io.BytesIO(data))
    parent = str(Path(BAKE_VARS_PATH).parent)
    container.exec_run(["install", "-d", "-m", "0700", parent])
    if not container.put_archive(parent, archive.getvalue()):
        raise FleetError(f"could not write {BAKE_VARS_PATH} into {container.name}")


def read_bake_vars(image: str) -> dict:
    """The variables ``image`` was baked with (read from a created, never started, container)."""
    container = client().containers.create(image, command=["true"], labels={LABEL_MANAGED: "false"})
    try:
        stream, _ = container.get_archive(BAKE_VARS_PATH)
        archive = io.BytesIO(b"".join(stream))
    except docker.errors.NotFound as exc:
        raise FleetError(
            f"{image} does not say which variables it was baked with",
            hint="run `python -m fleet up` again to re-bake it",
        ) from exc
    finally:
        container.remove(force=True, v=True)
    with tarfile.open(fileobj=archive) as tar:
        member = tar.extractfile(Path(BAKE_VARS_PATH).name)
        if member is None:
            raise FleetError(f"{BAKE_VARS_PATH} in {image} is not a file")
        return json.loads(member.read())


def remove_stale_baked_images(fleet: str, keep: str) -> list[str]:
    """Older baked images of this fleet that no container uses any more."""
    removed = []
    for image in baked_images(fleet):
        if keep in (image.tags or []):
            continue
        try:
            client().images.remove(image.id, force=False)
            removed.append((image.tags or [image.id])[0])
        except docker.errors.APIError:
            pass  # a host still runs from it; `down` removes it later
    return removed


def remove_fleet(fleet: str) -> dict[str, int]:
    """Delete every container, volume, network and image labelled as this fleet's."""
    docker_client = client()
    removed = {"containers": 0, "volumes": 0, "networks": 0, "images": 0}
    listed = docker_client.containers.list(all=True, filters=_filters(fleet), ignore_removed=True)
    for container in listed:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            continue
        removed["containers"] += 1
    for volume in docker_client.volumes.list(filters=_filters(fleet)):
        volume.remove(force=True)
        removed["volumes"] += 1
    for network in docker_client.networks.list(filters=_filters(fleet)):
        network.remove()
        removed["networks"] += 1
    for image in docker_client.images.list(filters=_filters(fleet)):
        # Only the fleet's own images carry its labels (the base image does not).
        docker_client.images.remove(image.id, force=True)
        removed["images"] += 1
    return removed
