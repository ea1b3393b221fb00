"""Everything on the machine's Docker engine, counted, to prove a run leaves nothing behind.

Every container (running or not), volume (named or anonymous), network and image (tagged,
dangling or intermediate) is counted, labelled by this project or not. What the project keeps
on purpose between runs is the images it builds once and reuses: those whose repository is in
``KEPT_REPOSITORIES``, and their parent layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.local.engine.engine import client

# Built once per recipe and reused by every later run (fleet.local.engine.image and the e2e
# helpers that build the simulated cloud image and the cloud-init schema checker).
KEPT_REPOSITORIES = (
    "fleet/debian",
    "fleet/runner-host",
    "fleet/sim-debian-cloud",
    "fleet/cloud-init-check",
)


@dataclass(frozen=True)
class EngineObjects:
    containers: frozenset[str]
    volumes: frozenset[str]
    networks: frozenset[str]
    images: frozenset[str]

    def added_since(self, before: EngineObjects) -> dict[str, list[str]]:
        """What exists now and did not before, by kind (kinds with nothing new left out)."""
        added = {
            kind: sorted(getattr(self, kind) - getattr(before, kind))
            for kind in ("containers", "volumes", "networks", "images")
        }
        return {kind: names for kind, names in added.items() if names}


def _kept_images() -> set[str]:
    """Ids of the kept images and of every parent layer they are built on."""
    docker_client = client()
    kept: set[str] = set()
    for image in docker_client.images.list(all=True):
        if not any(tag.rpartition(":")[0] in KEPT_REPOSITORIES for tag in image.tags):
            continue
        image_id = image.id
        for _ in range(1000):  # bounded walk up the parent chain
            if not image_id or image_id in kept:
                break
            kept.add(image_id)
            image_id = docker_client.api.inspect_image(image_id).get("Parent") or ""
    return kept


def snapshot() -> EngineObjects:
    """What the engine holds now; images kept on purpose are left out."""
    docker_client = client()
    kept = _kept_images()
    return EngineObjects(
        containers=frozenset(
            f"{c.name} [{c.short_id}, {c.attrs['Config']['Image']}]"
            for c in docker_client.containers.list(all=True)
        ),
        volumes=frozenset(v.name for v in docker_client.volumes.list()),
        networks=frozenset(n.name for n in docker_client.networks.list()),
        images=frozenset(
            f"{i.id} {','.join(i.tags) or '<untagged>'}"
            for i in docker_client.images.list(all=True)
            if i.id not in kept
        ),
    )
