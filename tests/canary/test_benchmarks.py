"""The runner's performance baseline: CPU, disk write, container start, DinD start.

pytest-benchmark times each; `tests/runner` runs this set on its own, without xdist
(pytest-benchmark turns itself off under xdist) and after the canary, as:

    pytest -p no:xdist -m perf --benchmark-json=FILE /opt/fleet/canary

Nothing here asserts a time: the figures are compared with the fleet's baseline by
`python -m fleet validate` (fleet.core.benchmarks), against configured margins.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from canary_dind import TlsDindContainer, busybox_image_tar, server_names
from canary_tls import make_tls_files

pytestmark = pytest.mark.perf

# Each round must outlast a CFS period (100 ms) for a CPU quota to show in the median:
# 64 MiB is about 150 ms of SHA-256 on one core of today's machines.
CPU_BYTES = 64 * 1024 * 1024
CPU_ROUNDS = 5
DISK_BYTES = 16 * 1024 * 1024
BUSYBOX_IMAGE = "canary/busybox:perf"


def test_cpu_sha256(benchmark) -> None:
    """Hash 64 MiB with SHA-256 in one thread (a throttled CPU shows here first)."""
    data = os.urandom(CPU_BYTES)
    digest = benchmark.pedantic(
        lambda: hashlib.sha256(data).hexdigest(), rounds=CPU_ROUNDS, iterations=1
    )
    assert len(digest) == 64


def test_disk_write_fsync(benchmark, tmp_path: Path) -> None:
    """Write 16 MiB and fsync it, where the suite's temporary files go."""
    block = os.urandom(1024 * 1024)
    target = tmp_path / "disk-write.bin"

    def write() -> int:
        with target.open("wb") as handle:
            for _ in range(DISK_BYTES // len(block)):
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        return target.stat().st_size

    assert benchmark.pedantic(write, rounds=5, iterations=1) == DISK_BYTES


@pytest.fixture(scope="module")
def busybox_image(docker_client: docker.DockerClient, busybox_binary: Path) -> Iterator[str]:
    """A busybox-only image imported from the host's static busybox (no registry needed)."""
    repository, tag = BUSYBOX_IMAGE.split(":")
    docker_client.api.import_image_from_data(
        busybox_image_tar(busybox_binary), repository=repository, tag=tag
    )
    yield BUSYBOX_IMAGE
    docker_client.images.remove(BUSYBOX_IMAGE, force=True)


def test_container_start(benchmark, docker_client: docker.DockerClient, busybox_image: str):
    """Create, start, wait for and remove a container that runs `true`."""

    def run() -> bytes:
        return docker_client.containers.run(busybox_image, ["/bin/busybox", "true"], remove=True)

    assert benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1) == b""


def test_dind_start(
    benchmark,
    dind_image: str,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Start a privileged DinD service until its TLS API answers, then remove it."""
    tls = make_tls_files(tmp_path_factory.mktemp("perf-tls"), server_names(docker_client))

    def start() -> bool:
        with TlsDindContainer(dind_image, tls) as container:
            client = container.tls_client()
            answered = client.ping()
            client.close()
        return answered

    assert benchmark.pedantic(start, rounds=2, iterations=1) is True
