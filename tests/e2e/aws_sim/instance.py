"""Simulated EC2 instances: privileged systemd containers booted by cloud-init's NoCloud.

``cloud_image`` builds the "official Debian 13 cloud image" (cloud-image.Dockerfile) once per
recipe. ``SimInstance.launch`` creates one instance: the NoCloud seed holds the user data the
Pulumi program rendered and the instance id; a loop device of the configured size is the
EBS Docker volume at the launch template's device name; a test-only systemd drop-in points
the instance's AWS calls at moto (``AWS_ENDPOINT_URL``). ``commit`` makes an "AMI" of an
instance, as an image pipeline would snapshot a baked one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
from docker.models.containers import Container
from docker.types import Mount

from fleet.local import docker as backend
from fleet.local.engine.engine import client

HERE = Path(__file__).resolve().parent
CLOUD_REPOSITORY = "fleet/sim-debian-cloud"
RECIPE_LABEL = "dev.fleet.recipe"
MACHINE_CA_DIR = Path("/usr/local/share/ca-certificates")
# Named as test-only: the real instance reaches AWS at its regional endpoints.
ENDPOINT_DROP_IN = "/etc/systemd/system.conf.d/90-simulation-aws-endpoint.conf"
SEED_DIR = "var/lib/cloud/seed/nocloud"


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cloud_image(base: str, report: Callable[[str], None] = print) -> str:
    """The cloud image on top of ``base``, built once per recipe (Dockerfile, CA certs)."""
    files = {
        "Dockerfile": ((HERE / "cloud-image.Dockerfile").read_bytes(), 0o644),
        "90-simulation.cfg": ((HERE / "90-simulation.cfg").read_bytes(), 0o644),
    }
    for cert in sorted(MACHINE_CA_DIR.rglob("*.crt")):
        files[f"machine-ca/{cert.name}"] = (cert.read_bytes(), 0o644)
    if not any(name.startswith("machine-ca/") for name in files):
        files["machine-ca/.none"] = (b"", 0o644)  # COPY needs the directory
    digest = hashlib.sha256(base.encode())
    for name, (data, _) in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    recipe = digest.hexdigest()[:12]
    tag = f"{CLOUD_REPOSITORY}:trixie-{recipe}"
    try:
        if client().images.get(tag).labels.get(RECIPE_LABEL) == recipe:
            return tag
    except docker.errors.ImageNotFound:
        pass
    report(f"building {tag} (cloud-init, curl, CA certificates)")
    client().images.build(
        fileobj=io.BytesIO(_tar(files)),
        custom_context=True,
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        labels={RECIPE_LABEL: recipe},
        rm=True,
        forcerm=True,
    )
    return tag


@dataclass
class LoopVolume:
    """A sparse file attached to a loop device: the instance's EBS Docker volume."""

    path: Path
    size_gib: int
    device: str = ""

    def attach(self) -> str:
        with self.path.open("wb") as handle:
            handle.truncate(self.size_gib * 1024**3)
        self.device = subprocess.run(
            ["losetup", "--find", "--show", str(self.path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return self.device

    def detach(self) -> None:
        if self.device:
            subprocess.run(["losetup", "--detach", self.device], check=False)
            self.device = ""
        self.path.unlink(missing_ok=True)


@dataclass
class SimInstance:
    """One simulated EC2 instance (see the module docstring)."""

    instance_id: str
    fleet: str
    image: str
    ip: str
    network: str
    user_data: str
    endpoint_url: str
    volume: LoopVolume
    device_name: str
    cgroup_version: str
    extra_mounts: list[Mount] = field(default_factory=list)
    container: Container | None = None

    @property
    def name(self) -> str:
        return f"{self.fleet}-{self.instance_id}"

    def launch(self) -> SimInstance:
        device = self.volume.attach()
        options = backend._cgroup_options(self.cgroup_version)
        mounts = [*options.pop("mounts", []), *self.extra_mounts]
        container = client().containers.create(
            self.image,
            name=self.name,
            hostname=f"ip-{self.ip.replace('.', '-')}",
            detach=True,
            privileged=True,
            tmpfs={"/run": "rw,mode=755", "/run/lock": "rw"},
            mounts=mounts,
            devices=[f"{device}:{self.device_name}:rwm"],
            network=None,
            network_disabled=False,
            labels=backend.fleet_labels(self.fleet, "sim-instance"),
            **options,
        )
        self.container = container
        # The network with this instance's fixed address, so the fake IMDS knows it.
        client().networks.get("bridge").disconnect(container)
        client().networks.get(self.network).connect(container, ipv4_address=self.ip)
        hostname = container.attrs["Config"]["Hostname"]
        meta_data = f"instance-id: {self.instance_id}\nlocal-hostname: {hostname}\n"
        drop_in = f"[Manager]\nDefaultEnvironment=AWS_ENDPOINT_URL={self.endpoint_url}\n"
        container.put_archive(
            "/",
            _tar(
                {
                    f"{SEED_DIR}/user-data": (self.user_data.encode(), 0o600),
                    f"{SEED_DIR}/meta-data": (meta_data.encode(), 0o600),
                    ENDPOINT_DROP_IN.lstrip("/"): (drop_in.encode(), 0o644),
                }
            ),
        )
        container.start()
        return self

    # -- what a test reads --------------------------------------------------------------

    def running(self) -> bool:
        if self.container is None:
            return False
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return False
        return self.container.status == "running"

    def shell(self, command: str, user: str = "root") -> tuple[int, str]:
        assert self.container is not None
        result = self.container.exec_run(["sh", "-c", command], user=user)
        return result.exit_code, result.output.decode(errors="replace")

    @property
    def hostname(self) -> str:
        assert self.container is not None
        return str(self.container.attrs["Config"]["Hostname"])

    def journal(self, unit: str | None = None) -> str:
        """This instance's journal (all its boots; an image made from another instance
        carries that one's journal too, under its own host name)."""
        selector = f"-u {unit}" if unit else ""
        return self.shell(
            f"journalctl --no-pager -o short-iso-precise _HOSTNAME={self.hostname} {selector} 2>&1"
        )[1]

    def boot_log(self) -> str:
        """runner-bootstrap's and runner-terminate-self's lines and the boot unit's output,
        with their timestamps (all of this instance's boots)."""
        return self.shell(
            f"journalctl --no-pager -o short-iso-precise _HOSTNAME={self.hostname} "
            "-t runner-bootstrap -t runner-terminate-self 2>&1"
        )[1]

    # -- what AWS does ------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the instance (the warm pool's Stopped state): systemd shuts down."""
        assert self.container is not None
        self.container.stop(timeout=60)

    def start(self) -> None:
        """Start a stopped instance: a second boot of the same disk."""
        assert self.container is not None
        self.container.start()

    def reboot(self) -> None:
        assert self.container is not None
        self.container.restart(timeout=30)

    def commit(self, repository: str, tag: str) -> str:
        """An "AMI" of this instance's root disk (the Docker volume is not part of it)."""
        assert self.container is not None
        # The container's own config (CMD /sbin/init, stop signal, labels) goes with it.
        image = self.container.commit(repository=repository, tag=tag)
        return image.tags[0] if image.tags else image.id

    def terminate(self) -> None:
        """EC2 terminates the instance: the VM and its volumes go (delete on termination)."""
        if self.container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                self.container.remove(force=True, v=True)
        self.volume.detach()
