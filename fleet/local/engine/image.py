"""Build and cache the images a local fleet needs, with no registry.

* ``fleet/debian:trixie``: Debian 13 minbase from debootstrap, ``docker import``-ed.
  Runner hosts also get it (as a saved tarball, preloaded by the docker_host
  role) so jobs can build images when no registry is reachable.
* ``fleet/runner-host:<recipe>``: the base plus systemd as PID 1 and python3,
  built from ``images/runner-host.Dockerfile``.

Images carry a ``dev.fleet.recipe`` label with a hash of how they were made, so a
changed recipe rebuilds and an unchanged one is found in seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from fleet.errors import FleetError
from fleet.local.engine.engine import client

# Bump when build_base changes what goes into the image. 2: without the .debs debootstrap
# leaves in /var/cache/apt/archives (32 MB every host, and every image archive, carried).
RECIPE_VERSION = "2"
SUITE = "trixie"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE_IMAGE = f"fleet/debian:{SUITE}"
HOST_REPOSITORY = "fleet/runner-host"
RECIPE_LABEL = "dev.fleet.recipe"
DOCKERFILE = Path(__file__).parent / "images" / "runner-host.Dockerfile"
PRELOAD_NAME = f"debian-{SUITE}.tar"

Report = Callable[[str], None]


@dataclass(frozen=True)
class Images:
    base: str
    runner_host: str
    preload_dir: Path
    preload_tar: Path


def default_cache_dir() -> Path:
    return Path(os.environ.get("FLEET_CACHE_DIR", "/var/cache/fleet"))


def base_recipe(mirror: str, security_mirror: str) -> str:
    return _digest(
        RECIPE_VERSION, SUITE, mirror, security_mirror, _apt_sources(mirror, security_mirror)
    )


def host_recipe(base: str) -> str:
    return _digest(base, DOCKERFILE.read_text())


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _apt_sources(mirror: str, security_mirror: str) -> str:
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security_mirror}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def image_exists(name: str) -> bool:
    return _image_recipe(name) is not None or _has_image(name)


def _has_image(name: str) -> bool:
    try:
        client().images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _image_recipe(name: str) -> str | None:
    try:
        image = client().images.get(name)
    except docker.errors.ImageNotFound:
        return None
    return (image.labels or {}).get(RECIPE_LABEL)


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FleetError(
            f"{what} failed (exit {result.returncode}): {(result.stderr or result.stdout)[-1500:]}",
            hint="check network access to the Debian mirror (set --mirror) and free disk space",
        )


def build_base(cache_dir: Path, mirror: str, security_mirror: str, report: Report) -> str:
    """debootstrap Debian minbase and import it as ``fleet/debian:<suite>``."""
    recipe = base_recipe(mirror, security_mirror)
    if _image_recipe(BASE_IMAGE) == recipe:
        return BASE_IMAGE
    if not shutil.which("debootstrap"):
        raise FleetError(
            "debootstrap is needed to build the base image and is not installed",
            hint="apt-get install debootstrap (the bootstrap command does this when run as root)",
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        report(f"debootstrap {SUITE} minbase from {mirror} (about 40 s)")
        _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], "debootstrap")
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
            _apt_sources(mirror, security_mirror)
        )
        for cache in ("var/lib/apt/lists", "var/cache/apt/archives"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
            (rootfs / cache / "partial").mkdir(parents=True)
        tarball = Path(work) / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], "tar")
        report(f"docker import -> {BASE_IMAGE}")
        repository, tag = BASE_IMAGE.split(":")
        client().api.import_image_from_file(
            str(tarball),
            repository=repository,
            tag=tag,
            changes=[f"LABEL {RECIPE_LABEL}={recipe}", 'CMD ["bash"]'],
        )
    return BASE_IMAGE


def build_runner_host(base: str, report: Report) -> str:
    """Build the systemd runner-host image on top of ``base`` (cached by recipe)."""
    recipe = host_recipe(base + ":" + (_image_recipe(base) or ""))
    tag = f"{HOST_REPOSITORY}:{SUITE}-{recipe}"
    if _image_recipe(tag) == recipe:
        return tag
    report(f"building {tag} (systemd, python3)")
    context = io.BytesIO()
    _tar_single_file(context, "Dockerfile", DOCKERFILE.read_bytes())
    context.seek(0)
    stream = client().api.build(
        fileobj=context,
        custom_context=True,
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        labels={RECIPE_LABEL: recipe},
        rm=True,
        forcerm=True,
        decode=True,
    )
    tail: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            raise FleetError(
                f"building {tag} failed: {chunk['error'].strip()}\n" + "".join(tail[-20:]),
                hint="the build runs apt-get inside a container: check the mirror is reachable",
            )
        if "stream" in chunk:
            tail.append(chunk["stream"])
    return tag


def _tar_single_file(fileobj: io.BytesIO, name: str, data: bytes) -> None:
    import tarfile

    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def save_preload(base: str, preload_dir: Path, report: Report) -> Path:
    """``docker save`` the base image where runner hosts can load it (kept in step by id)."""
    preload_dir.mkdir(parents=True, exist_ok=True)
    target = preload_dir / PRELOAD_NAME
    stamp = preload_dir / (PRELOAD_NAME + ".json")
    image = client().images.get(base)
    if target.exists() and stamp.exists() and json.loads(stamp.read_text()).get("id") == image.id:
        return target
    report(f"saving {base} to {target} for runner hosts to preload")
    partial = target.with_suffix(".partial")
    with partial.open("wb") as handle:
        for chunk in image.save(named=True):
            handle.write(chunk)
    partial.chmod(0o644)
    partial.replace(target)
    stamp.write_text(json.dumps({"id": image.id, "name": base}))
    return target


def ensure_images(
    report: Report,
    cache_dir: Path | None = None,
    mirror: str = DEFAULT_MIRROR,
    security_mirror: str = DEFAULT_SECURITY_MIRROR,
) -> Images:
    """Base image, runner-host image and the preload tarball, each built only if stale."""
    cache = cache_dir or default_cache_dir()
    base = build_base(cache, mirror, security_mirror, report)
    host = build_runner_host(base, report)
    preload_dir = cache / "preload"
    tar = save_preload(base, preload_dir, report)
    return Images(base=base, runner_host=host, preload_dir=preload_dir, preload_tar=tar)
