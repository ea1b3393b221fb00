"""An API container that answers over HTTP from PostgreSQL, built locally in seconds.

It is built on the PostgreSQL image the canary already has (psql inside) plus the runner's
static busybox as HTTP server: a user's suite would build its own service image the same way
(`docker build` of its Dockerfile), then start it next to its database on one network.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import docker
from canary_images import IMAGES_DIR, RECIPE_LABEL, build_lock, has_image
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import HttpWaitStrategy

API_PORT = 8080
REPOSITORY = "fleet-canary/api"
STARTUP_SECONDS = 60
FILES = ("api.Dockerfile", "api.cgi")


def _context(busybox: Path) -> tuple[io.BytesIO, str]:
    """The build context, and a digest of everything in it."""
    members = {name: (IMAGES_DIR / name).read_bytes() for name in FILES}
    members["busybox"] = busybox.read_bytes()
    digest = hashlib.sha256()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in sorted(members.items()):
            digest.update(b"\0" + name.encode() + b"\0" + data)
            info = tarfile.TarInfo("Dockerfile" if name == "api.Dockerfile" else name)
            info.size, info.mode = len(data), 0o644 if name.endswith("Dockerfile") else 0o755
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    return context, digest.hexdigest()


def ensure_api_image(client: docker.DockerClient, postgres_image: str, busybox: Path) -> str:
    """Build (once per recipe and PostgreSQL image) the API image; its tag."""
    context, digest = _context(busybox)
    base_id = client.images.get(postgres_image).id
    tag = f"{REPOSITORY}:{hashlib.sha256((digest + base_id).encode()).hexdigest()[:12]}"
    with build_lock(REPOSITORY):
        if has_image(client, tag):
            return tag
        client.images.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            buildargs={"POSTGRES_IMAGE": postgres_image},
            labels={RECIPE_LABEL: tag.rsplit(":", 1)[1]},
            rm=True,
            forcerm=True,
        )
    return tag


def api_container(image: str, network: Network, database: dict[str, str]) -> DockerContainer:
    """The API on ``network`` as ``api``, ready once it answers GET /cgi-bin/visits."""
    return (
        DockerContainer(image)
        .with_network(network)
        .with_network_aliases("api")
        .with_env("DB_HOST", database["host"])
        .with_env("DB_USER", database["user"])
        .with_env("DB_PASSWORD", database["password"])
        .with_env("DB_NAME", database["name"])
        .with_exposed_ports(API_PORT)
        .waiting_for(
            HttpWaitStrategy(API_PORT, "/cgi-bin/visits")
            .for_status_code(200)
            .with_startup_timeout(STARTUP_SECONDS)
        )
    )
