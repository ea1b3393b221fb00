"""A privileged DinD service container that serves the Docker API over TLS only (2376)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import docker
from canary_tls import TlsFiles
from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import DockerClient as ContainersClient
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

TLS_PORT = 2376
PLAIN_PORT = 2375
CERT_DIR = "/certs"
DIND_COMMAND = [
    "dockerd",
    "--host=unix:///var/run/docker.sock",
    f"--host=tcp://0.0.0.0:{TLS_PORT}",
    "--tlsverify",
    f"--tlscacert={CERT_DIR}/ca.pem",
    f"--tlscert={CERT_DIR}/server-cert.pem",
    f"--tlskey={CERT_DIR}/server-key.pem",
]
STARTUP_SECONDS = 120
# Every engine from Docker 20.10 on speaks it; a fixed version spares a round trip before
# the client is set up (see api_client).
API_VERSION = "1.41"


def tar_of(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """An uncompressed tar holding ``files`` (path inside the tar -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class TlsDindContainer(DockerContainer):
    """dockerd in a privileged container, API on TLS 2376 with client certificates required.

    The certificates are copied in before dockerd starts (no bind mount, so this also works
    when the test's /tmp is private to it). ``/var/lib/docker`` is the image's anonymous
    volume, removed with the container.
    """

    def __init__(self, image: str, tls: TlsFiles) -> None:
        super().__init__(image, privileged=True)
        self._tls = tls
        self.with_exposed_ports(TLS_PORT)
        # The official image would generate its own certificates into DOCKER_TLS_CERTDIR.
        self.with_env("DOCKER_TLS_CERTDIR", "")
        self.with_command(DIND_COMMAND)
        for name, data in tls.server_files().items():
            self.with_copy_into_container(data, f"{CERT_DIR}/{name}", mode=0o600)
        self.waiting_for(
            LogMessageWaitStrategy(rf"API listen on \S*:{TLS_PORT}").with_startup_timeout(
                STARTUP_SECONDS
            )
        )

    @property
    def tls(self) -> TlsFiles:
        return self._tls

    def tls_client(self) -> docker.DockerClient:
        """A docker SDK client that verifies the daemon and presents the client certificate."""
        tls = docker.tls.TLSConfig(
            client_cert=(str(self._tls.client_cert), str(self._tls.client_key)),
            ca_cert=str(self._tls.ca),
            verify=str(self._tls.ca),
        )
        return api_client(self.tls_url(), tls)

    def tls_url(self) -> str:
        return f"https://{self.get_container_host_ip()}:{self.get_exposed_port(TLS_PORT)}"

    def bridge_ip(self) -> str:
        """The container's own address on its Docker network, for probing unpublished ports."""
        container = self.get_wrapped_container()
        container.reload()
        networks = container.attrs["NetworkSettings"]["Networks"]
        return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))

    def volume_names(self) -> list[str]:
        container = self.get_wrapped_container()
        container.reload()
        return [m["Name"] for m in container.attrs["Mounts"] if m.get("Type") == "volume"]


def api_client(base_url: str, tls: docker.tls.TLSConfig | None = None) -> docker.DockerClient:
    """A docker SDK client that trusts only what ``tls`` says.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (common on hosts with an enterprise CA)
    override the session's CA file, which would drop the DinD CA; the client ignores them.
    """
    client = docker.DockerClient(base_url=base_url, tls=tls or False, version=API_VERSION)
    client.api.trust_env = False
    return client


def server_names(client: docker.DockerClient) -> list[str]:
    """Every name a test may reach a published port by: loopback, the engine's host as
    testcontainers sees it, and the gateways of the engine's networks (its gateway mode)."""
    names = ["localhost", "127.0.0.1", "::1", ContainersClient().host()]
    for network in client.networks.list():
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if config.get("Gateway"):
                names.append(config["Gateway"])
    return names


def busybox_image_tar(busybox: Path) -> bytes:
    """A root filesystem with only /bin/busybox: `docker import` turns it into a tiny image."""
    return tar_of({"bin/busybox": busybox.read_bytes()}, mode=0o755)
