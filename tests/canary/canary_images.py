"""The images the canary needs: pulled when a registry answers, otherwise built locally.

Official images are used when present or pullable (``postgres:16``, ``docker:27-dind``).
A host baked by the local fleet carries archives of them (``FLEET_CANARY_IMAGE_ARCHIVES``),
loaded on first use instead of building.
Offline, equivalents are built from the Debian base image named by
``FLEET_CANARY_BASE_IMAGE`` (default ``fleet/debian:trixie``, preloaded on runner hosts),
tagged by a hash of their recipe so later runs reuse them, under a file lock so parallel
xdist workers build each image once.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

IMAGES_DIR = Path(__file__).parent / "images"
BASE_IMAGE_ENV = "FLEET_CANARY_BASE_IMAGE"
# `docker save` archives of these images, one per recipe, made when the host's image was
# baked (the local fleet bakes one): loading takes seconds where building takes a minute.
ARCHIVES_ENV = "FLEET_CANARY_IMAGE_ARCHIVES"
DEFAULT_ARCHIVES = "/var/cache/fleet-baked/images"
DEFAULT_BASE_IMAGE = "fleet/debian:trixie"
RECIPE_LABEL = "dev.fleet.canary.recipe"


@dataclass(frozen=True)
class Recipe:
    """An official image and how to build an equivalent one without a registry."""

    official: str
    local_repository: str
    dockerfile: str
    files: tuple[str, ...]


POSTGRES = Recipe(
    official="postgres:16",
    local_repository="fleet-canary/postgresql",
    dockerfile="postgresql.Dockerfile",
    files=("postgres-entrypoint.sh",),
)
DIND = Recipe(
    official="docker:27-dind",
    local_repository="fleet-canary/dind",
    dockerfile="dind.Dockerfile",
    files=("dind-entrypoint.sh",),
)


class ImageUnavailableError(RuntimeError):
    """Neither the official image nor a local build could be had."""


def base_image() -> str:
    return os.environ.get(BASE_IMAGE_ENV, DEFAULT_BASE_IMAGE)


def has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def recipe_digest(recipe: Recipe, base_id: str) -> str:
    """Hash of everything the local build depends on: a change rebuilds, no change reuses."""
    digest = hashlib.sha256(base_id.encode())
    for name in (recipe.dockerfile, *recipe.files):
        digest.update(b"\0" + name.encode() + b"\0" + (IMAGES_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


def build_context(recipe: Recipe) -> io.BytesIO:
    """A tar build context with the Dockerfile and the files it copies (scripts executable)."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name in (recipe.dockerfile, *recipe.files):
            data = (IMAGES_DIR / name).read_bytes()
            info = tarfile.TarInfo("Dockerfile" if name == recipe.dockerfile else name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    return context


@contextmanager
def build_lock(name: str) -> Iterator[None]:
    """An exclusive lock per image, shared by every process of this user on this host."""
    lock_dir = Path(tempfile.gettempdir()) / f"fleet-canary-{os.getuid()}"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    with (lock_dir / f"{name.replace('/', '_')}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pull(client: docker.DockerClient, name: str) -> bool:
    repository, tag = name.rsplit(":", 1)
    try:
        client.images.pull(repository, tag=tag)
    except docker.errors.APIError:
        return False
    return True


def _build(client: docker.DockerClient, recipe: Recipe, base: str, tag: str, digest: str) -> None:
    stream = client.api.build(
        fileobj=build_context(recipe),
        custom_context=True,
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        labels={RECIPE_LABEL: digest},
        rm=True,
        forcerm=True,
        decode=True,
    )
    tail: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            raise ImageUnavailableError(
                f"building {tag} from {base} failed: {chunk['error'].strip()}\n"
                + "".join(tail[-25:])
                + "\nThe build runs apt-get in a container: check the Debian mirror is reachable."
            )
        if "stream" in chunk:
            tail.append(chunk["stream"])


def archive_name(recipe: Recipe) -> str:
    """File name of a recipe's baked archive (``fleet-canary_dind.tar``)."""
    return recipe.local_repository.replace("/", "_") + ".tar"


def _load_archive(client: docker.DockerClient, recipe: Recipe) -> bool:
    """Load the recipe's baked archive, if this host has one; True if loaded."""
    archive = Path(os.environ.get(ARCHIVES_ENV, DEFAULT_ARCHIVES)) / archive_name(recipe)
    try:
        with archive.open("rb") as handle:
            client.images.load(handle)
    except (OSError, docker.errors.APIError):
        return False
    return True


def ensure_image(client: docker.DockerClient, recipe: Recipe) -> str:
    """The official image if present or pullable, else the cached or freshly built local one."""
    with build_lock(recipe.local_repository):
        if has_image(client, recipe.official):
            return recipe.official
        base = base_image()
        try:
            base_id = client.images.get(base).id
        except docker.errors.ImageNotFound:
            base_id = ""
        if base_id:
            tag = f"{recipe.local_repository}:{recipe_digest(recipe, base_id)}"
            if has_image(client, tag):
                return tag
        if _load_archive(client, recipe):
            if has_image(client, recipe.official):
                return recipe.official
            if base_id and has_image(client, tag):
                return tag
        if _pull(client, recipe.official):
            return recipe.official
        if not base_id:
            raise ImageUnavailableError(
                f"{recipe.official} cannot be pulled and the base image {base!r} is not on this "
                f"engine: load it (the docker_host role preloads it) or set {BASE_IMAGE_ENV}"
            )
        _build(client, recipe, base, tag, tag.rsplit(":", 1)[1])
        return tag
