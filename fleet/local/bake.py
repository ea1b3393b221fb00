"""The fleet's baked image: converge one host with ``bake.yml`` and ``docker commit`` it, so
new hosts start from it and run only ``boot.yml`` (seconds, not minutes).

The image is named by a hash of what it is made of (``bake_hash``): the playbooks and the
canary they install, the variables the bake reads, the image it starts from. An unchanged
hash reuses the image; a changed one bakes again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fleet.core.clock import Report
from fleet.errors import FleetError
from fleet.local import docker as backend
from fleet.local import provision
from fleet.local.engine.bootstrap import Bootstrap
from fleet.local.engine.engine import client

# A bake needs about 1.5 GiB (image layers + apt caches), a host about 0.5 GiB before jobs.
MIN_FREE_BYTES = 3 * 1024**3
# What goes into the fleet's image: a change to any of these files re-bakes.
BAKE_INPUTS = (provision.PLAYBOOKS, provision.ROOT / "tests" / "canary")
# Variables only the boot part reads: they never change the baked image.
BOOT_ONLY_VARS = frozenset({"actions_runner_jitconfig"})
# Bumped when how an image is baked changes (what is written or cleaned before commit).
BAKE_FORMAT = "4"
# The canary's DinD and PostgreSQL images, built once in the bake host and kept in the
# image as an archive the canary loads on first use (tests/canary/canary_images.py): a
# few seconds instead of a minute of apt-get, and nothing added to every host's boot.
BAKED_IMAGES_KEY = "fleet_baked_job_images"
BAKED_IMAGES_DIR = "/var/cache/fleet-baked/images"
# Prints "<image> <archive file name>" per recipe; run in the bake host by the toolchain.
JOB_IMAGES_CODE = (
    "import sys; sys.path.insert(0, sys.argv[1]); import docker, canary_images as c; "
    "client = docker.from_env(timeout=900); "
    "[print(c.ensure_image(client, r), c.archive_name(r)) for r in (c.DIND, c.POSTGRES)]"
)


def _files(roots: Iterable[Path]) -> list[tuple[str, Path]]:
    """(name, path) of every source file under ``roots`` (caches and hidden files left out)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            relative = path.relative_to(root)
            if not path.is_file() or path.suffix == ".pyc":
                continue
            if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
                continue
            found.append((f"{root.name}/{relative}", path))
    return sorted(found)


def bake_hash(
    variables: dict[str, Any], base_image: str, roots: Iterable[Path] = BAKE_INPUTS
) -> str:
    """A hash of what the fleet's image is made of: the playbooks (and the canary they
    install), the variables the bake reads, and the image it starts from."""
    digest = hashlib.sha256(f"bake-format {BAKE_FORMAT}\0".encode())
    for name, path in _files(roots):
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    baked = bake_vars(variables)
    digest.update(json.dumps(baked, sort_keys=True, default=str).encode() + b"\0")
    digest.update(base_image.encode())
    return digest.hexdigest()[:12]


def bake_vars(variables: dict[str, Any]) -> dict[str, Any]:
    """The variables a bake reads (boot-only ones left out)."""
    return {k: v for k, v in variables.items() if k not in BOOT_ONLY_VARS}


def image_vars(
    image: str, variables: dict[str, Any], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The variables ``image`` was baked with, plus this machine's boot variables (from
    ``variables``), plus ``overrides``: new hosts and checks then match the image."""
    baked = backend.read_bake_vars(image)
    baked.pop(BAKED_IMAGES_KEY, None)
    boot_vars = {k: v for k, v in variables.items() if k in BOOT_ONLY_VARS}
    return {**baked, **boot_vars, **(overrides or {})}


def check_free_space(report: Report) -> None:
    """Fail early, and say so, when the engine's disk cannot hold another host."""
    try:
        root = client().info().get("DockerRootDir", "/var/lib/docker")
        free = shutil.disk_usage(root).free
    except OSError:
        return  # a remote engine: its disk is not ours to measure
    if free < MIN_FREE_BYTES:
        raise FleetError(
            f"only {free / 1024**3:.1f} GiB free on the engine's data root {root}; "
            f"a runner fleet needs at least {MIN_FREE_BYTES / 1024**3:.0f} GiB",
            hint="free space (`docker system df`, `python -m fleet down --name OLD`, "
            "`docker image prune`) and run the command again",
        )
    report(f"{free / 1024**3:.0f} GiB free on {root}")


def progress(report: Report, started: float, every: float = 15.0) -> Callable[[dict], None]:
    """An ansible-runner event handler that says which task runs, every ``every`` seconds."""
    last = {"at": time.monotonic()}

    def on_event(event: dict) -> None:
        if event.get("event") != "playbook_on_task_start":
            return
        now = time.monotonic()
        if now - last["at"] >= every:
            last["at"] = now
            task = event.get("event_data", {}).get("task", "?")
            report(f"  ... {now - started:.0f} s: {task}")

    return on_event


def bake_image(
    fleet: str, boot: Bootstrap, variables: dict[str, Any], wanted: str, report: Report
) -> str:
    """Converge a bake host with ``bake.yml``, build the job images into it, commit it as
    the fleet's image tagged ``wanted``; the bake host and older images are removed."""
    check_free_space(report)
    name = f"{fleet}-runner-bake-{secrets.token_hex(3)}"
    report(f"baking the fleet's image: converging {name} with playbooks/bake.yml")
    started = time.monotonic()
    container = backend.start_host(
        backend.HostSpec(
            name=name,
            fleet=fleet,
            image=boot.images.runner_host,
            preload_dir=boot.images.preload_dir,
            kind=backend.KIND_BAKE_HOST,
        ),
        boot.engine.cgroup_version,
    )
    try:
        backend.wait_until_booted(container)
        result = provision.converge(
            provision.docker_inventory([name]),
            "bake.yml",
            variables,
            on_event=progress(report, started),
        )
        if not result.ok:
            raise FleetError(
                "baking the fleet's image failed:\n  " + "\n  ".join(result.failures[:10]),
                hint="fix the variable or task named above, then run `python -m fleet up` again",
            )
        baked_images = _bake_job_images(container, variables, report)
        backend.write_bake_vars(container, {**bake_vars(variables), BAKED_IMAGES_KEY: baked_images})
        # A machine id is per host (hosts made from the image get their own at boot);
        # package and pip caches are not worth carrying in every host's image.
        container.exec_run(
            [
                "sh",
                "-c",
                ": > /etc/machine-id; rm -rf /var/log/journal/* /root/.cache/pip; apt-get clean",
            ]
        )
        tag = backend.commit_baked_image(container, fleet, wanted)
    finally:
        backend.remove_host(container)
    stale = backend.remove_stale_baked_images(fleet, tag)
    report(
        f"baked {tag} in {time.monotonic() - started:.0f} s"
        + (f" (removed older {', '.join(stale)})" if stale else "")
    )
    return tag


def _bake_job_images(
    container: Any, variables: dict[str, Any], report: Report
) -> list[dict[str, str]]:
    """Build the canary's images in the bake host's engine and save them into the image
    (readable by jobs): a host loads them on first use instead of building them."""
    venv = variables.get("test_toolchain_venv", "/opt/fleet/toolchain")
    canary = variables.get("test_toolchain_canary_dest", "/opt/fleet/canary")
    report("building the job images (DinD, PostgreSQL) into the fleet's image")
    built = container.exec_run([f"{venv}/bin/python", "-c", JOB_IMAGES_CODE, canary])
    output = built.output.decode(errors="replace")
    if built.exit_code != 0:
        raise FleetError(
            f"building the job images in {container.name} failed: {output[-1500:]}",
            hint="the build runs apt-get in a container: check the Debian mirror is "
            "reachable from containers",
        )
    pairs = [line.split() for line in output.splitlines() if len(line.split()) == 2][-2:]
    saves = " && ".join(
        f"docker save -o {BAKED_IMAGES_DIR}/{archive} {image} && "
        f"chmod 0644 {BAKED_IMAGES_DIR}/{archive}"
        for image, archive in pairs
    )
    saved = container.exec_run(["sh", "-c", f"install -d -m 0755 {BAKED_IMAGES_DIR} && {saves}"])
    if len(pairs) != 2 or saved.exit_code != 0:
        raise FleetError(f"saving the job images failed: {saved.output.decode()[-800:]}")
    return [{"name": image, "path": f"{BAKED_IMAGES_DIR}/{a}"} for image, a in pairs]
