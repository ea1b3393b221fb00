"""Docker-in-Docker as a privileged service container, the way jobs run `docker:dind`.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests
from canary_dind import (
    PLAIN_PORT,
    TLS_PORT,
    TlsDindContainer,
    api_client,
    busybox_image_tar,
    server_names,
)
from canary_tls import TlsFiles, make_tls_files

GREETING = "hello from the nested engine"
# What TLS 1.3 (or 1.2) alerts say when the server requires a client certificate.
CLIENT_CERT_REFUSED = r"alert (certificate required|bad certificate|handshake failure)"


def _tls_files(directory: Path, client: docker.DockerClient) -> TlsFiles:
    return make_tls_files(directory, server_names(client))


@pytest.fixture(scope="module")
def dind(
    dind_image: str, docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsDindContainer]:
    tls = _tls_files(tmp_path_factory.mktemp("dind-tls"), docker_client)
    with TlsDindContainer(dind_image, tls) as container:
        yield container


@pytest.fixture(scope="module")
def dind_client(dind: TlsDindContainer) -> Iterator[docker.DockerClient]:
    client = dind.tls_client()
    yield client
    client.close()


def test_dind_runs_a_container_from_a_locally_imported_image(
    dind_client: docker.DockerClient, busybox_binary: Path
) -> None:
    """Over TLS, import a busybox-only image into the nested engine and run it."""
    dind_client.api.import_image_from_data(
        busybox_image_tar(busybox_binary), repository="canary/busybox", tag="1"
    )
    output = dind_client.containers.run(
        "canary/busybox:1", ["/bin/busybox", "echo", GREETING], remove=True
    )
    assert output.decode().strip() == GREETING


def test_dind_keeps_its_data_on_a_volume_with_overlay2(
    dind: TlsDindContainer, dind_client: docker.DockerClient
) -> None:
    """/var/lib/docker of the nested engine is a volume, so it gets overlay2, not vfs."""
    mounts = dind.get_wrapped_container().attrs["Mounts"]
    assert any(m["Type"] == "volume" and m["Destination"] == "/var/lib/docker" for m in mounts)
    info = dind_client.info()
    assert info["DockerRootDir"] == "/var/lib/docker"
    assert info["Driver"] == "overlay2"


def test_dind_plain_port_2375_is_closed(dind: TlsDindContainer) -> None:
    """Property 20: nothing answers on the plain-text Docker port of a DinD daemon."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dind.bridge_ip(), PLAIN_PORT), timeout=5).close()


def test_dind_rejects_a_plain_http_client_on_2376(dind: TlsDindContainer) -> None:
    """Property 20: the TCP API speaks TLS only; a client without TLS gets no API."""
    host, port = dind.get_container_host_ip(), dind.get_exposed_port(TLS_PORT)
    plain = api_client(f"tcp://{host}:{port}")
    with pytest.raises(docker.errors.APIError, match="HTTP request to an HTTPS server"):
        plain.version()
    plain.close()


def test_dind_rejects_a_tls_client_without_a_certificate(
    dind: TlsDindContainer, tmp_path: Path
) -> None:
    """Property 20: TLS alone is not enough, the daemon requires a client certificate."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(dind.tls.ca.read_bytes())
    anonymous = api_client(dind.tls_url(), docker.tls.TLSConfig(ca_cert=str(ca), verify=str(ca)))
    # The daemon verifies fine (our CA); it is the missing client certificate that is refused.
    with pytest.raises(requests.exceptions.SSLError, match=CLIENT_CERT_REFUSED):
        anonymous.version()
    anonymous.close()


def test_removing_the_dind_container_leaves_no_anonymous_volume(
    dind_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Property 23: the nested engine's /var/lib/docker volume goes away with the container."""
    with TlsDindContainer(dind_image, _tls_files(tmp_path, docker_client)) as container:
        volumes = container.volume_names()
        client = container.tls_client()
        assert client.ping()
        client.close()
    assert volumes, "the DinD container had no volume for /var/lib/docker"
    for name in volumes:
        with pytest.raises(docker.errors.NotFound):
            docker_client.volumes.get(name)
