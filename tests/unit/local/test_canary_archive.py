"""The canary loads the images a baked host carries instead of building them."""

from __future__ import annotations

import sys
from pathlib import Path

import docker.errors
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "canary"))
import canary_images

pytestmark = pytest.mark.unit


class FakeImages:
    def __init__(self, present: set[str], archive_holds: set[str]) -> None:
        self.present = set(present)
        self.archive_holds = archive_holds
        self.loaded = 0
        self.pulls = 0

    def get(self, name: str):
        if name not in self.present:
            raise docker.errors.ImageNotFound(name)
        return type("Image", (), {"id": f"sha256:{abs(hash(name))}"})()

    def load(self, handle) -> None:
        handle.read()
        self.loaded += 1
        self.present |= self.archive_holds

    def pull(self, repository: str, tag: str) -> None:
        self.pulls += 1
        raise docker.errors.APIError("no registry")


class FakeClient:
    def __init__(self, images: FakeImages) -> None:
        self.images = images


@pytest.fixture
def local_tag() -> str:
    base_id = FakeImages({"fleet/debian:trixie"}, set()).get("fleet/debian:trixie").id
    digest = canary_images.recipe_digest(canary_images.DIND, base_id)
    return f"{canary_images.DIND.local_repository}:{digest}"


def test_a_baked_archive_is_loaded_instead_of_building(tmp_path, monkeypatch, local_tag):
    monkeypatch.setenv(canary_images.ARCHIVES_ENV, str(tmp_path))
    (tmp_path / canary_images.archive_name(canary_images.DIND)).write_bytes(b"tar")
    monkeypatch.setattr(canary_images, "_build", lambda *a: pytest.fail("built"))
    images = FakeImages({"fleet/debian:trixie"}, {local_tag})
    assert canary_images.ensure_image(FakeClient(images), canary_images.DIND) == local_tag
    assert (images.loaded, images.pulls) == (1, 0)


def test_without_an_archive_the_image_is_built(tmp_path, monkeypatch, local_tag):
    monkeypatch.setenv(canary_images.ARCHIVES_ENV, str(tmp_path))
    built = []
    monkeypatch.setattr(
        canary_images, "_build", lambda client, recipe, base, tag, d: built.append(tag)
    )
    images = FakeImages({"fleet/debian:trixie"}, set())
    assert canary_images.ensure_image(FakeClient(images), canary_images.DIND) == local_tag
    assert built == [local_tag] and images.loaded == 0 and images.pulls == 1
