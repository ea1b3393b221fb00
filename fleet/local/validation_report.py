"""What a validation found, for people: summary lines for the log, and one HTML page
(``validate --html FILE``): the per-runner table of checks, each runner against the
performance baseline, and your suite's results. The page is self-contained (inline CSS, no
scripts, no external assets) and every value in it is escaped (Jinja2's autoescape).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

import jinja2

from fleet.local.validate import CheckResult, Validation

TEMPLATES = Path(__file__).parent / "templates"


def summary_lines(outcome: Validation) -> list[str]:
    """Lines for the log: performance warnings and problems, the baseline, your suite."""
    lines = []
    performance = outcome.performance
    if performance is not None:
        if performance.baseline_made:
            runners = ", ".join(performance.baseline.runners) if performance.baseline else ""
            lines.append(f"performance baseline made from this validation ({runners})")
        for problem in performance.problems:
            lines.append(f"performance report unreadable: {problem}")
        for row in performance.warnings:
            lines.append(
                f"WARNING {row.host} is slower than the fleet's baseline: {row.sentence()}"
            )
        if performance.recorded:
            where = next(iter(performance.recorded.values())).rsplit("/", 1)[0]
            lines.append(f"benchmark history: {where}")
    for suite in outcome.suites:
        where = f"; log {suite.log}" if suite.log else ""
        lines.append(f"{suite.host}: {suite.sentence()}{where}")
    return lines


def by_runner(checks: list[CheckResult]) -> dict[str, list[CheckResult]]:
    """Checks grouped by runner, in the order they came."""
    grouped: dict[str, list[CheckResult]] = defaultdict(list)
    for check in checks:
        grouped[check.host or "-"].append(check)
    return dict(grouped)


def render_html(outcome: Validation, fleet: str, when: datetime) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    counts = outcome.counts()
    return environment.get_template("validation.html.j2").render(
        fleet=fleet,
        when=when.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        ok=outcome.ok,
        counts=counts,
        seconds=outcome.seconds,
        junit=str(outcome.junit),
        runners=by_runner(outcome.checks),
        performance=outcome.performance,
        suites=outcome.suites,
    )


def write_html(path: Path, outcome: Validation, fleet: str, when: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(outcome, fleet, when), encoding="utf-8")
