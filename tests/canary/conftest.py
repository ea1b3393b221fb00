"""Fixtures of the canary: the suite every runner must pass, run as the runner user.

Run it the way a job would: ``pytest -n auto --dist=worksteal /opt/fleet/canary``. It uses
the host's Docker engine through testcontainers and works without a registry (see
canary_images).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import canary_env
import canary_images
import docker
import pytest

canary_env.configure()  # must run before anything imports testcontainers

from canary_dind import busybox_image_tar  # noqa: E402
from canary_postgres import (  # noqa: E402
    PostgresContainer,
    WorkerDatabase,
    connect,
    postgres_container,
)

BUSYBOX_ENV = "FLEET_CANARY_BUSYBOX"
BUSYBOX_REPOSITORY = "fleet-canary/busybox"
MAX_AUTO_WORKERS = 4


def pytest_configure(config: pytest.Config) -> None:
    """Tell the workers how the controller distributes tests (a worker's own ``--dist`` is
    always ``no``); they inherit the environment when xdist starts them."""
    if not hasattr(config, "workerinput"):
        os.environ[canary_env.DIST_ENV] = str(config.getoption("dist", "no"))


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # xdist may be off (-p no:xdist)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` means at least two workers (isolation needs two) and at most four,
    unless PYTEST_XDIST_AUTO_NUM_WORKERS says otherwise."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return max(2, min(MAX_AUTO_WORKERS, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_image(docker_client: docker.DockerClient) -> str:
    return canary_images.ensure_image(docker_client, canary_images.POSTGRES)


@pytest.fixture(scope="session")
def dind_image(docker_client: docker.DockerClient) -> str:
    return canary_images.ensure_image(docker_client, canary_images.DIND)


@pytest.fixture(scope="session")
def busybox_binary() -> Path:
    """A static busybox (Debian's busybox-static on runner hosts) to build a tiny image from."""
    configured = os.environ.get(BUSYBOX_ENV)
    path = Path(configured or shutil.which("busybox") or "/bin/busybox")
    assert path.is_file(), (
        f"no busybox at {path}: install busybox-static (the test_toolchain role does) "
        f"or set {BUSYBOX_ENV}"
    )
    return path


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient, busybox_binary: Path) -> str:
    """A busybox-only image on the host's engine, imported once (no registry needed)."""
    data = busybox_image_tar(busybox_binary)
    tag = hashlib.sha256(data).hexdigest()[:12]
    with canary_images.build_lock(BUSYBOX_REPOSITORY):
        if not canary_images.has_image(docker_client, f"{BUSYBOX_REPOSITORY}:{tag}"):
            docker_client.api.import_image_from_data(data, repository=BUSYBOX_REPOSITORY, tag=tag)
    return f"{BUSYBOX_REPOSITORY}:{tag}"


@pytest.fixture(scope="session")
def worker_id() -> str:
    """xdist's worker id (``gw0``...), or ``master`` without workers; defined here because
    xdist's own fixture is missing when xdist is off (the perf set runs with -p no:xdist)."""
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A directory shared by all workers of this run (each worker's basetemp is inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session", autouse=True)
def worker_database(
    request: pytest.FixtureRequest, run_dir: Path, worker_id: str
) -> Iterator[tuple[WorkerDatabase, PostgresContainer] | None]:
    """Every worker starts its own PostgreSQL, tags a row with its id and records where it is.

    Autouse, so every worker that runs any test has one: the isolation check compares them.
    A run of the performance set alone (``-m perf``) starts none: an idle database beside
    the benchmarks would only cost their time.
    """
    if request.session.items and all(i.get_closest_marker("perf") for i in request.session.items):
        yield None
        return
    postgres_image = request.getfixturevalue("postgres_image")
    with postgres_container(postgres_image) as container:
        with connect(container) as conn:
            conn.execute("CREATE TABLE owner (worker text NOT NULL)")
            conn.execute("INSERT INTO owner (worker) VALUES (%s)", (worker_id,))
        record = WorkerDatabase(
            worker=worker_id,
            container_id=container.get_wrapped_container().id,
            host=container.get_container_host_ip(),
            port=container.get_exposed_port(5432),
        )
        records = run_dir / "canary-workers"
        records.mkdir(exist_ok=True)
        partial = records / f".{worker_id}.json"
        partial.write_text(json.dumps(asdict(record)))
        partial.rename(records / f"{worker_id}.json")  # readers never see half a record
        yield record, container
