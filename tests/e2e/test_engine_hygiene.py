"""The engine probe cleans up after itself, even when the engine refuses to start it."""

from __future__ import annotations

import io
import secrets
import tarfile

import pytest

from fleet.local.engine.engine import client, privileged_works

pytestmark = pytest.mark.e2e


def _image_without_binaries() -> str:
    """An image with a single text file: no `true` to run, so every start fails."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = b"nothing to run here\n"
        info = tarfile.TarInfo("README")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repository = f"fleet/e2e-empty-{secrets.token_hex(3)}"
    client().api.import_image_from_data(archive.getvalue(), repository=repository, tag="test")
    return f"{repository}:test"


def test_a_privileged_probe_the_engine_cannot_start_leaves_no_container(boot):
    image = _image_without_binaries()
    try:
        worked, error = privileged_works(image)
        assert not worked
        assert "true" in error, error  # the engine's own reason reaches the user
        assert client().containers.list(all=True, filters={"ancestor": image}) == []
    finally:
        client().images.remove(image, force=True)


def test_a_privileged_probe_that_works_leaves_no_container(boot):
    before = {c.id for c in client().containers.list(all=True)}
    assert privileged_works(boot.images.base) == (True, "")
    assert {c.id for c in client().containers.list(all=True)} == before
