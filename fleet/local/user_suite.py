"""Your own containerized suite on every runner (`validate --suite DIR`, `up --suite DIR`).

On each host the suite is copied into a private working directory of the runner user and
run there as that user, the way a job runs it: in a virtual environment of its own on top
of the toolchain (the toolchain's pytest, xdist, testcontainers, ... are importable; the
suite's ``--requirements`` are installed into its own environment and win over the pins),
with ``pytest`` and the suite's own ``pytest.ini``/``pyproject.toml`` settings, bounded by
``--suite-timeout``. Whatever happens, the working directory (suite, environment, reports)
is removed afterwards. The log and JUnit report are kept on this machine.

A virtual environment made with ``--system-site-packages`` sees the *system* interpreter's
packages, not those of the toolchain (itself a virtual environment): a ``.pth`` file in the
suite's environment adds the toolchain's site-packages after its own. pip, too, comes from
the toolchain (``--without-pip`` spares seconds per host) and installs into the suite's
environment, the one its interpreter runs in.

Pure parts (checks of the input, the archive, the scripts, what an exit code means) are
separate from ``run_on_host``, which talks to the host's container.
"""

from __future__ import annotations

import io
import shlex
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.errors import FleetError

DEFAULT_TIMEOUT = 1800.0
SKIPPED_NAMES = {"__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks", ".git", ".venv"}
# pytest's exit codes (pytest.ExitCode) and timeout(1)'s.
EXIT_MEANING = {
    2: "was interrupted",
    3: "hit an internal pytest error",
    4: "was given a bad pytest command line or configuration",
    5: "collected no tests",
}
TIMED_OUT = {124, 137}
# On the host; `mktemp -d` makes a private directory there.
# /var/tmp, not /tmp: the host's systemd mounts a tmpfs on /tmp inside the container, which
# the engine's archive API (how the suite is copied in) does not see.
HOST_TMP = "/var/tmp"  # noqa: S108


@dataclass(frozen=True)
class UserSuite:
    directory: Path
    requirements: Path | None = None
    timeout: float = DEFAULT_TIMEOUT

    def checked(self) -> UserSuite:
        """The suite, or a FleetError saying what is wrong with the input (before any host
        is touched)."""
        if not self.directory.is_dir():
            raise FleetError(
                f"--suite {self.directory} is not a directory",
                hint="give the directory of your pytest suite (the one holding its tests and "
                "pytest.ini, pyproject.toml or conftest.py)",
            )
        if not any(self.directory.rglob("*.py")):
            raise FleetError(
                f"--suite {self.directory} holds no Python files",
                hint="point --suite at the directory of your tests",
            )
        if self.requirements is not None and not self.requirements.is_file():
            raise FleetError(
                f"--requirements {self.requirements} is not a file",
                hint="give a pip requirements file (one package per line), or leave it out",
            )
        if self.timeout <= 0:
            raise FleetError("--suite-timeout must be more than 0 seconds")
        return self


@dataclass
class SuiteResult:
    host: str
    status: str  # passed | failed | error
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    log: Path | None = None
    junit: Path | None = None
    message: str = ""

    def sentence(self) -> str:
        counts = (
            f"{self.passed} passed, {self.failed} failed, {self.errors} errors, "
            f"{self.skipped} skipped in {self.seconds:.1f} s"
        )
        if self.status == "error":
            first = self.message.strip().splitlines()[0] if self.message.strip() else "?"
            return f"Your suite could not run: {first}"
        return f"Your suite {'passed' if self.status == 'passed' else 'failed'}: {counts}."


def _skipped(name: str) -> bool:
    parts = Path(name).parts
    return any(p in SKIPPED_NAMES for p in parts) or name.endswith((".pyc", ".pyo"))


def suite_archive(suite: UserSuite, uid: int, gid: int) -> bytes:
    """A tar of ``suite/`` (the suite, caches left out) and ``requirements.txt``, owned by
    the runner user (``uid``:``gid``), for Docker's put_archive."""
    buffer = io.BytesIO()

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if _skipped(info.name):
            return None
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        info.mode = 0o700 if info.isdir() else info.mode & 0o755
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(suite.directory, arcname="suite", filter=owned)
        if suite.requirements is not None:
            tar.add(suite.requirements, arcname="requirements.txt", filter=owned)
    return buffer.getvalue()


def venv_script(work: str, toolchain: str) -> str:
    """Make ``work``/venv on top of the toolchain (run as the runner user)."""
    w, t = shlex.quote(work), shlex.quote(toolchain)
    site = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return (
        f"set -eu; {t}/bin/python -m venv --system-site-packages --without-pip {w}/venv; "
        f"base=$({t}/bin/python -c {shlex.quote(site)}); "
        f"own=$({w}/venv/bin/python -c {shlex.quote(site)}); "
        'printf "%s\\n" "$base" > "$own/fleet-toolchain.pth"'
    )


def _venv_python_argv(work: str, timeout: float, *module_argv: str) -> list[str]:
    """``python -m <module_argv>`` in ``work``'s venv, killed after ``timeout`` seconds."""
    return [
        "timeout",
        "--kill-after=30",
        str(int(timeout)),
        f"{work}/venv/bin/python",
        "-m",
        *module_argv,
    ]


def pip_argv(work: str, timeout: float) -> list[str]:
    return _venv_python_argv(
        work,
        timeout,
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--requirement",
        f"{work}/requirements.txt",
    )


def pytest_argv(work: str, timeout: float) -> list[str]:
    return _venv_python_argv(
        work, timeout, "pytest", "-p", "no:cacheprovider", f"--junitxml={work}/junit.xml"
    )


def junit_counts(text: str) -> dict[str, int]:
    """passed/failed/errors/skipped over every <testsuite> of a pytest JUnit report."""
    root = ET.fromstring(text)  # noqa: S314 (the report the suite's pytest just wrote)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key) or 0)
    return {
        "passed": totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"],
        "failed": totals["failures"],
        "errors": totals["errors"],
        "skipped": totals["skipped"],
    }


def verdict(rc: int, counts: dict[str, int] | None, timeout: float) -> tuple[str, str]:
    """(status, message) for the suite's pytest exit code and its report's counts."""
    if rc in TIMED_OUT:
        return "error", (
            f"it did not finish within {timeout:.0f} s (--suite-timeout) and was stopped"
        )
    if rc in EXIT_MEANING:
        hint = {
            5: ": check that --suite points at your tests and that their files are named "
            "test_*.py (or what your pytest configuration says)",
        }.get(rc, "")
        return "error", f"pytest {EXIT_MEANING[rc]} (exit {rc}){hint}"
    if counts is None:
        return "error", f"pytest exited {rc} and wrote no JUnit report"
    if rc == 0:
        return "passed", ""
    if rc == 1:
        return "failed", f"{counts['failed']} failed, {counts['errors']} errors"
    return "error", f"pytest exited {rc}"


def _tail(output: bytes, lines: int = 15) -> str:
    return "\n".join(output.decode(errors="replace").splitlines()[-lines:])


# Long on purpose: the steps of one run in the order a person reads them (set up, install,
# run, collect), each with its own error, and the clean-up that follows whatever happened.
def run_on_host(
    container: Any, suite: UserSuite, variables: dict[str, Any], reports: Path
) -> SuiteResult:
    """Copy, set up, run and remove the suite on one host's container (docker SDK)."""
    user = str(variables.get("actions_runner_user", "runner"))
    toolchain = str(variables.get("test_toolchain_venv", "/opt/fleet/toolchain"))
    result = SuiteResult(host=container.name, status="error")
    reports.mkdir(parents=True, exist_ok=True)
    result.log = reports / f"{container.name}.log"
    log = io.BytesIO()
    started = time.monotonic()

    def as_runner(argv: list[str], workdir: str | None = None) -> int:
        rc, output = container.exec_run(argv, user=user, workdir=workdir)
        log.write(b"$ " + shlex.join(argv).encode() + b"\n" + (output or b""))
        result.message = _tail(output or b"")
        return rc

    rc, created = container.exec_run(["mktemp", "-d", "-p", HOST_TMP, "fleet-suite-XXXXXX"])
    work = created.decode().strip()
    if rc != 0 or not work.startswith(f"{HOST_TMP}/fleet-suite-"):
        result.message = f"no working directory on the host: {_tail(created)}"
        return result
    try:
        uid, gid = (int(container.exec_run(["id", flag, user])[1]) for flag in ("-u", "-g"))
        container.exec_run(["chown", f"{user}:", work])
        container.exec_run(["chmod", "0700", work])
        container.put_archive(work, suite_archive(suite, uid, gid))
        if as_runner(["sh", "-c", venv_script(work, toolchain)]) != 0:
            result.message = f"its virtual environment could not be made: {result.message}"
            return result
        if suite.requirements is not None and as_runner(pip_argv(work, suite.timeout)) != 0:
            result.message = (
                f"its requirements ({suite.requirements}) did not install:\n{result.message}"
            )
            return result
        rc = as_runner(pytest_argv(work, suite.timeout), workdir=f"{work}/suite")
        junit_rc, junit = container.exec_run(["cat", f"{work}/junit.xml"])
        counts = None
        if junit_rc == 0 and junit:
            result.junit = reports / f"{container.name}.xml"
            result.junit.write_bytes(junit)
            counts = junit_counts(junit.decode())
            for key, value in counts.items():
                setattr(result, key, value)
        output_tail, (result.status, result.message) = (
            result.message,
            verdict(rc, counts, suite.timeout),
        )
        if result.status == "error":
            result.message += "\n" + output_tail
        return result
    finally:
        container.exec_run(["rm", "-rf", "--one-file-system", work])
        result.seconds = time.monotonic() - started
        result.log.write_bytes(log.getvalue())
