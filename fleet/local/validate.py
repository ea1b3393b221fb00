"""Run the testinfra validation suite (tests/runner) against runner hosts.

The suite is a plain pytest directory users can also run by hand; this module
runs it in a child pytest (argument list, no shell) and reads its JUnit XML.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleet.core.baseline_store import Review, review
from fleet.core.benchmarks import BenchmarkFormatError, Comparison, Thresholds
from fleet.core.clock import Clock, utc_now
from fleet.errors import FleetError
from fleet.local import docker as backend
from fleet.local import user_suite
from fleet.local.baseline_store import LocalBaselineStore
from fleet.local.baseline_store import default_directory as default_baseline_dir
from fleet.local.user_suite import SuiteResult, UserSuite

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "runner"
REPORTS = ROOT / "reports"
# The canary and the performance set (which uses the canary's images) go together.
NO_CANARY = ["-k", "not canary and not performance"]
SUITE_GROUP = "your suite"


# pytest plugins the suite needs (loaded explicitly; autoloading is off in the child).
PLUGINS = ("-p", "testinfra.plugin", "-p", "xdist.plugin", "-p", "pytest_timeout")


def local_host_spec(container: str) -> str:
    """The host spec for a runner host on this machine's engine: one `docker exec` shell
    per host and pytest process (tests/runner/docker_session.py) instead of one `docker
    exec` per command."""
    return f"docker-session://{container}"


@dataclass
class CheckResult:
    name: str  # the pytest test id's function part, as in the JUnit report
    host: str
    outcome: str  # passed | failed | error | skipped
    message: str = ""
    sentence: str = ""  # what the check proves, in words (its docstring's first line)
    group: str = ""  # its module in words: docker engine, toolchain, canary, ...
    seconds: float = 0.0

    @property
    def text(self) -> str:
        """The row a person reads: the sentence, else the test's name in words."""
        return self.sentence or self.name.removeprefix("test_").replace("_", " ")


@dataclass(frozen=True)
class Extras:
    """What a validation does beyond the checks: your suite, and how runners' performance is
    judged (the baseline's directory, a margin overriding its thresholds.json, or a new
    baseline from this run)."""

    suite: UserSuite | None = None
    baseline_dir: Path | None = None  # default: /var/lib/fleet/NAME/benchmarks
    margin: float | None = None
    update_baseline: bool = False


@dataclass
class Validation:
    rc: int
    seconds: float
    junit: Path
    checks: list[CheckResult] = field(default_factory=list)
    output: str = ""
    suites: list[SuiteResult] = field(default_factory=list)
    performance: Review | None = None  # with the canary: each runner against the baseline

    @property
    def ok(self) -> bool:
        """Every check passed (your suite counts as one check per host); performance
        warnings do not fail a validation."""
        return (
            self.rc == 0 and bool(self.checks) and all(c.outcome == "passed" for c in self.checks)
        )

    @property
    def warnings(self) -> list[Comparison]:
        return self.performance.warnings if self.performance is not None else []

    def counts(self, host: str | None = None) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for check in self.checks:
            if host is None or check.host == host:
                counts[check.outcome] += 1
        return counts


def _host_of(param: str, hosts: list[str]) -> str:
    # testinfra ids look like docker://name, or docker://name-<other params>
    for spec in sorted(hosts, key=len, reverse=True):
        if param == spec or param.startswith(spec + "-"):
            return spec.split("://", 1)[-1]
    return param.split("://", 1)[-1]


# test_x[docker://name], or test_x[docker://name]@group (xdist's loadgroup adds the group).
_TEST_ID = re.compile(r"^(?P<name>[^\[]+)(\[(?P<param>.*)\])?(@[^\[\]@]+)?$")


def _outcome(case: ET.Element) -> tuple[str, str]:
    for tag in ("failure", "error", "skipped"):
        element = case.find(tag)
        if element is not None:
            return ("failed" if tag == "failure" else tag), (element.get("message") or "").strip()
    return "passed", ""


def parse_junit(path: Path, hosts: list[str] | None = None) -> list[CheckResult]:
    """Checks from a JUnit XML written by pytest. The suite records each check's sentence,
    host and group as properties (tests/runner/conftest.py); the test id is the fallback."""
    checks = []
    # Our own child pytest wrote this file: not untrusted input.
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314
        match = _TEST_ID.match(case.get("name", ""))
        name = match["name"] if match else case.get("name", "")
        param = match["param"] if match and match["param"] else ""
        properties = {
            p.get("name", ""): p.get("value", "") for p in case.iter("property") if p.get("name")
        }
        host_id = properties.get("host") or param
        outcome, message = _outcome(case)
        checks.append(
            CheckResult(
                name=name,
                host=_host_of(host_id, hosts or []) if host_id else "",
                outcome=outcome,
                message=message,
                sentence=properties.get("check", ""),
                group=properties.get("group", ""),
                seconds=float(case.get("time") or 0),
            )
        )
    return checks


def validate(
    hosts: list[str],
    junit: Path,
    runner_vars: Path | None = None,
    extra_args: list[str] | None = None,
    timeout: int = 1800,
    workers: int = 2,
) -> Validation:
    """Run tests/runner against ``hosts`` (testinfra host specs, e.g. docker://name).

    The checks wait on the host far more than on this machine's CPU (each is a command run
    through the connection), so ``workers`` xdist processes run them side by side; the
    slowest check (a DinD start) then overlaps the others. ``workers`` of 1 runs them in
    this one child process.
    """
    junit.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        *PLUGINS,
        str(SUITE),
        f"--hosts={','.join(hosts)}",
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
    ]
    if workers > 1:
        # Checks that touch the host's containers share one worker (xdist_group marks).
        argv += ["-n", str(workers), "--dist", "loadgroup"]
    if runner_vars is not None:
        argv.append(f"--runner-vars={runner_vars}")
    argv.extend(extra_args or [])
    started = time.monotonic()
    # Only the plugins the suite uses: whatever else the environment has installed (a test
    # framework's own plugins) would be imported by every process, each time.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, check=False
    )
    checks = parse_junit(junit, hosts) if junit.exists() else []
    return Validation(
        rc=result.returncode,
        seconds=time.monotonic() - started,
        junit=junit,
        checks=checks,
        output=result.stdout + result.stderr,
    )


def merge_junit(parts: list[Path], target: Path) -> None:
    """One JUnit file holding every part's test suites (CI report uploaders read one file)."""
    root = ET.Element("testsuites")
    for part in parts:
        if not part.exists():
            continue
        # Our own child pytest wrote these files: not untrusted input.
        tree = ET.parse(part).getroot()  # noqa: S314
        suites = [tree] if tree.tag == "testsuite" else list(tree.iter("testsuite"))
        root.extend(suites)
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)


def validate_each(
    hosts: list[str],
    junit: Path,
    runner_vars: Path | None = None,
    extra_args: list[str] | None = None,
    timeout: int = 1800,
    workers: int = 4,
) -> Validation:
    """``validate`` with one child pytest per host, side by side; one merged report.

    Hosts are independent machines, so their checks (and canaries) need not wait for each
    other; on a small machine the engine's own work bounds the gain.
    """
    if len(hosts) <= 1:
        return validate(hosts, junit, runner_vars, extra_args, timeout)
    # Side by side already: more than two processes per host only compete for the CPU.
    per_host = 2 if len(hosts) <= 2 else 1
    started = time.monotonic()
    parts = [junit.with_name(f"{junit.stem}.{i}{junit.suffix}") for i in range(len(hosts))]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts)))) as pool:
        results = list(
            pool.map(
                lambda pair: validate(
                    [pair[0]], pair[1], runner_vars, extra_args, timeout, per_host
                ),
                zip(hosts, parts, strict=True),
            )
        )
    merge_junit(parts, junit)
    for part in parts:
        part.unlink(missing_ok=True)
    return Validation(
        rc=max(r.rc for r in results),
        seconds=time.monotonic() - started,
        junit=junit,
        checks=[c for r in results for c in r.checks],
        output="\n".join(r.output for r in results),
    )


@contextlib.contextmanager
def _runner_vars_file(variables: dict[str, Any]) -> Iterator[Path]:
    """The variables as the validation suite's --runner-vars file, private and gone after."""
    with tempfile.TemporaryDirectory(prefix="fleet-vars-") as directory:
        path = Path(directory) / "runner-vars.yml"
        path.write_text(yaml.safe_dump(variables, sort_keys=True))
        path.chmod(0o600)
        yield path


def _performance(name: str, reports_dir: Path, extras: Extras, clock: Clock) -> Review | None:
    """Each host's performance report against the fleet's baseline (recorded in history)."""
    reports = {}
    for path in sorted(reports_dir.glob("*.json")):
        try:
            reports[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            reports[path.stem] = {"unreadable": str(exc)}
    if not reports:
        return None
    store = LocalBaselineStore(extras.baseline_dir or default_baseline_dir(name), name)
    try:
        thresholds = Thresholds.from_mapping(store.load_thresholds())
    except BenchmarkFormatError as exc:
        raise FleetError(
            f"{store.location}/thresholds.json: {exc}",
            hint='write e.g. {"margin": 0.25, "margins": {"test_dind_start": 0.5}}',
        ) from exc
    if extras.margin is not None:
        thresholds = Thresholds(margin=extras.margin, margins=thresholds.margins)
    return review(
        store, name, reports, clock(), thresholds=thresholds, update_baseline=extras.update_baseline
    )


def run_suites(
    name: str, hosts: list[str], suite: UserSuite, variables: dict[str, Any], reports: Path
) -> list[SuiteResult]:
    """Your suite on each host, side by side (each host's run is its own)."""
    containers = [c for c in backend.list_hosts(name) if c.name in hosts]
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(containers)))) as pool:
        return list(
            pool.map(lambda c: user_suite.run_on_host(c, suite, variables, reports), containers)
        )


def suite_checks(results: list[SuiteResult]) -> list[CheckResult]:
    """One row per host for your suite, beside the checks."""
    return [
        CheckResult(
            name="your_suite",
            host=r.host,
            outcome={"passed": "passed", "failed": "failed"}.get(r.status, "error"),
            message=r.message,
            sentence=r.sentence(),
            group=SUITE_GROUP,
            seconds=r.seconds,
        )
        for r in results
    ]


def run_validation(
    name: str,
    hosts: list[str],
    variables: dict[str, Any],
    junit: Path | None,
    canary: bool = True,
    extras: Extras | None = None,
    clock: Clock = utc_now,
) -> Validation:
    """tests/runner against each host of fleet ``name``, hosts side by side (one child
    pytest per host); with the canary, each host's performance against the fleet's
    baseline; then your suite, when given."""
    extras = extras or Extras()
    junit_path = junit or REPORTS / f"{name}-validation.xml"
    with (
        _runner_vars_file(variables) as runner_vars,
        tempfile.TemporaryDirectory(prefix="fleet-benchmarks-") as reports_dir,
    ):
        outcome = validate_each(
            [local_host_spec(host) for host in hosts],
            junit_path,
            runner_vars,
            extra_args=["--benchmark-dir", reports_dir] if canary else NO_CANARY,
        )
        if not outcome.checks:
            raise FleetError(
                "the validation suite ran no checks:\n" + outcome.output[-3000:],
                hint="run `pytest tests/runner --hosts=docker://HOST` by hand to see why",
            )
        if canary:
            outcome.performance = _performance(name, Path(reports_dir), extras, clock)
    if extras.suite is not None:
        reports = junit_path.parent / f"{junit_path.stem}-suite"
        outcome.suites = run_suites(name, hosts, extras.suite, variables, reports)
        outcome.checks += suite_checks(outcome.suites)
    return outcome
