"""User data: valid cloud-init, shell that passes bash -n and shellcheck, names and paths only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.config import parse_config
from infra.user_data import (
    HERE,
    MAX_USER_DATA_BYTES,
    UserDataSettings,
    cloud_config,
    fleet_env,
    render_user_data,
)

pytestmark = pytest.mark.unit

SETTINGS = UserDataSettings(
    fleet_name="main",
    region="eu-west-1",
    asg_name="runner-fleet-main",
    launch_hook_name="runner-fleet-main-launch",
    parameter_root="/runner-fleet/main",
    bundle_bucket="main-bundle-bucket-a1b2c3d",
    bundle_key="bundles/playbooks-0123456789abcdef0123.zip",
    baked_image=False,
    docker_volume_gib=100,
    jit_wait_seconds=1200,
)
SCRIPTS = {
    "/usr/local/sbin/runner-bootstrap": "bootstrap.sh",
    "/usr/local/sbin/runner-terminate-self": "terminate-self.sh",
}


@pytest.fixture(scope="module")
def document() -> dict:
    text = render_user_data(SETTINGS)
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def files(document: dict) -> dict[str, dict]:
    return {entry["path"]: entry for entry in document["write_files"]}


def test_user_data_is_a_cloud_config_with_the_required_keys(document):
    assert set(document) == {"write_files", "runcmd"}
    assert set(files(document)) == {
        "/etc/runner-fleet/fleet.env",
        "/etc/runner-fleet/inventory.yml",
        "/usr/local/sbin/runner-bootstrap",
        "/usr/local/sbin/runner-terminate-self",
        "/etc/systemd/system/runner-boot.service",
        "/etc/systemd/system/actions-runner.service.d/50-terminate-self.conf",
    }
    for entry in document["write_files"]:
        assert set(entry) == {"path", "owner", "permissions", "content"}
        assert entry["owner"] == "root:root"
    assert document["runcmd"][-1] == ["systemctl", "start", "--no-block", "runner-boot.service"]


def test_files_keep_their_exact_content_and_root_only_modes(document):
    written = files(document)
    for path, source in SCRIPTS.items():
        assert written[path]["content"] == (HERE / source).read_text()
        assert written[path]["permissions"] == "0700"
    assert written["/etc/runner-fleet/fleet.env"]["permissions"] == "0600"


def test_user_data_fits_the_ec2_limit():
    # The longest prefix accepted with fleetName main (the function names cap it).
    big = parse_config({"githubScope": "my-org", "ssmParameterPrefix": "p" * 49})
    settings = UserDataSettings(**{**SETTINGS.__dict__, "parameter_root": big.parameter_root})
    assert len(render_user_data(settings).encode()) < MAX_USER_DATA_BYTES


@pytest.mark.parametrize("path", sorted(SCRIPTS))
def test_shell_parts_pass_bash_n(document, path, tmp_path):
    script = tmp_path / Path(path).name
    script.write_text(files(document)[path]["content"])
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted(SCRIPTS))
def test_shell_parts_pass_shellcheck(document, path, tmp_path):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is required (apt-get install shellcheck)"
    script = tmp_path / Path(path).name
    script.write_text(files(document)[path]["content"])
    result = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_fleet_env_is_sourceable_and_holds_the_names(tmp_path):
    env = tmp_path / "fleet.env"
    env.write_text(fleet_env(SETTINGS))
    result = subprocess.run(
        [
            "bash",
            "-c",
            'set -u; . "$1"; printf "%s|%s|%s|%s" "$PARAMETER_ROOT" "$BUNDLE_KEY" '
            '"$BAKED_IMAGE" "$ASG_NAME"',
            "_",
            str(env),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == (
        "/runner-fleet/main|bundles/playbooks-0123456789abcdef0123.zip|false|runner-fleet-main"
    )


def test_inventory_targets_the_runners_group_locally(document):
    inventory = yaml.safe_load(files(document)["/etc/runner-fleet/inventory.yml"]["content"])
    host = inventory["all"]["children"]["runners"]["hosts"]["localhost"]
    assert host["ansible_connection"] == "local"


def test_boot_script_reads_the_parameter_the_policy_allows():
    script = (HERE / "bootstrap.sh").read_text()
    # Same shape as FleetConfig.jit_parameter_template and the instance policy's resource.
    assert 'local name="$PARAMETER_ROOT/runners/$1/jitconfig"' in script
    cfg = parse_config({"githubScope": "my-org"})
    assert cfg.jit_parameter_template == f"{cfg.parameter_root}/runners/{{instance_id}}/jitconfig"


def test_boot_script_keeps_the_jit_config_off_command_lines():
    script = (HERE / "bootstrap.sh").read_text()
    assert "--with-decryption" in script
    assert '--output text >"$WORK/jitconfig"' in script  # value goes to a file, not a variable
    assert 'aws ssm delete-parameter --name "$name"' in script
    assert 'run_playbook boot.yml -e "@$WORK/boot-vars.json"' in script
    assert 'rm -f "$WORK/boot-vars.json"' in script
    assert "umask 077" in script
    assert "actions_runner_jitconfig=" not in script
    assert "X-aws-ec2-metadata-token-ttl-seconds" in script  # IMDSv2 only


def test_runner_leaves_its_group_after_the_job():
    dropin = (HERE / "terminate-self.conf").read_text()
    assert "ExecStopPost=+/usr/local/sbin/runner-terminate-self" in dropin
    script = (HERE / "terminate-self.sh").read_text()
    assert "terminate-instance-in-auto-scaling-group" in script
    assert "--should-decrement-desired-capacity" in script


def test_baked_flag_reaches_the_instance():
    baked = UserDataSettings(**{**SETTINGS.__dict__, "baked_image": True})
    document = cloud_config(baked)
    env = files(document)["/etc/runner-fleet/fleet.env"]["content"]
    assert "BAKED_IMAGE=true\n" in env
