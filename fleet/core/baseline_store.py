"""Where a fleet's performance baseline, thresholds and benchmark history live.

``BaselineStore`` is the interface; ``fleet.local.baseline_store.LocalBaselineStore`` keeps
them in a directory on the machine (the local fleet's state directory), and
``fleet.aws.adapters.baseline_s3.S3BaselineStore`` under an S3 prefix (AWS validation runs).
Both lay them out the same way:

    baseline.json                       the fleet's baseline (``Baseline.to_dict``)
    thresholds.json                     optional, written by you: {"margin": 0.25, "margins": {...}}
    history/<fleet>/NNNN_<time>_<runner>.json
                                        each runner's pytest-benchmark report, one per validation

The history is pytest-benchmark's own storage layout (a directory per machine id holding
``NNNN_name.json`` files), so ``pytest-benchmark --storage file://DIR/history compare
--histogram`` plots it.

``review`` is what a validation does with a store: record every runner's report, make the
baseline from this run when there is none (or when asked), and compare each runner with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from fleet.core.benchmarks import (
    Baseline,
    Comparison,
    Measure,
    Thresholds,
    compare,
    make_baseline,
    parse_results,
)

BASELINE = "baseline.json"
THRESHOLDS = "thresholds.json"
HISTORY = "history"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class BaselineStore(Protocol):
    """Where one fleet's baseline, thresholds and history are kept."""

    location: str  # for messages: a directory or s3://bucket/prefix

    def load_baseline(self) -> Baseline | None: ...

    def save_baseline(self, baseline: Baseline) -> None: ...

    def load_thresholds(self) -> Mapping[str, Any] | None: ...

    def record(self, runner: str, document: Mapping[str, Any], when: datetime) -> str:
        """Keep ``runner``'s report as the next history file (``history_name``); returns
        where it went."""
        ...


def history_name(fleet: str, number: int, when: datetime, runner: str) -> str:
    """``history/<fleet>/NNNN_<UTC time>_<runner>.json`` (pytest-benchmark's layout)."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    safe = _UNSAFE.sub("-", runner).strip("-") or "runner"
    return f"{HISTORY}/{_UNSAFE.sub('-', fleet)}/{number:04d}_{stamp}_{safe}.json"


def next_number(existing: list[str]) -> int:
    """The number after the highest ``NNNN_`` file name in ``existing`` (1 for none)."""
    numbers = [int(m[1]) for n in existing if (m := re.match(r"(\d{4})_", n.rsplit("/", 1)[-1]))]
    return max(numbers, default=0) + 1


@dataclass
class Review:
    """What one validation found: comparisons per runner and what was written."""

    comparisons: list[Comparison] = field(default_factory=list)
    recorded: dict[str, str] = field(default_factory=dict)  # runner -> history file
    baseline: Baseline | None = None
    baseline_made: bool = False
    problems: list[str] = field(default_factory=list)  # runners whose report was unreadable

    @property
    def warnings(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.warning]


def review(
    store: BaselineStore,
    fleet: str,
    reports: Mapping[str, Mapping[str, Any]],
    when: datetime,
    *,
    thresholds: Thresholds | None = None,
    update_baseline: bool = False,
) -> Review:
    """Record each runner's pytest-benchmark report, then compare it with the baseline.

    Without a baseline (the fleet's first validation) or with ``update_baseline``, this
    run's runners make the baseline, and are compared with it.
    """
    outcome = Review()
    measures: dict[str, dict[str, Measure]] = {}
    for runner, document in sorted(reports.items()):
        try:
            measures[runner] = parse_results(document)
        except ValueError as exc:
            outcome.problems.append(f"{runner}: {exc}")
    for runner in sorted(measures):
        outcome.recorded[runner] = store.record(runner, reports[runner], when)
    if thresholds is None:
        thresholds = Thresholds.from_mapping(store.load_thresholds())
    baseline = None if update_baseline else store.load_baseline()
    if baseline is None and measures:
        baseline = make_baseline(measures, when.isoformat())
        store.save_baseline(baseline)
        outcome.baseline_made = True
    outcome.baseline = baseline
    if baseline is not None:
        for runner in sorted(measures):
            outcome.comparisons += compare(runner, measures[runner], baseline, thresholds)
    return outcome
