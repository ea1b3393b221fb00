"""A runner against the fleet's performance baseline: reading pytest-benchmark reports,
thresholds, the baseline, and the comparison (fleet.core.benchmarks, pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.benchmarks import (
    Baseline,
    BenchmarkFormatError,
    Measure,
    Thresholds,
    Verdict,
    compare,
    is_slower,
    make_baseline,
    parse_results,
)

pytestmark = pytest.mark.unit

seconds = st.floats(min_value=1e-6, max_value=1e4, allow_nan=False, allow_infinity=False)
margins = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
names = st.sampled_from(["test_cpu", "test_disk_write", "test_container_start", "test_dind"])
results = st.dictionaries(names, seconds, min_size=1)


def report(**medians: float) -> dict:
    """A pytest-benchmark JSON report, trimmed to what is read."""
    return {
        "machine_info": {"node": "runner"},
        "benchmarks": [
            {"name": name, "fullname": f"test_benchmarks.py::{name}", "stats": {"median": m}}
            for name, m in medians.items()
        ],
    }


def measures(values: dict[str, float]) -> dict[str, Measure]:
    return {name: Measure(name, value, 5) for name, value in values.items()}


def test_a_pytest_benchmark_report_is_read_by_name():
    document = report(test_cpu=0.012, test_dind=2.5)
    document["benchmarks"][0]["stats"]["rounds"] = 40
    assert parse_results(document) == {
        "test_cpu": Measure("test_cpu", 0.012, 40),
        "test_dind": Measure("test_dind", 2.5, 1),
    }


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "no 'benchmarks' list"),
        ([], "no 'benchmarks' list"),
        ({"benchmarks": [{"name": "x"}]}, "without stats"),
        ({"benchmarks": [{"stats": {"median": 1}}]}, "without a name"),
        ({"benchmarks": [{"name": "x", "stats": {"median": "fast"}}]}, "x: median is not"),
        ({"benchmarks": [{"name": "x", "stats": {"median": -1}}]}, "negative"),
        ({"benchmarks": [{"name": "x", "stats": {"median": float("nan")}}]}, "not a number"),
    ],
)
def test_a_bad_report_says_what_is_wrong(document, message):
    with pytest.raises(BenchmarkFormatError, match=message):
        parse_results(document)


def test_thresholds_come_from_configuration():
    thresholds = Thresholds.from_mapping({"margin": 0.5, "margins": {"test_dind": 1.0}})
    assert thresholds.for_benchmark("test_cpu") == 0.5
    assert thresholds.for_benchmark("test_dind") == 1.0
    assert Thresholds.from_mapping(None, default=0.3).margin == 0.3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a mapping"),
        ({"margn": 0.2}, "unknown thresholds keys: margn"),
        ({"margin": -0.1}, "negative"),
        ({"margins": [1]}, "margins must map"),
        ({"margins": {"test_cpu": "lots"}}, "margins.test_cpu is not a number"),
    ],
)
def test_bad_thresholds_say_what_is_wrong(data, message):
    with pytest.raises(BenchmarkFormatError, match=message):
        Thresholds.from_mapping(data)


def test_a_runner_a_third_slower_is_flagged_at_a_quarter_margin():
    baseline = Baseline({"test_cpu": 1.0, "test_disk_write": 0.1, "test_gone": 3.0})
    rows = compare(
        "runner-1",
        measures({"test_cpu": 1.34, "test_disk_write": 0.1, "test_new": 0.5}),
        baseline,
        Thresholds(margin=0.25),
    )
    verdicts = {r.name: r.verdict for r in rows}
    assert verdicts == {
        "test_cpu": Verdict.SLOWER,
        "test_disk_write": Verdict.OK,
        "test_gone": Verdict.MISSING,
        "test_new": Verdict.NEW,
    }
    slower = next(r for r in rows if r.name == "test_cpu")
    assert slower.warning and slower.host == "runner-1"
    assert slower.sentence() == (
        "test_cpu: 1.34 s against a baseline of 1 s (+34%), slower than the 25% margin allows"
    )
    assert [r.name for r in rows if r.warning] == ["test_cpu"]


def test_the_baseline_is_the_median_of_the_runners_medians():
    baseline = make_baseline(
        {
            "a": measures({"test_cpu": 1.0, "test_dind": 2.0}),
            "b": measures({"test_cpu": 3.0}),
            "c": measures({"test_cpu": 2.0}),
        },
        "2030-01-01T00:00:00+00:00",
    )
    assert baseline.medians == {"test_cpu": 2.0, "test_dind": 2.0}
    assert baseline.runners == ("a", "b", "c")
    assert Baseline.from_dict(baseline.to_dict()) == baseline


@given(results, margins)
def test_a_runner_equal_to_the_baseline_is_never_flagged(values, margin):
    rows = compare("r", measures(values), Baseline(values), Thresholds(margin))
    assert {r.verdict for r in rows} == {Verdict.OK}


@given(results, margins)
def test_the_runners_that_made_the_baseline_are_compared_fairly(values, margin):
    baseline = make_baseline({"only": measures(values)}, "")
    assert not [
        r for r in compare("only", measures(values), baseline, Thresholds(margin)) if r.warning
    ]


@given(seconds, seconds, margins)
def test_flagged_exactly_when_beyond_the_margin(current, reference, margin):
    rows = compare("r", measures({"t": current}), Baseline({"t": reference}), Thresholds(margin))
    assert rows[0].warning == (current > reference * (1 + margin))
    if current <= reference:
        assert not rows[0].warning


@given(seconds, seconds, margins, margins)
def test_a_wider_margin_never_flags_more(current, reference, first, second):
    narrow, wide = sorted((first, second))
    if is_slower(current, reference, wide):
        assert is_slower(current, reference, narrow)


@given(st.dictionaries(st.text(min_size=1, max_size=8), results, min_size=1, max_size=5))
def test_the_baseline_lies_between_the_fastest_and_slowest_runner(by_runner):
    baseline = make_baseline({r: measures(v) for r, v in by_runner.items()}, "")
    for name, median in baseline.medians.items():
        seen = [v[name] for v in by_runner.values() if name in v]
        assert min(seen) <= median <= max(seen)
