"""Validation beyond the checks, end to end: your suite on a runner, the performance
baseline (a runner slowed on purpose is flagged), and the HTML report.

One fleet of one host, made by `up --no-canary` (the bake is the first test's cost); the
tests run in file order and share it. Not run where they were written (no engine there):
they are the proof of `validate --suite`, `--html` and the baseline on a real engine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fleet import cli
from fleet.local import docker as backend
from fleet.local.engine.engine import client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "tests" / "example_suite"


@pytest.fixture(scope="module")
def fleet(fleet_name: str, agent, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fleet of one validated host (no GitHub settings: validated, not registered)."""
    junit = tmp_path_factory.mktemp("up") / "up.xml"
    argv = ["up", "--name", fleet_name, "--runners", "1", "--no-canary", "--junit", str(junit)]
    assert cli.main([*argv, "--agent-url", agent.url, "--agent-sha256", agent.sha256]) == 0
    return fleet_name


def _host(fleet: str) -> str:
    (name,) = [c.name for c in backend.list_hosts(fleet)]
    return name


def _leftovers(host: str) -> str:
    found = (
        client()
        .containers.get(host)
        .exec_run(["sh", "-c", "ls -d /var/tmp/fleet-suite-* 2>/dev/null; docker ps -aq"])
    )
    return found.output.decode().strip()


def test_validate_runs_your_suite_and_reports_it_beside_the_checks(fleet, capsys, tmp_path):
    """The example suite (API + PostgreSQL on one network, async, xdist) on the runner."""
    html = tmp_path / "report.html"
    rc = cli.main(
        [
            "validate",
            "--name",
            fleet,
            "--baseline-dir",
            str(tmp_path / "baseline"),
            "--suite",
            str(EXAMPLE),
            "--requirements",
            str(EXAMPLE / "requirements.txt"),
            "--suite-timeout",
            "900",
            "--junit",
            str(tmp_path / "validation.xml"),
            "--html",
            str(html),
        ]
    )
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert rc == 0, out
    host = _host(fleet)
    assert re.search(rf"^{host}\s+Your suite passed: (\d+) passed, 0 failed", out, re.M), out
    assert re.search(rf"^{host}\s+The runner user can start a privileged container", out, re.M)
    assert "performance baseline made from this validation" in out
    page = html.read_text()
    assert "Your suite" in page and "test_cpu_sha256" in page and host in page
    log = tmp_path / "validation-suite" / f"{host}.log"
    assert "passed" in log.read_text()
    assert _leftovers(host) == ""


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: (d / "test_nothing.py").write_text("X = 1\n"), "collected no tests"),
        (
            lambda d: (d / "requirements.txt").write_text("no-such-package-fleet-e2e==0.0.1\n"),
            "did not install",
        ),
        (
            lambda d: (d / "test_slow.py").write_text(
                "import time\n\ndef test_slow():\n    time.sleep(120)\n"
            ),
            "did not finish within 20 s",
        ),
    ],
    ids=["collects-nothing", "bad-requirements", "timeout"],
)
def test_a_bad_suite_is_an_error_row_and_the_runner_is_left_clean(
    fleet, make, words, capsys, tmp_path
):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text("")
    make(suite)
    argv = ["validate", "--name", fleet, "--no-canary", "--suite", str(suite)]
    argv += ["--suite-timeout", "20", "--junit", str(tmp_path / "v.xml")]
    if (suite / "requirements.txt").exists():
        argv += ["--requirements", str(suite / "requirements.txt")]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert re.search(rf"Your suite could not run: .*{words}.*\s+error$", out, re.M), out
    assert _leftovers(_host(fleet)) == ""


def test_a_runner_slowed_on_purpose_is_flagged_against_the_baseline(fleet, capsys, tmp_path):
    """A CPU quota of a quarter of a core makes the CPU benchmark several times slower than the
    baseline this fleet made a moment before: a WARNING row, not a failure."""
    baseline = tmp_path / "baseline"
    junit = str(tmp_path / "v.xml")
    argv = ["validate", "--name", fleet, "--baseline-dir", str(baseline), "--junit", junit]
    assert cli.main(argv) == 0, str(capsys.readouterr())
    assert json.loads((baseline / "baseline.json").read_text())["medians"]["test_cpu_sha256"]
    container = client().containers.get(_host(fleet))
    container.update(cpu_quota=25_000, cpu_period=100_000)
    try:
        rc = cli.main([*argv, "--benchmark-margin", "50"])
    finally:
        container.update(cpu_quota=-1, cpu_period=100_000)
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert rc == 0, out  # warnings do not fail a validation
    assert re.search(r"test_cpu_sha256: .*slower than the 50% margin allows\s+WARNING$", out, re.M)
    history = sorted((baseline / "history" / fleet).glob("*.json"))
    assert [p.name[:4] for p in history] == ["0001", "0002"]
