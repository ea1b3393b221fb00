"""The suite's images, made without a registry when there is none."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
from pathlib import Path

import docker
import docker.errors

API_DIR = Path(__file__).parent / "api"
POSTGRES = "postgres:16"
# Where a fleet runner keeps the canary, whose image builder works without a registry.
CANARY_DIR = os.environ.get("FLEET_CANARY_DIR", "/opt/fleet/canary")


def postgres_image(client: docker.DockerClient) -> str:
    """postgres:16 when present or pullable, else the canary's local equivalent."""
    try:
        client.images.get(POSTGRES)
        return POSTGRES
    except docker.errors.ImageNotFound:
        pass
    if Path(CANARY_DIR, "canary_images.py").is_file():
        sys.path.insert(0, CANARY_DIR)
        import canary_images

        return canary_images.ensure_image(client, canary_images.POSTGRES)
    client.images.pull("postgres", tag="16")
    return POSTGRES


def api_image(client: docker.DockerClient, base: str, tag: str) -> str:
    """The API image: the PostgreSQL image (for psql) plus busybox httpd and two scripts."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for path in sorted(API_DIR.iterdir()):
            tar.add(path, arcname=path.name)
        tar.add(busybox, arcname="busybox")
    context.seek(0)
    client.images.build(
        fileobj=context, custom_context=True, tag=tag, buildargs={"BASE_IMAGE": base}, rm=True
    )
    return tag
