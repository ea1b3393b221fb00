"""Prepare this machine to run runner hosts: engine, privileged support, images.

Idempotent: on a warm machine every step finds its result and returns in seconds.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleet.local.engine import engine, image

Report = Callable[[str], None]


@dataclass(frozen=True)
class Bootstrap:
    engine: engine.EngineInfo
    images: image.Images
    seconds: float


def bootstrap(
    report: Report,
    cache_dir: Path | None = None,
    mirror: str = image.DEFAULT_MIRROR,
    security_mirror: str = image.DEFAULT_SECURITY_MIRROR,
) -> Bootstrap:
    """Engine answering, privileged containers working, base and host images cached."""
    started = time.monotonic()
    info = engine.ensure_engine(report)
    if not shutil.which("debootstrap") and not image.image_exists(image.BASE_IMAGE):
        engine.apt_install(["debootstrap"], report)
    images = image.ensure_images(report, cache_dir, mirror, security_mirror)
    if engine.ensure_privileged(images.runner_host, info, report):
        info = engine.engine_info()  # the default runtime changed
    return Bootstrap(engine=info, images=images, seconds=time.monotonic() - started)
