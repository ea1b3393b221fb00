"""A runner's performance against the fleet's baseline (pure: no I/O, no clock).

Each runner runs the canary's small pytest-benchmark set (CPU, disk write, container start,
DinD start) at validation and hands back pytest-benchmark's JSON report. The fleet keeps a
baseline: for each benchmark, the median over the runners it was made from of each runner's
median time. A runner whose median is more than ``margin`` slower than the baseline (a
throttled or noisy host) is flagged; the margins are configuration (``Thresholds``), never
assertions of the project's own tests. Stores (where a baseline and the history live) are
``fleet.core.baseline_store``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

DEFAULT_MARGIN = 0.25


class BenchmarkFormatError(ValueError):
    """A benchmark report or a thresholds document that cannot be read."""


@dataclass(frozen=True)
class Measure:
    """One benchmark on one runner: its median time in seconds over ``rounds`` rounds."""

    name: str
    median: float
    rounds: int


def _positive_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BenchmarkFormatError(f"{what} is not a number: {value!r}")
    if value < 0:
        raise BenchmarkFormatError(f"{what} is negative: {value!r}")
    return float(value)


def parse_results(document: Any) -> dict[str, Measure]:
    """The measures of a pytest-benchmark JSON report (``--benchmark-json``), by name."""
    if not isinstance(document, Mapping) or not isinstance(document.get("benchmarks"), list):
        raise BenchmarkFormatError("not a pytest-benchmark report: no 'benchmarks' list")
    measures = {}
    for entry in document["benchmarks"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("stats"), Mapping):
            raise BenchmarkFormatError(f"a benchmark without stats: {entry!r:.200}")
        name = str(entry.get("name") or "")
        if not name:
            raise BenchmarkFormatError("a benchmark without a name")
        stats = entry["stats"]
        median = _positive_number(stats.get("median"), f"{name}: median")
        rounds = int(_positive_number(stats.get("rounds", 1), f"{name}: rounds"))
        measures[name] = Measure(name=name, median=median, rounds=rounds)
    return measures


@dataclass(frozen=True)
class Thresholds:
    """How much slower than the baseline a runner may be before it is flagged: ``margin``
    (0.25: 25 % slower), or a benchmark's own margin in ``margins``."""

    margin: float = DEFAULT_MARGIN
    margins: Mapping[str, float] = field(default_factory=dict)

    def for_benchmark(self, name: str) -> float:
        return self.margins.get(name, self.margin)

    @classmethod
    def from_mapping(cls, data: Any, default: float = DEFAULT_MARGIN) -> Thresholds:
        """From ``{"margin": 0.25, "margins": {"test_cpu": 0.1}}`` (every key optional)."""
        if data is None:
            return cls(margin=default)
        if not isinstance(data, Mapping):
            raise BenchmarkFormatError("thresholds must be a mapping: margin, margins")
        unknown = set(data) - {"margin", "margins"}
        if unknown:
            raise BenchmarkFormatError(f"unknown thresholds keys: {', '.join(sorted(unknown))}")
        margin = _positive_number(data.get("margin", default), "margin")
        margins = data.get("margins") or {}
        if not isinstance(margins, Mapping):
            raise BenchmarkFormatError("margins must map benchmark names to numbers")
        return cls(
            margin=margin,
            margins={str(k): _positive_number(v, f"margins.{k}") for k, v in margins.items()},
        )


@dataclass(frozen=True)
class Baseline:
    """The fleet's reference: median seconds per benchmark, and where they came from."""

    medians: Mapping[str, float]
    runners: tuple[str, ...] = ()
    recorded: str = ""  # ISO 8601 time it was made

    def to_dict(self) -> dict[str, Any]:
        return {
            "medians": dict(sorted(self.medians.items())),
            "runners": list(self.runners),
            "recorded": self.recorded,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Baseline:
        if not isinstance(data, Mapping) or not isinstance(data.get("medians"), Mapping):
            raise BenchmarkFormatError("not a baseline: no 'medians' mapping")
        return cls(
            medians={
                str(k): _positive_number(v, f"baseline {k}") for k, v in data["medians"].items()
            },
            runners=tuple(str(r) for r in data.get("runners") or ()),
            recorded=str(data.get("recorded") or ""),
        )


def make_baseline(results: Mapping[str, Mapping[str, Measure]], recorded: str) -> Baseline:
    """A baseline from runners' results: per benchmark, the median of the runners' medians."""
    names = sorted({name for measures in results.values() for name in measures})
    return Baseline(
        medians={
            name: statistics.median(m[name].median for m in results.values() if name in m)
            for name in names
        },
        runners=tuple(sorted(results)),
        recorded=recorded,
    )


class Verdict(Enum):
    OK = "ok"
    SLOWER = "slower"  # beyond the margin: a warning
    NEW = "no baseline"  # measured, but the baseline has no such benchmark
    MISSING = "not measured"  # in the baseline, not in this runner's results


@dataclass(frozen=True)
class Comparison:
    host: str
    name: str
    baseline: float | None
    current: float | None
    margin: float
    verdict: Verdict

    @property
    def ratio(self) -> float | None:
        """current / baseline (1.3: 30 % slower), when both are known and the baseline > 0."""
        if self.current is None or not self.baseline:
            return None
        return self.current / self.baseline

    @property
    def warning(self) -> bool:
        return self.verdict is Verdict.SLOWER

    def sentence(self) -> str:
        """The report's words for this comparison."""
        if self.verdict is Verdict.NEW:
            return f"{self.name}: {self.current:.4g} s, not in the baseline yet"
        if self.verdict is Verdict.MISSING:
            return f"{self.name}: in the baseline ({self.baseline:.4g} s) but not measured"
        ratio = self.ratio or 0.0
        text = (
            f"{self.name}: {self.current:.4g} s against a baseline of {self.baseline:.4g} s "
            f"({ratio - 1:+.0%})"
        )
        if self.warning:
            text += f", slower than the {self.margin:.0%} margin allows"
        return text


def is_slower(current: float, baseline: float, margin: float) -> bool:
    """More than ``margin`` slower than ``baseline`` (monotone in every argument)."""
    return current > baseline * (1.0 + margin)


def compare(
    host: str, current: Mapping[str, Measure], baseline: Baseline, thresholds: Thresholds
) -> list[Comparison]:
    """One comparison per benchmark in either the runner's results or the baseline."""
    rows = []
    for name in sorted(set(current) | set(baseline.medians)):
        margin = thresholds.for_benchmark(name)
        measured = current[name].median if name in current else None
        reference = baseline.medians.get(name)
        if measured is None:
            verdict = Verdict.MISSING
        elif reference is None:
            verdict = Verdict.NEW
        elif is_slower(measured, reference, margin):
            verdict = Verdict.SLOWER
        else:
            verdict = Verdict.OK
        rows.append(Comparison(host, name, reference, measured, margin, verdict))
    return rows
