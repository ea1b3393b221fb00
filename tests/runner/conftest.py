"""The runner validation suite: testinfra checks that a runner host can run containerized suites.

    pytest tests/runner --hosts=docker://NAME [--runner-vars vars.yml] [--junitxml=report.xml]
    pytest tests/runner --hosts=docker-session://NAME   (one `docker exec` shell per host)
    pytest tests/runner --hosts=ssh://admin@HOST --sudo
    pytest tests/runner --hosts=ansible://runners --ansible-inventory=inventory.yml

Expected values come from the roles' variables (role_vars); the canary suite always runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker_session
import pytest
from host_shell import Shell
from role_vars import RoleVars, facts_from_os_release, is_role_variable, load_overrides
from testinfra.host import Host

docker_session.register()


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--benchmark-store") and config.getoption("--benchmark-dir") is None:
        raise pytest.UsageError("--benchmark-store needs --benchmark-dir (where reports go)")


DEFAULT_CANARY_TIMEOUT = 900
FALLBACK_JOB_IMAGE = "debian:trixie-slim"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runner validation")
    group.addoption(
        "--runner-vars",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML variables given to the playbooks (merged over the role defaults); "
        "the checks expect what they configure",
    )
    group.addoption(
        "--canary-timeout",
        type=int,
        default=DEFAULT_CANARY_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on the canary suite after this long (default {DEFAULT_CANARY_TIMEOUT})",
    )
    group.addoption(
        "--vpc-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="a network the engine's address pools must not overlap (repeatable)",
    )
    group.addoption(
        "--benchmark-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write each host's pytest-benchmark report (the performance set) here",
    )
    group.addoption(
        "--benchmark-store",
        default=None,
        metavar="URL",
        help="compare each host with the fleet's baseline kept here (a directory or "
        "s3://BUCKET/PREFIX) and record its report; needs --benchmark-dir",
    )
    group.addoption(
        "--benchmark-fleet",
        default=os.environ.get("FLEET_NAME", "fleet"),
        metavar="NAME",
        help="the fleet's name in the benchmark history (default: $FLEET_NAME, else fleet)",
    )
    group.addoption(
        "--job-image",
        default=None,
        metavar="IMAGE",
        help="image for job-container checks (default: the first preloaded image, "
        f"else {FALLBACK_JOB_IMAGE})",
    )


@pytest.fixture(scope="session")
def per_host() -> dict[tuple[str, str], Any]:
    """What a host told us once, for every module's checks of that host (testinfra's
    `host` is module-scoped; each command is a round trip through the connection)."""
    return {}


def _remembered(
    per_host: dict[tuple[str, str], Any], what: str, host: Host, ask: Callable[[], Any]
) -> Any:
    """``ask()`` for this host the first time, the remembered answer after."""
    key = (what, host.backend.get_pytest_id())
    if key not in per_host:
        per_host[key] = ask()
    return per_host[key]


@pytest.fixture(scope="module")
def root(host: Host, per_host: dict[tuple[str, str], Any]) -> Shell:
    sudo = _remembered(per_host, "sudo", host, lambda: host.run("id -u").stdout.strip() != "0")
    return Shell(host, sudo=sudo)


@pytest.fixture(scope="module")
def role_vars(
    host: Host,
    root: Shell,
    request: pytest.FixtureRequest,
    per_host: dict[tuple[str, str], Any],
) -> RoleVars:
    """The roles' variables for this host: defaults < inventory variables < --runner-vars."""

    def ask() -> RoleVars:
        overrides: dict[str, Any] = {}
        if host.backend.NAME == "ansible":
            inventory = host.ansible.get_variables()
            overrides |= {k: v for k, v in inventory.items() if is_role_variable(k)}
        overrides |= load_overrides(request.config.getoption("--runner-vars"))
        os_release = root.check("cat /etc/os-release")
        architecture = root.check("uname -m").strip()
        return RoleVars(overrides, facts_from_os_release(os_release, architecture))

    return _remembered(per_host, "role_vars", host, ask)


@pytest.fixture(scope="module")
def runner_user(role_vars: RoleVars) -> str:
    return role_vars["actions_runner_user"]


@pytest.fixture(scope="module")
def runner(root: Shell, runner_user: str) -> Shell:
    """Commands as the runner user, the way a job runs them."""
    return root.as_user(runner_user)


@pytest.fixture(scope="session")
def vpc_cidrs(request: pytest.FixtureRequest) -> list[str]:
    return request.config.getoption("--vpc-cidr")


@pytest.fixture(scope="module")
def job_image(request: pytest.FixtureRequest, role_vars: RoleVars) -> str:
    """The image job-container checks start (a preloaded one when no registry is reachable)."""
    chosen = request.config.getoption("--job-image")
    if chosen:
        return chosen
    preloaded = role_vars["docker_host_preload_images"]
    return preloaded[0]["name"] if preloaded else FALLBACK_JOB_IMAGE


# --- the report: a sentence and a host for every check --------------------------------

# nodeid -> (sentence, host, result), in the order the checks ran.
_RESULTS: dict[str, tuple[str, str, str]] = {}
# test_x[docker://name], or test_x[docker://name]@group when xdist groups the check.
_HOST_PARAM = re.compile(r"\[(?P<host>[^\]]+)\](@[^\[\]]+)?$")
# The JUnit <property> names every check carries (python -m fleet validate reads them).
CHECK_PROPERTY, HOST_PROPERTY, GROUP_PROPERTY = "check", "host", "group"


def _check_name(nodeid: str) -> str:
    function = nodeid.split("::")[-1].split("[")[0]
    return function.removeprefix("test_").replace("_", " ")


def _host_of(nodeid: str) -> str:
    match = _HOST_PARAM.search(nodeid)
    return match["host"] if match else "local"


def check_sentence(function: Callable[..., Any]) -> str:
    """What a check proves, in the words a person reads: the first line of its docstring
    (PEP 257's summary line). Every check has one (tests/unit/local/test_runner_report.py)."""
    doc = (function.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def check_group(module_name: str) -> str:
    """The group a check belongs to: its module, in words (test_docker_engine: docker engine)."""
    return module_name.rpartition(".")[2].removeprefix("test_").replace("_", " ")


def _item_host(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec is not None else None
    return host.backend.get_pytest_id() if host is not None else _host_of(item.nodeid)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each check's sentence, host and group as JUnit properties: the test id stays the
    test case's name, and a report reader needs no parsing of ids (xdist appends the
    group of a grouped check to it)."""
    for item in items:
        function = getattr(item, "function", None)
        sentence = check_sentence(function) if function is not None else ""
        item.user_properties += [
            (CHECK_PROPERTY, sentence or _check_name(item.nodeid)),
            (HOST_PROPERTY, _item_host(item)),
            (GROUP_PROPERTY, check_group(getattr(item.module, "__name__", ""))),
        ]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        result = report.outcome
    elif report.failed:
        result = f"error in {report.when}"  # a teardown error overrides a passed call
    elif report.skipped:
        result = "skipped"
    else:
        return
    properties = dict(report.user_properties)
    _RESULTS[report.nodeid] = (
        str(properties.get(CHECK_PROPERTY) or _check_name(report.nodeid)),
        str(properties.get(HOST_PROPERTY) or _host_of(report.nodeid)),
        result,
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A short table: host, check, result (the JUnit XML of --junitxml has the details)."""
    rows = list(_RESULTS.values())
    if not rows:
        return
    width = max(len(name) for name, _, _ in rows)
    host_width = max(len("host"), *(len(host) for _, host, _ in rows))
    terminalreporter.section("runner validation")
    terminalreporter.write_line(f"{'host':<{host_width}}  {'check':<{width}}  result")
    for name, host, result in rows:
        terminalreporter.write_line(f"{host:<{host_width}}  {name:<{width}}  {result}")
    failed = sum(1 for _, _, result in rows if result != "passed")
    summary = f"{len(rows) - failed} of {len(rows)} checks passed"
    terminalreporter.write_line(summary + (f", {failed} did not" if failed else ""))
    store = terminalreporter.config.getoption("--benchmark-store")
    if store:
        import performance

        performance.summary(terminalreporter, store)
