"""The capability wrapper that lets old engines start privileged containers."""

import json

import pytest

from fleet.engine import runc_caps
from fleet.engine.engine import WRAPPER_RUNTIME, merged_daemon_config

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
