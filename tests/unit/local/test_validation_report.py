"""The validation report for people: summary lines and the one-page HTML report."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fleet import cli_text
from fleet.core.baseline_store import Review
from fleet.core.benchmarks import Baseline, Comparison, Verdict
from fleet.local import validation_report
from fleet.local.user_suite import SuiteResult
from fleet.local.validate import CheckResult, Validation

pytestmark = pytest.mark.unit

WHEN = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'


def outcome(tmp_path: Path, message: str = "") -> Validation:
    checks = [
        CheckResult(
            "test_the_docker_service_is_enabled_and_running",
            "fleet-local-runner-1",
            "passed",
            sentence="The Docker service is enabled and running.",
            group="docker engine",
            seconds=0.4,
        ),
        CheckResult(
            "test_the_canary_suite_passes",
            "fleet-local-runner-2",
            "failed",
            message=message,
            sentence="The canary suite passes as the runner user with pytest -n auto.",
            group="canary",
            seconds=21.0,
        ),
    ]
    performance = Review(
        comparisons=[
            Comparison("fleet-local-runner-1", "test_cpu_sha256", 0.01, 0.011, 0.25, Verdict.OK),
            Comparison("fleet-local-runner-2", "test_cpu_sha256", 0.01, 0.02, 0.25, Verdict.SLOWER),
        ],
        recorded={
            "fleet-local-runner-1": "/var/lib/fleet/local/benchmarks/history/local/0001.json"
        },
        baseline=Baseline({"test_cpu_sha256": 0.01}, ("fleet-local-runner-1",)),
    )
    suites = [
        SuiteResult(
            "fleet-local-runner-1",
            "passed",
            passed=7,
            seconds=12.5,
            log=tmp_path / "fleet-local-runner-1.log",
        )
    ]
    return Validation(
        rc=1,
        seconds=30.0,
        junit=tmp_path / "validation.xml",
        checks=checks,
        suites=suites,
        performance=performance,
    )


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_has_every_runner_its_checks_the_baseline_and_the_suite(tmp_path):
    page = validation_report.render_html(outcome(tmp_path), "local", WHEN)
    parsed = _Collector()
    parsed.feed(page)
    text = " ".join(parsed.text)
    for expected in (
        "fleet-local-runner-1",
        "fleet-local-runner-2",
        "The Docker service is enabled and running.",
        "test_the_canary_suite_passes",  # the test id, beside the sentence
        "WARNING: slower",
        "+100%",
        "Your suite",
        str(tmp_path / "fleet-local-runner-1.log"),
        "1 performance warning(s)",
    ):
        assert expected in text, expected
    assert "Not every check passed" in text


def test_the_page_loads_nothing_from_elsewhere(tmp_path):
    parsed = _Collector()
    parsed.feed(validation_report.render_html(outcome(tmp_path), "local", WHEN))
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "link", "img", "iframe", "object"}
    assert not [a for _, attrs in parsed.tags for a in attrs.values() if a and "://" in a]


def test_everything_on_the_page_is_escaped(tmp_path):
    page = validation_report.render_html(outcome(tmp_path, message=HOSTILE), HOSTILE, WHEN)
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "<script" not in page


def test_without_performance_or_suite_the_page_says_so(tmp_path):
    bare = Validation(rc=0, seconds=1.0, junit=tmp_path / "v.xml", checks=[])
    page = validation_report.render_html(bare, "local", WHEN)
    assert "Not measured" in page and "No suite given" in page


def test_summary_lines_name_the_slow_runner_the_history_and_the_suites_log(tmp_path):
    lines = validation_report.summary_lines(outcome(tmp_path))
    assert any(
        line.startswith("WARNING fleet-local-runner-2 is slower than the fleet's baseline")
        for line in lines
    )
    assert "benchmark history: /var/lib/fleet/local/benchmarks/history/local" in lines
    assert any(
        re.match(r"fleet-local-runner-1: Your suite passed: 7 passed.*; log /", line)
        for line in lines
    )


def test_the_terminal_report_shows_warning_rows_beside_the_checks(tmp_path):
    text = cli_text.validation_text(outcome(tmp_path))
    lines = text.splitlines()
    assert lines[0].split() == ["RUNNER", "CHECK", "RESULT"]
    assert re.search(r"^fleet-local-runner-2\s+test_cpu_sha256: .*WARNING$", text, re.M)
    assert re.search(r"^fleet-local-runner-1\s+The Docker service is enabled", text, re.M)
    assert "1 passed, 1 failed, 1 performance warning(s)" in text
