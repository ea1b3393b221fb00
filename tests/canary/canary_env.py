"""testcontainers settings that must be in the environment before testcontainers is imported."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import docker
import docker.errors

DEFAULT_RYUK_IMAGE = "testcontainers/ryuk:0.8.1"
# How the controller distributes tests (conftest.pytest_configure sets it for the workers).
DIST_ENV = "FLEET_CANARY_DIST"


def _engine() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except (docker.errors.DockerException, OSError):
        return None
    return client


def _engine_is_ours(client: docker.DockerClient) -> bool:
    """The engine runs on this machine: a local socket and the daemon shares our hostname."""
    if not client.api.base_url.startswith("http+docker://localhost"):
        return False
    return client.info().get("Name") == socket.gethostname()


def configure() -> None:
    """Disable Ryuk when its image is absent; point testcontainers at a local engine.

    Runner hosts have no registry, so the Ryuk reaper cannot be pulled; the canary removes
    its containers itself (``with`` blocks). A runner host may itself be a container (the local
    backend): testcontainers then assumes the engine is on the default gateway, but it is on
    this machine, so published ports are reached on localhost.
    """
    client = _engine()
    if client is None:
        return  # the tests themselves report the unreachable engine
    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        ryuk = os.environ.get("RYUK_CONTAINER_IMAGE", DEFAULT_RYUK_IMAGE)
        try:
            client.images.get(ryuk)
        except docker.errors.ImageNotFound:
            os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    overridden = "TC_HOST" in os.environ or "TESTCONTAINERS_HOST_OVERRIDE" in os.environ
    if not overridden and Path("/.dockerenv").exists() and _engine_is_ours(client):
        os.environ["TESTCONTAINERS_HOST_OVERRIDE"] = "localhost"
        os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    client.close()
