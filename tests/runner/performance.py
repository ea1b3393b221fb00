"""`--benchmark-store`: each host's performance report against the fleet's baseline, for
validation runs that are not `python -m fleet validate` (AWS runners, hosts by hand).

The store is a directory on this machine or ``s3://BUCKET/PREFIX`` (boto3's usual
credentials); both keep the layout of ``fleet.core.baseline_store``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest


def open_store(url: str, fleet: str) -> Any:
    if url.startswith("s3://"):
        import boto3

        from fleet.aws.adapters.baseline_s3 import S3BaselineStore

        return S3BaselineStore.from_url(boto3.client("s3"), url, fleet)
    from fleet.local.baseline_store import LocalBaselineStore

    return LocalBaselineStore(Path(url), fleet)


def reports(directory: Path) -> dict[str, Any]:
    """Each host's report in ``directory`` (one JSON file per host), by host."""
    found = {}
    for path in sorted(directory.glob("*.json")):
        try:
            found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            found[path.stem] = {"unreadable": str(exc)}
    return found


def summary(terminalreporter: pytest.TerminalReporter, url: str) -> None:
    """A "runner performance" section: one row per host and benchmark, WARNING when slower
    than the baseline allows."""
    from fleet.core.baseline_store import review

    config = terminalreporter.config
    fleet = config.getoption("--benchmark-fleet")
    found = reports(config.getoption("--benchmark-dir"))
    terminalreporter.section("runner performance")
    if not found:
        terminalreporter.write_line("no performance reports (did the performance set run?)")
        return
    outcome = review(open_store(url, fleet), fleet, found, datetime.now(UTC))
    if outcome.baseline_made:
        terminalreporter.write_line(f"baseline made from {', '.join(sorted(found))} in {url}")
    for problem in outcome.problems:
        terminalreporter.write_line(f"ERROR    {problem}")
    for row in outcome.comparisons:
        level = "WARNING" if row.warning else "ok"
        terminalreporter.write_line(f"{level:<8} {row.host}  {row.sentence()}")
    terminalreporter.write_line(
        f"{len(outcome.warnings)} warning(s); history in {url} (pytest-benchmark compare)"
    )
