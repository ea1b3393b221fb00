"""The two callables the fleets pass around instead of reading the world directly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]  # now, time-zone aware
Report = Callable[[str], None]  # one line for the person running the command


def utc_now() -> datetime:
    return datetime.now(UTC)
