"""Your suite on a runner (fleet.local.user_suite): input checks, the archive, the scripts,
what each exit means, and that every way a run ends leaves the host clean (on a FAKE host
container; the real run is tests/e2e/test_validate_suite_and_baseline.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleet import cli
from fleet.errors import FleetError
from fleet.local import user_suite
from fleet.local.user_suite import UserSuite, run_on_host
from fleet.local.validate import SUITE_GROUP, suite_checks
from tests.fakes.suite_container import WORK, FakeHostContainer

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "example_suite"
JUNIT = (
    b'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="7" failures="1" '
    b'errors="1" skipped="2" time="3.1"></testsuite></testsuites>'
)


@pytest.fixture
def suite(tmp_path: Path) -> UserSuite:
    directory = tmp_path / "suite"
    (directory / "__pycache__").mkdir(parents=True)
    (directory / "test_api.py").write_text("def test_ok():\n    pass\n")
    (directory / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (directory / "pytest.ini").write_text("[pytest]\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("httpx==0.28.1\n")
    return UserSuite(directory, requirements, timeout=120)


def test_a_missing_directory_is_refused_before_any_host_is_touched(tmp_path):
    with pytest.raises(FleetError, match="is not a directory") as error:
        UserSuite(tmp_path / "nope").checked()
    assert "pytest suite" in error.value.hint


def test_a_directory_without_python_is_refused(tmp_path):
    with pytest.raises(FleetError, match="holds no Python files"):
        UserSuite(tmp_path).checked()


def test_missing_requirements_are_refused(suite, tmp_path):
    with pytest.raises(FleetError, match=r"--requirements .* is not a file"):
        UserSuite(suite.directory, tmp_path / "missing.txt").checked()


def test_the_example_suite_passes_the_input_checks():
    assert UserSuite(EXAMPLE, EXAMPLE / "requirements.txt").checked().directory == EXAMPLE


def test_the_archive_holds_the_suite_without_caches_owned_by_the_runner(suite):
    host = FakeHostContainer()
    host.put_archive(WORK, user_suite.suite_archive(suite, 1001, 1002))
    members = host.archives[WORK]
    assert sorted(m.split()[0] for m in members) == [
        "requirements.txt",
        "suite",
        "suite/pytest.ini",
        "suite/test_api.py",
    ]
    assert {m.split()[1] for m in members} == {"1001:1002"}
    assert "suite 1001:1002 700" in members


@pytest.mark.parametrize(
    ("rc", "counts", "status", "words"),
    [
        (0, {"passed": 3}, "passed", ""),
        (1, {"failed": 2, "errors": 0}, "failed", "2 failed"),
        (5, None, "error", "collected no tests (exit 5): check that --suite points"),
        (124, None, "error", "did not finish within 120 s (--suite-timeout)"),
        (137, None, "error", "did not finish within 120 s"),
        (4, None, "error", "bad pytest command line"),
        (1, None, "error", "wrote no JUnit report"),
    ],
)
def test_each_exit_says_what_happened(rc, counts, status, words):
    found, message = user_suite.verdict(rc, counts, 120)
    assert found == status
    assert words in message


def test_junit_counts_add_up_every_testsuite():
    assert user_suite.junit_counts(JUNIT.decode()) == {
        "passed": 3,
        "failed": 1,
        "errors": 1,
        "skipped": 2,
    }


def test_the_venv_script_puts_the_toolchain_after_the_suites_own_packages(tmp_path):
    """The script, run here on this machine's Python: the new environment imports pytest
    from the "toolchain" (this project's venv) through the .pth file."""
    toolchain = Path(sys.prefix)
    found = _run_in_a_made_venv(tmp_path / "work", "import pytest; print(pytest.__file__)")
    assert found.startswith(str(toolchain))


def _run_in_a_made_venv(work: Path, code: str) -> str:
    """Make ``work``/venv with venv_script on this machine's Python, run ``code`` in it and
    return what it printed."""
    work.mkdir()
    script = user_suite.venv_script(str(work), sys.prefix)
    subprocess.run(["sh", "-c", script], check=True, timeout=120)
    return subprocess.run(
        [str(work / "venv/bin/python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def _cleaned(host: FakeHostContainer) -> bool:
    return host.commands()[-1] == f"rm -rf --one-file-system {WORK}"


def test_a_failing_suite_reports_its_counts_and_log_and_is_removed(suite, tmp_path):
    def answer(argv: list[str]) -> tuple[int, bytes]:
        return (1, b"1 failed\n") if "pytest" in argv else (0, b"installed\n")

    host = FakeHostContainer(answers={("cat",): (0, JUNIT), ("timeout",): answer})
    result = run_on_host(host, suite, {"actions_runner_user": "ci"}, tmp_path / "reports")
    assert (result.status, result.passed, result.failed, result.skipped) == ("failed", 3, 1, 2)
    assert result.log.read_text().startswith("$ sh -c ")  # venv, pip, pytest: each logged
    assert "pip install" in result.log.read_text() and "1 failed" in result.log.read_text()
    assert result.junit.read_bytes() == JUNIT
    assert _cleaned(host)
    runner_calls = [argv for argv, user in host.calls if user == "ci"]
    assert [argv[0] for argv in runner_calls] == ["sh", "timeout", "timeout"]
    assert "--requirement" in runner_calls[1] and "pytest" in runner_calls[2]
    assert f"chown ci: {WORK}" in host.commands()


def test_requirements_that_do_not_install_are_an_error_and_the_host_is_cleaned(suite, tmp_path):
    pip = (1, b"ERROR: No matching distribution found for httpx==99\n")
    host = FakeHostContainer(answers={("timeout",): pip})
    result = run_on_host(host, suite, {}, tmp_path)
    assert result.status == "error"
    assert "requirements" in result.message and "No matching distribution" in result.message
    assert not [c for c in host.commands() if "pytest" in c]
    assert _cleaned(host)


def test_a_suite_that_collects_nothing_is_an_error_and_the_host_is_cleaned(suite, tmp_path):
    def answer(argv: list[str]) -> tuple[int, bytes]:
        return (5, b"no tests ran\n") if "pytest" in argv else (0, b"")

    host = FakeHostContainer(answers={("timeout",): answer})
    result = run_on_host(host, UserSuite(suite.directory, None, 60), {}, tmp_path)
    assert result.status == "error"
    assert "collected no tests" in result.message
    assert _cleaned(host)


def test_a_suite_past_its_time_limit_is_an_error_and_the_host_is_cleaned(suite, tmp_path):
    host = FakeHostContainer(answers={("timeout",): lambda argv: (124, b"")})
    result = run_on_host(host, UserSuite(suite.directory, None, 60), {}, tmp_path)
    assert "did not finish within 60 s" in result.message
    assert _cleaned(host)


def test_a_venv_that_cannot_be_made_is_an_error_and_the_host_is_cleaned(suite, tmp_path):
    host = FakeHostContainer(answers={("sh",): (1, b"python3-venv is not installed\n")})
    result = run_on_host(host, suite, {}, tmp_path)
    assert "virtual environment" in result.message and "python3-venv" in result.message
    assert _cleaned(host)


def test_the_suite_is_one_row_per_host_beside_the_checks(suite, tmp_path):
    host = FakeHostContainer(answers={("cat",): (0, JUNIT), ("timeout",): (0, b"")})
    row = suite_checks([run_on_host(host, suite, {}, tmp_path)])[0]
    assert (row.host, row.group, row.outcome) == ("fleet-local-runner-1", SUITE_GROUP, "passed")
    assert row.text.startswith("Your suite passed: 3 passed, 1 failed, 1 errors, 2 skipped")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "--suite", "/nonexistent/suite"], "is not a directory"),
        (["validate", "--requirements", "r.txt"], "--requirements goes with --suite"),
        (["up", "--suite", "/nonexistent/suite"], "is not a directory"),
    ],
)
def test_bad_suite_input_on_the_command_line_exits_2(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_pip_from_the_toolchain_installs_into_the_suites_environment(tmp_path):
    """No pip of its own (--without-pip): the toolchain's pip, run by the suite's python,
    targets the suite's environment."""
    work = tmp_path / "work"
    code = "import sys, pip; print(sys.prefix, pip.__file__)"
    scheme = _run_in_a_made_venv(work, code).split()
    assert scheme[0] == str(work / "venv")
    assert scheme[1].startswith(sys.prefix)
