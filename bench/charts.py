"""PNG charts of the benchmarks, next to their tables in docs/benchmarks.md.

The benchmark scripts call these with the figures they measured (``--write``); this module
also redraws them from the numbers already in docs/benchmarks.md:

    .venv/bin/python -m bench.charts --from docs/benchmarks.md --out docs/images

* AWS instance boot phases, stock and baked image (bench/aws_instance.py);
* `up` scaling with the runner count, with and without the canary (bench/local_fleet.py);
* validation time per check group, from a validation's JUnit report (bench/runner_host.py).

matplotlib with the Agg backend (files only, no display), pinned in requirements-dev.txt.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGES = "images"
BOOT_PHASES_PNG = "aws-boot-phases.png"
UP_SCALING_PNG = "local-up-scaling.png"
CHECK_GROUPS_PNG = "validation-check-groups.png"
_SECONDS = re.compile(r"([\d.]+) s\b")


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, imported at the first chart: the import costs
    about half a second, and reading the figures back from markdown needs none of it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    # No timestamps in the file: the same figures give the same PNG.
    figure.savefig(path, dpi=110, metadata={"Software": None})
    _pyplot().close(figure)
    return path


def boot_phases(phases: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Seconds after cloud-init started at which each phase ended, one bar per image."""
    names = list(next(iter(phases.values())))
    figure, axes = _pyplot().subplots(figsize=(8, 0.45 * len(names) + 1.5))
    height = 0.8 / len(phases)
    for index, (image, values) in enumerate(phases.items()):
        positions = [n + index * height for n in range(len(names))]
        bars = axes.barh(positions, [values.get(n, 0.0) for n in names], height, label=image)
        axes.bar_label(bars, fmt="%.1f s", padding=2, fontsize=7)
    axes.set_yticks([n + height * (len(phases) - 1) / 2 for n in range(len(names))], names)
    axes.invert_yaxis()
    longest = max(v for values in phases.values() for v in values.values())
    axes.set_xlim(0, longest * 1.15)  # room for the labels
    axes.set_xlabel("seconds after cloud-init started (median)")
    axes.set_title("AWS runner instance: boot phases")
    axes.legend(loc="upper right")
    return _save(figure, path)


def up_scaling(series: Mapping[str, Sequence[tuple[int, float]]], path: Path) -> Path:
    """`up` wall time against the runner count, one line per kind of run."""
    figure, axes = _pyplot().subplots(figsize=(6, 4))
    counts: set[int] = set()
    for label, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        counts.update(xs)
        axes.plot(xs, ys, marker="o", label=label)
        for x, y in zip(xs, ys, strict=True):
            axes.annotate(f"{y:.1f} s", (x, y), textcoords="offset points", xytext=(4, 6))
    axes.set_xticks(sorted(counts))
    axes.set_xlim(min(counts) - 0.5, max(counts) + 0.8)  # room for the labels
    axes.set_xlabel("runner hosts started by one 'up'")
    axes.set_ylabel("seconds (median)")
    axes.set_ylim(0, max(y for points in series.values() for _, y in points) * 1.15)
    axes.set_title("Local fleet: 'up' with more runners")
    axes.legend()
    return _save(figure, path)


def check_groups(seconds: Mapping[str, float], path: Path) -> Path:
    """Seconds the checks of each group took on one host (their JUnit times, summed)."""
    ordered = sorted(seconds.items(), key=lambda item: item[1], reverse=True)
    figure, axes = _pyplot().subplots(figsize=(7, 0.4 * len(ordered) + 1.5))
    bars = axes.barh([g for g, _ in ordered], [s for _, s in ordered])
    axes.bar_label(bars, fmt="%.1f s", padding=2, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, max(s for _, s in ordered) * 1.15)
    axes.set_xlabel("seconds (sum of the group's checks on one host)")
    axes.set_title("Validation time per check group")
    return _save(figure, path)


def group_seconds(checks: Sequence[object]) -> dict[str, float]:
    """Seconds per check group from a validation's checks (``CheckResult``: group, seconds)."""
    totals: dict[str, float] = {}
    for check in checks:
        group = getattr(check, "group", "") or "other"
        totals[group] = totals.get(group, 0.0) + float(getattr(check, "seconds", 0.0))
    return totals


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def _rows(section: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|") and not line.startswith("| ---")
    ]


def boot_phases_from_markdown(text: str) -> dict[str, dict[str, float]]:
    """The medians of the AWS instance table (phase | stock image | baked image)."""
    rows = _rows(_section(text, "## AWS instance"))
    header, body = rows[0], rows[1:]
    phases: dict[str, dict[str, float]] = {name.replace(" image", ""): {} for name in header[1:]}
    for phase, *cells in body:
        for image, cell in zip(phases, cells, strict=True):
            match = _SECONDS.match(cell)
            if match:
                phases[image][phase] = float(match[1])
    return phases


def up_scaling_from_markdown(text: str) -> dict[str, list[tuple[int, float]]]:
    """`up --runners 1` and `--runners 4` medians, with and without the canary."""
    found: dict[str, list[tuple[int, float]]] = {"without the canary": [], "with the canary": []}
    for row in _rows(_section(text, "## Local fleet")):
        runners = re.search(r"`up --runners (\d+)", row[0])
        median = next((_SECONDS.match(c) for c in row[2:3] if _SECONDS.match(c)), None)
        if not runners or median is None:
            continue
        kind = "without the canary" if "--no-canary" in row[0] else "with the canary"
        found[kind].append((int(runners[1]), float(median[1])))
    return {kind: points for kind, points in found.items() if points}


def from_markdown(markdown: Path, out: Path) -> list[Path]:
    """Every chart the numbers in ``markdown`` (docs/benchmarks.md) can make."""
    text = markdown.read_text(encoding="utf-8")
    return [
        boot_phases(boot_phases_from_markdown(text), out / BOOT_PHASES_PNG),
        up_scaling(up_scaling_from_markdown(text), out / UP_SCALING_PNG),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="markdown", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--out", type=Path, default=Path("docs") / IMAGES)
    args = parser.parse_args()
    for path in from_markdown(args.markdown, args.out):
        print(path)


if __name__ == "__main__":
    main()
