"""The capability wrapper that lets old engines start privileged containers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.local.engine import engine, runc_caps
from fleet.local.engine.engine import WRAPPER_RUNTIME, merged_daemon_config

pytestmark = pytest.mark.unit

# CapBnd of a sandbox that lacks CAP_SYS_RESOURCE (bit 24), as seen on the build machines.
SANDBOX_STATUS = "Name:\tpython3\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n"


def test_bounding_set_reads_the_missing_capability():
    allowed = runc_caps.bounding_set(SANDBOX_STATUS)
    assert "CAP_SYS_RESOURCE" not in allowed
    assert {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_CHECKPOINT_RESTORE"} <= allowed
    assert len(allowed) == len(runc_caps.CAPABILITY_NAMES) - 1


def test_bounding_set_without_capbnd_line_is_an_error():
    with pytest.raises(ValueError, match="CapBnd"):
        runc_caps.bounding_set("Name:\tx\n")


def test_filter_removes_only_caps_outside_the_bounding_set():
    process = {
        "capabilities": {
            "bounding": ["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_FUTURE_THING"],
            "effective": ["CAP_SYS_RESOURCE"],
            "ambient": [],
        }
    }
    changed = runc_caps.filter_capabilities(process, {"CAP_SYS_ADMIN"})
    assert changed is True
    assert process["capabilities"]["bounding"] == ["CAP_SYS_ADMIN", "CAP_FUTURE_THING"]
    assert process["capabilities"]["effective"] == []
    assert runc_caps.filter_capabilities(process, {"CAP_SYS_ADMIN"}) is False


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--root", "/r", "--log", "l", "create", "--bundle", "/b", "--pid-file", "p", "id"],
            "/b/config.json",
        ),
        (["create", "--bundle=/b2", "id"], "/b2/config.json"),
        (["run", "-b", "/b3", "id"], "/b3/config.json"),
        (["create", "id"], "config.json"),
        (["exec", "--process", "/tmp/p.json", "--detach", "id"], "/tmp/p.json"),
        (["exec", "-p", "/tmp/q.json", "id"], "/tmp/q.json"),
        (["exec", "id", "sh"], None),
        (["state", "id"], None),
        (["delete", "--force", "id"], None),
    ],
)
def test_spec_file_follows_runc_arguments(argv, expected):
    assert runc_caps.spec_file(argv) == expected


def test_rewrite_edits_bundle_config_in_place(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "ociVersion": "1.0.2",
                "process": {"capabilities": {"bounding": ["CAP_SYS_RESOURCE", "CAP_KILL"]}},
                "root": {"path": "rootfs"},
            }
        )
    )
    runc_caps.rewrite(str(config), {"CAP_KILL"})
    document = json.loads(config.read_text())
    assert document["process"]["capabilities"]["bounding"] == ["CAP_KILL"]
    assert document["root"] == {"path": "rootfs"}


def test_rewrite_edits_exec_process_spec(tmp_path):
    process = tmp_path / "process.json"
    process.write_text(
        json.dumps({"args": ["sh"], "capabilities": {"permitted": ["CAP_SYS_RESOURCE"]}})
    )
    runc_caps.rewrite(str(process), set())
    assert json.loads(process.read_text())["capabilities"]["permitted"] == []


def test_daemon_config_keeps_user_settings_and_registers_the_wrapper():
    current = {"log-level": "warn", "runtimes": {"nvidia": {"path": "/usr/bin/nvidia"}}}
    merged = merged_daemon_config(current, "/usr/local/libexec/fleet/fleet-runc")
    assert merged["log-level"] == "warn"
    assert merged["runtimes"]["nvidia"] == {"path": "/usr/bin/nvidia"}
    assert merged["runtimes"][WRAPPER_RUNTIME] == {"path": "/usr/local/libexec/fleet/fleet-runc"}
    assert merged["default-runtime"] == WRAPPER_RUNTIME
    assert "default-runtime" not in current


@pytest.fixture
def fake_runc(tmp_path):
    """A stand-in runc that prints its arguments and the process spec it was handed."""
    script = tmp_path / "fake-runc"
    script.write_text('#!/bin/sh\necho "args: $*"\ncat "$3"\n')
    script.chmod(0o755)
    return script


def test_the_installed_wrapper_filters_an_exec_spec_and_hands_over_to_runc(
    tmp_path, fake_runc, monkeypatch
):
    """The file itself, started through its shebang as the engine starts it."""
    wrapper = tmp_path / "fleet-runc"
    wrapper.write_bytes(Path(runc_caps.__file__).read_bytes())
    wrapper.chmod(0o755)
    spec = tmp_path / "process.json"
    asked = ["CAP_KILL", "CAP_SYS_RESOURCE", "CAP_NOT_KNOWN"]
    spec.write_text(json.dumps({"args": ["true"], "capabilities": {"bounding": asked}}))
    # -I keeps PYTHON* variables out: a json module planted on PYTHONPATH is never imported.
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "json.py").write_text("raise SystemExit('planted json imported')\n")
    monkeypatch.setenv("PYTHONPATH", str(planted))
    monkeypatch.setenv("FLEET_REAL_RUNC", str(fake_runc))
    done = subprocess.run(
        [str(wrapper), "exec", "--process", str(spec), "cid"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, _, rest = done.stdout.partition("\n")
    assert first == f"args: exec --process {spec} cid"
    with open("/proc/self/status", encoding="ascii") as status:
        allowed = runc_caps.bounding_set(status.read())
    expected = [name for name in asked if name in allowed or name == "CAP_NOT_KNOWN"]
    assert json.loads(rest)["capabilities"]["bounding"] == expected


def test_the_wrapper_passes_calls_without_a_spec_straight_through(tmp_path, fake_runc):
    done = subprocess.run(
        [sys.executable, runc_caps.__file__, "state", "cid"],
        env={"FLEET_REAL_RUNC": str(fake_runc), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.splitlines()[0] == "args: state cid"


def test_bootstrap_replaces_an_older_installed_wrapper(tmp_path, monkeypatch):
    installed = tmp_path / "libexec" / "fleet-runc"
    installed.parent.mkdir()
    installed.write_text("#!/usr/bin/python3\n# an older wrapper\n")
    monkeypatch.setattr(engine, "WRAPPER_PATH", installed)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0)
    reports = []
    assert engine.refresh_capability_wrapper(WRAPPER_RUNTIME, reports.append) is True
    assert installed.read_bytes() == Path(runc_caps.__file__).read_bytes()
    assert os.access(installed, os.X_OK)
    assert reports == [f"updated the capability wrapper {installed}"]
    # Up to date now: nothing more to do, and nothing staged is left behind.
    assert engine.refresh_capability_wrapper(WRAPPER_RUNTIME, reports.append) is False
    assert sorted(p.name for p in installed.parent.iterdir()) == ["fleet-runc"]


def test_bootstrap_leaves_the_wrapper_alone_when_the_engine_does_not_use_it(tmp_path, monkeypatch):
    installed = tmp_path / "fleet-runc"
    installed.write_text("# an older wrapper\n")
    monkeypatch.setattr(engine, "WRAPPER_PATH", installed)
    assert engine.refresh_capability_wrapper("runc", print) is False
    assert installed.read_text() == "# an older wrapper\n"


def test_a_user_without_root_is_told_how_to_update_the_wrapper(tmp_path, monkeypatch):
    installed = tmp_path / "fleet-runc"
    installed.write_text("# an older wrapper\n")
    monkeypatch.setattr(engine, "WRAPPER_PATH", installed)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    reports = []
    assert engine.refresh_capability_wrapper(WRAPPER_RUNTIME, reports.append) is False
    assert installed.read_text() == "# an older wrapper\n"
    assert reports == [
        f"{installed} is an older version; `sudo python -m fleet bootstrap` updates it"
    ]
