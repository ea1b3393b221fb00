"""bench/charts.py: charts render from sample figures, and the numbers are read back from
docs/benchmarks.md's tables (the PNGs in docs/images are made from them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import charts
from fleet.local.validate import CheckResult

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def test_a_boot_phases_chart_renders_from_sample_figures(tmp_path):
    path = charts.boot_phases(
        {
            "stock": {"tools installed": 29.1, "runner online": 91.8},
            "baked": {"runner online": 8.3},
        },
        tmp_path / "images" / "boot.png",
    )
    assert path.read_bytes().startswith(PNG)


def test_the_same_figures_give_the_same_png(tmp_path):
    series = {"without the canary": [(1, 11.9), (4, 23.3)], "with the canary": [(1, 28.7)]}
    first = charts.up_scaling(series, tmp_path / "a.png").read_bytes()
    assert first.startswith(PNG)
    assert charts.up_scaling(series, tmp_path / "b.png").read_bytes() == first


def test_check_groups_add_up_the_seconds_of_their_checks(tmp_path):
    checks = [
        CheckResult("test_a", "h", "passed", group="docker engine", seconds=1.5),
        CheckResult("test_b", "h", "passed", group="docker engine", seconds=0.5),
        CheckResult("test_c", "h", "passed", group="canary", seconds=20.0),
        CheckResult("test_d", "h", "passed", seconds=0.25),
    ]
    groups = charts.group_seconds(checks)
    assert groups == {"docker engine": 2.0, "canary": 20.0, "other": 0.25}
    assert charts.check_groups(groups, tmp_path / "groups.png").read_bytes().startswith(PNG)


def test_the_numbers_are_read_from_docs_benchmarks_md():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    phases = charts.boot_phases_from_markdown(text)
    assert set(phases) == {"stock", "baked"}
    assert phases["baked"]["runner online"] == 8.3
    assert phases["stock"]["cloud-init start"] == 0.0
    scaling = charts.up_scaling_from_markdown(text)
    assert scaling["without the canary"] == [(1, 11.9), (4, 23.3)]
    assert scaling["with the canary"] == [(1, 28.7), (4, 49.8)]


def test_the_docs_show_the_charts_they_link():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    for name in (charts.BOOT_PHASES_PNG, charts.UP_SCALING_PNG):
        assert f"](images/{name})" in text
        assert (ROOT / "docs" / "images" / name).read_bytes().startswith(PNG)
