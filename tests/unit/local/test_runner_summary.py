"""The validation suite's summary table names the host of every check, grouped or not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

RUNNER_SUITE = Path(__file__).resolve().parents[2] / "runner"
sys.path.insert(0, str(RUNNER_SUITE))  # the suite's own helpers (host_shell, role_vars)
_spec = importlib.util.spec_from_file_location(
    "runner_suite_conftest", RUNNER_SUITE / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)


@pytest.mark.parametrize(
    ("nodeid", "host"),
    [
        ("tests/runner/test_x.py::test_a[docker://fleet-runner-1]", "docker://fleet-runner-1"),
        # xdist's --dist loadgroup appends the group of an xdist_group check to its id
        (
            "tests/runner/test_x.py::test_a[docker://fleet-runner-1]@host-containers",
            "docker://fleet-runner-1",
        ),
        ("tests/runner/test_x.py::test_a[ssh://admin@10.0.0.7]", "ssh://admin@10.0.0.7"),
        ("tests/runner/test_x.py::test_a", "local"),
    ],
)
def test_the_summary_names_the_host_of_each_check(nodeid, host):
    assert suite._host_of(nodeid) == host


def test_the_summary_names_each_check_in_words():
    nodeid = "tests/runner/test_x.py::test_the_data_root_is_its_own_mount[docker://h]@g"
    assert suite._check_name(nodeid) == "the data root is its own mount"
