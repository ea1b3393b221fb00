"""What the benchmarks share: the machine they ran on, writing their section of
docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or "?" where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def host() -> str:
    """Cores, CPU, memory and kernel of this (Linux) machine, for a section's "Measured on"."""
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} cores ({cpu_model()}), {memory_kib // 1024 // 1024} GiB, "
        f"{platform.system()} {platform.release()}"
    )


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section that starts at `heading` (up to the next `## ` heading) with
    `section`, or add it at the end; every other section is kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if heading in text:
        head, _, rest = text.partition(heading)
        tail = rest.split("\n## ", 1)
        text = head + section + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
