"""The runner user data passes Debian 13's own `cloud-init schema` check.

cloud-init is not installed on the machine running the tests (it would act on that
machine at boot); it runs in a throwaway container built from the local Debian base
image, which is the distribution runner instances use.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from fleet.local.engine.engine import client
from infra.user_data import UserDataSettings, render_user_data

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

IMAGE = "fleet/cloud-init-check:trixie"
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cloud-init \\
 && apt-get clean
"""
SETTINGS = UserDataSettings(
    fleet_name="main",
    region="eu-west-1",
    asg_name="runner-fleet-main",
    launch_hook_name="runner-fleet-main-launch",
    parameter_root="/runner-fleet/main",
    bundle_bucket="main-bundle-bucket-a1b2c3d",
    bundle_key="bundles/playbooks-0123456789abcdef0123.zip",
    baked_image=False,
    docker_volume_gib=100,
    jit_wait_seconds=1200,
)


def _context() -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = DOCKERFILE.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@pytest.fixture(scope="module")
def cloud_init_image(boot) -> str:
    client().images.build(
        fileobj=_context(),
        custom_context=True,
        tag=IMAGE,
        buildargs={"BASE_IMAGE": boot.images.base},
        rm=True,
    )
    return IMAGE


def _schema(image: str, user_data: str) -> tuple[int, str]:
    container = client().containers.create(
        image,
        ["cloud-init", "schema", "--config-file", "/user-data"],
        labels={"dev.fleet.managed": "true", "dev.fleet.name": "e2e-cloud-init"},
    )
    try:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            data = user_data.encode()
            info = tarfile.TarInfo("user-data")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        container.put_archive("/", archive.getvalue())
        container.start()
        status = container.wait(timeout=300)["StatusCode"]
        return status, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def test_rendered_user_data_is_valid_for_cloud_init(cloud_init_image):
    status, output = _schema(cloud_init_image, render_user_data(SETTINGS))
    assert status == 0, output
    assert "Valid schema" in output


def test_cloud_init_schema_check_catches_a_broken_document(cloud_init_image):
    broken = render_user_data(SETTINGS).replace("write_files:", "write_files: 7\nwrite_filez:", 1)
    status, output = _schema(cloud_init_image, broken)
    assert status != 0
    assert "write_files" in output
