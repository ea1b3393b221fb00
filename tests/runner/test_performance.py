"""The runner's performance set (the canary's pytest-benchmark tests), run and kept.

The figures are not judged here: `python -m fleet validate` (or `--benchmark-store` of this
suite) compares each runner with the fleet's baseline and flags a slow one as a warning.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from host_shell import Shell
from role_vars import RoleVars

# Starts containers on the host: one worker with the other such checks (see test_canary.py).
pytestmark = pytest.mark.xdist_group("host-containers")

PERF_TIMEOUT = 600
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


def report_file(directory: Path, host_id: str) -> Path:
    """Where a host's pytest-benchmark report goes: one file per host, named after it."""
    return directory / f"{_UNSAFE.sub('_', host_id.split('://', 1)[-1])}.json"


def test_the_performance_set_runs_and_reports(
    runner: Shell, role_vars: RoleVars, request: pytest.FixtureRequest, host
) -> None:
    """The runner's benchmarks (CPU, disk write, container start, DinD start) run and report.

    pytest-benchmark without xdist, as the runner user, after the canary; the report goes
    to --benchmark-dir when given."""
    pytest_bin = f"{role_vars['test_toolchain_venv']}/bin/pytest"
    suite = role_vars["test_toolchain_canary_dest"]
    work = runner.check("mktemp -d -t fleet-perf-XXXXXX")
    try:
        command = (
            f"cd {shlex.quote(work)} && exec timeout --kill-after=30 {PERF_TIMEOUT} "
            f"{shlex.quote(pytest_bin)} -p no:xdist -p no:cacheprovider -m perf -q "
            f"--benchmark-json={shlex.quote(work + '/benchmark.json')} {shlex.quote(suite)}"
        )
        result = runner.run("sh -c %s", command)
        output = (result.stdout + result.stderr)[-4000:]
        assert result.rc == 0, f"the performance set exited {result.rc}:\n{output}"
        document = json.loads(runner.check("cat %s", f"{work}/benchmark.json"))
    finally:
        runner.run("rm -rf %s", work)
    names = {entry["name"] for entry in document["benchmarks"]}
    assert len(names) >= 4, f"only {sorted(names)} reported:\n{output}"
    directory = request.config.getoption("--benchmark-dir")
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        report_file(directory, host.backend.get_pytest_id()).write_text(json.dumps(document))
