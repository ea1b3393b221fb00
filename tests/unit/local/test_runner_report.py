"""The validation report a person reads: every check has a sentence and a host.

The sentence of a check is the first line of its docstring (tests/runner/conftest.py,
``check_sentence``); the suite records it, the host and the check's group as JUnit
properties, and ``fleet.local.validate.parse_junit`` reads them back.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fleet.local import validate

pytestmark = pytest.mark.unit

RUNNER_SUITE = Path(__file__).resolve().parents[2] / "runner"
sys.path.insert(0, str(RUNNER_SUITE))  # the suite's own helpers (host_shell, role_vars)
_spec = importlib.util.spec_from_file_location("runner_suite_report", RUNNER_SUITE / "conftest.py")
assert _spec is not None and _spec.loader is not None
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)
MAX_SENTENCE = 100


def _checks() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted(RUNNER_SUITE.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.append((f"{path.name}::{node.name}", node))
    return found


def test_the_suite_has_checks_to_look_at():
    assert len(_checks()) >= 30


@pytest.mark.parametrize(("check", "node"), _checks(), ids=[c for c, _ in _checks()])
def test_every_check_has_a_sentence_a_person_reads(check, node):
    """The docstring's first line is one sentence: capital or lower-case start, a full stop
    at the end, short enough for a table row, and no property number in front."""
    doc = ast.get_docstring(node) or ""
    assert doc, f"{check} has no docstring: its first line is the report's sentence"
    sentence = doc.splitlines()[0]
    assert sentence.endswith("."), f"{check}: {sentence!r} is not one sentence ending in '.'"
    assert len(sentence) <= MAX_SENTENCE, f"{check}: {len(sentence)} characters"
    assert not sentence.lower().startswith("property"), f"{check}: {sentence!r}"
    assert len(doc.splitlines()) == 1 or doc.splitlines()[1] == "", (
        f"{check}: the sentence is the docstring's first line, then a blank line"
    )


def test_a_function_without_a_docstring_has_no_sentence():
    def test_nothing() -> None:
        pass

    assert suite.check_sentence(test_nothing) == ""


def test_the_sentence_is_the_docstrings_first_line():
    def test_something() -> None:
        """The runner user can start a privileged container.

        Property 22: and more detail."""

    assert suite.check_sentence(test_something) == (
        "The runner user can start a privileged container."
    )


def _item(function, nodeid: str, module: str, host_id: str | None) -> SimpleNamespace:
    backend = SimpleNamespace(get_pytest_id=lambda: host_id)
    params = {"_testinfra_host": SimpleNamespace(backend=backend)} if host_id else {}
    return SimpleNamespace(
        function=function,
        nodeid=nodeid,
        module=SimpleNamespace(__name__=module),
        callspec=SimpleNamespace(params=params) if host_id else None,
        user_properties=[],
    )


def test_each_check_carries_its_sentence_host_and_group_as_properties():
    def test_the_data_root_is_its_own_mount() -> None:
        """The engine's data root is a filesystem of its own."""

    grouped = _item(
        test_the_data_root_is_its_own_mount,
        "tests/runner/test_docker_engine.py::test_the_data_root_is_its_own_mount"
        "[docker-session://fleet-runner-1]@host-containers",
        "test_docker_engine",
        "docker-session://fleet-runner-1",
    )
    suite.pytest_collection_modifyitems([grouped])
    assert dict(grouped.user_properties) == {
        "check": "The engine's data root is a filesystem of its own.",
        "host": "docker-session://fleet-runner-1",
        "group": "docker engine",
    }


def test_junit_properties_name_the_host_of_grouped_checks(tmp_path):
    junit = tmp_path / "r.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.runner.test_canary" '
        'name="test_the_canary_suite_passes[docker-session://fleet-runner-1]@host-containers"'
        ' time="21.5"><properties>'
        '<property name="check" value="The canary suite passes as the runner user."/>'
        '<property name="host" value="docker-session://fleet-runner-1"/>'
        '<property name="group" value="canary"/></properties></testcase>'
        '<testcase classname="t" name="test_old[docker://fleet-runner-2]@host-containers"/>'
        "</testsuite></testsuites>"
    )
    first, second = validate.parse_junit(
        junit, ["docker-session://fleet-runner-1", "docker://fleet-runner-2"]
    )
    assert (first.name, first.host, first.group, first.seconds) == (
        "test_the_canary_suite_passes",
        "fleet-runner-1",
        "canary",
        21.5,
    )
    assert first.text == "The canary suite passes as the runner user."
    # A report without properties (an older suite): the host and name come from the test id.
    assert (second.name, second.host, second.text) == ("test_old", "fleet-runner-2", "old")
