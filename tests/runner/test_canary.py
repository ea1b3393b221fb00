"""The canary: the containerized suite every runner must pass, run as the runner user.

It runs the way a job runs a suite (`pytest -n auto --dist=worksteal`, testcontainers
against the host's engine, a privileged DinD service container); see tests/canary.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from host_shell import Shell
from role_vars import RoleVars

# Checks that start, count or remove containers on the host run one after another on one
# xdist worker (`--dist loadgroup`): the job-completed hook removes every container, and the
# canary counts what is left.
pytestmark = pytest.mark.xdist_group("host-containers")


@dataclass(frozen=True)
class CanaryRun:
    exit_code: int
    stdout: str
    output: str
    tests: int
    failures: int
    errors: int
    skipped: int
    volumes_before: frozenset[str]
    volumes_after: frozenset[str]
    containers_before: frozenset[str]
    containers_after: frozenset[str]

    def tail(self) -> str:
        return "\n".join(self.output.splitlines()[-60:])


def _ids(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _junit_counts(report: str) -> dict[str, int]:
    """tests/failures/errors/skipped of the <testsuite> element pytest writes."""
    element = re.search(r"<testsuite\b[^>]*>", report)
    assert element, "the canary's JUnit report has no <testsuite>"
    counts = dict(re.findall(r'\b(tests|failures|errors|skipped)="(\d+)"', element[0]))
    return {name: int(counts.get(name, 0)) for name in ("tests", "failures", "errors", "skipped")}


@pytest.fixture(scope="module")
def canary(
    root: Shell, runner: Shell, role_vars: RoleVars, request: pytest.FixtureRequest
) -> Iterator[CanaryRun]:
    """Run the installed canary once per host, noting volumes and containers around it."""
    timeout = request.config.getoption("--canary-timeout")
    pytest_bin = f"{role_vars['test_toolchain_venv']}/bin/pytest"
    suite = role_vars["test_toolchain_canary_dest"]
    report_dir = runner.check("mktemp -d -t fleet-canary-XXXXXX")
    junit = f"{report_dir}/canary.xml"
    volumes_before = _ids(runner.check("docker volume ls --quiet"))
    containers_before = _ids(runner.check("docker ps --all --quiet --no-trunc"))
    command = (
        f"cd {shlex.quote(report_dir)} && exec timeout --kill-after=30 {int(timeout)} "
        f"{shlex.quote(pytest_bin)} -n auto --dist=worksteal -p no:cacheprovider -m 'not perf' "
        f"{shlex.quote(suite)} "
        f"--junitxml={shlex.quote(junit)}"
    )
    result = runner.run("sh -c %s", command)
    output = result.stdout + result.stderr
    report = runner.run("cat %s", junit)
    assert report.rc == 0, f"the canary wrote no JUnit report (exit {result.rc}):\n{output}"
    run = CanaryRun(
        exit_code=result.rc,
        stdout=result.stdout,
        output=output,
        **_junit_counts(report.stdout),
        volumes_before=volumes_before,
        volumes_after=_ids(runner.check("docker volume ls --quiet")),
        containers_before=containers_before,
        containers_after=_ids(runner.check("docker ps --all --quiet --no-trunc")),
    )
    yield run
    runner.run("rm -rf %s", report_dir)


def test_the_canary_suite_passes(canary: CanaryRun) -> None:
    """The canary suite passes as the runner user with pytest -n auto.

    pytest -n auto with testcontainers, PostgreSQL, DinD over TLS (property 20) and
    worker isolation: every test passed, none failed, errored or was skipped."""
    assert canary.exit_code == 0, f"the canary exited {canary.exit_code}:\n{canary.tail()}"
    summary = canary.stdout.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary), summary
    assert not re.search(r"\b(failed|error|errors|skipped|xfailed)\b", summary), summary
    assert canary.tests > 0
    assert (canary.failures, canary.errors, canary.skipped) == (0, 0, 0), canary.tail()


def test_the_canary_leaves_no_anonymous_volumes(canary: CanaryRun) -> None:
    """The canary suite leaves no anonymous volumes behind.

    Property 23: DinD and database containers took their volumes with them."""
    assert canary.volumes_after - canary.volumes_before == frozenset()


def test_the_canary_leaves_no_containers(canary: CanaryRun) -> None:
    """The canary suite leaves no containers behind.

    Every container the canary started was removed by its `with` blocks and fixtures."""
    assert canary.containers_after - canary.containers_before == frozenset()
