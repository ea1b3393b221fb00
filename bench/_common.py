"""What the benchmarks share: writing their section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path


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
