"""User data: valid cloud-init, shell that passes bash -n and shellcheck, names and paths only."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
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


# -- runner-bootstrap --bake-only, run for real in a sandbox -----------------------------------
#
# The script's absolute paths are moved under a temporary root and every command that would
# reach the machine or AWS is a stub on PATH that records its arguments; python3, bash and
# coreutils are the real ones. The real boot is the instance simulation's (tests/e2e).

ROOT_PATHS = (
    "/etc/runner-fleet",
    "/opt/runner-fleet",
    "/var/lib/runner-fleet",
    "/run/runner-fleet",
    "/usr/local/sbin/runner-terminate-self",
)
RECORDING_STUB = """#!/bin/sh
printf '%s %s\\n' "$(basename "$0")" "$*" >>"$CALLS"
"""


def sandboxed(tmp_path: Path, *, bake_status: int = 0) -> tuple[Path, dict[str, str]]:
    """The boot script with its paths under tmp_path, and an environment of stubs."""
    root = tmp_path / "root"
    script = (HERE / "bootstrap.sh").read_text()
    for path in ROOT_PATHS:
        assert path in script
        script = script.replace(path, f"{root}{path}")
    target = tmp_path / "runner-bootstrap"
    target.write_text(script)
    env_file = root / "etc/runner-fleet/fleet.env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(fleet_env(SETTINGS))
    # A bundle as PlaybookBundle ships it.
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("playbooks/bake.yml", "- hosts: runners\n")
        archive.writestr("playbooks/boot.yml", "- hosts: runners\n")
        archive.writestr("runner-vars.yml", "{}\n")
    stubs = tmp_path / "stubs"
    venv_bin = root / "opt/runner-fleet/venv/bin"
    for directory in (stubs, venv_bin, root / "usr/local/sbin"):
        directory.mkdir(parents=True, exist_ok=True)
    scripts = {
        # Anything that touches the machine, IMDS or the lifecycle: recorded, and it fails.
        stubs / name: RECORDING_STUB + "exit 97\n"
        for name in ("curl", "mkfs.ext4", "mount", "mountpoint", "blkid", "lsblk", "apt-get")
    }
    scripts[stubs / "dpkg"] = RECORDING_STUB
    scripts[stubs / "systemctl"] = RECORDING_STUB + "echo running\n"
    scripts[root / "usr/local/sbin/runner-terminate-self"] = RECORDING_STUB
    scripts[venv_bin / "aws"] = (
        RECORDING_STUB + 'if [ "$1 $2" = "s3 cp" ]; then exec cp "$BUNDLE_ZIP" "$5"; fi\nexit 97\n'
    )
    scripts[venv_bin / "ansible-playbook"] = (
        RECORDING_STUB + 'printf "cwd %s\\n" "$PWD" >>"$CALLS"\n' + f"exit {bake_status}\n"
    )
    for path, text in scripts.items():
        path.write_text(text)
        path.chmod(0o755)
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "CALLS": str(tmp_path / "calls"),
        "BUNDLE_ZIP": str(bundle),
        "HOME": str(tmp_path),
    }
    return target, env


def run_sandboxed(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60
    )


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["CALLS"])
    return path.read_text().splitlines() if path.exists() else []


def test_bake_only_bakes_leaves_the_marker_and_touches_nothing_else(tmp_path):
    script, env = sandboxed(tmp_path)
    result = run_sandboxed(script, env, "--bake-only")
    assert result.returncode == 0, result.stderr
    root = tmp_path / "root"
    assert (root / "var/lib/runner-fleet/baked").is_file()
    made = calls(env)
    bundle = f"s3://{SETTINGS.bundle_bucket}/{SETTINGS.bundle_key}"
    assert f"aws s3 cp --only-show-errors {bundle} {root}/run/runner-fleet/bundle.zip" in made
    playbooks = [c for c in made if c.startswith("ansible-playbook")]
    assert playbooks == [
        f"ansible-playbook -i {root}/etc/runner-fleet/inventory.yml bake.yml "
        f"-e @{root}/opt/runner-fleet/bundle/runner-vars.yml"
    ]
    assert f"cwd {root}/opt/runner-fleet/bundle/playbooks" in made
    # No IMDS (lifecycle state, instance id), no JIT config, no Docker volume, no leaving.
    assert not [c for c in made if c.split()[0] in {"curl", "mkfs.ext4", "mount", "blkid"}]
    assert not [c for c in made if c.startswith(("aws ssm", "aws autoscaling"))]
    assert not [c for c in made if c.startswith("runner-terminate-self")]
    assert "bake done; the image is ready" in result.stderr


def test_a_failed_bake_exits_non_zero_and_terminates_nothing(tmp_path):
    script, env = sandboxed(tmp_path, bake_status=3)
    result = run_sandboxed(script, env, "--bake-only")
    assert result.returncode == 3
    assert not (tmp_path / "root/var/lib/runner-fleet/baked").exists()
    assert not [c for c in calls(env) if c.startswith("runner-terminate-self")]
    assert "bake failed (exit 3); no image is made from this instance" in result.stderr


def test_a_missing_bundle_fails_the_bake_only_run_without_terminating(tmp_path):
    script, env = sandboxed(tmp_path)
    env["BUNDLE_ZIP"] = str(tmp_path / "nothing-here.zip")
    result = run_sandboxed(script, env, "--bake-only")
    assert result.returncode != 0
    assert "cannot download the bundle" in result.stderr
    assert not [c for c in calls(env) if c.startswith(("runner-terminate-self", "ansible"))]


def test_the_normal_boot_still_leaves_its_group_when_it_fails(tmp_path):
    # Without --bake-only a failure ends the instance, as before (here: no Docker volume).
    script, env = sandboxed(tmp_path)
    result = run_sandboxed(script, env)
    assert result.returncode != 0
    assert "this instance leaves its group" in result.stderr
    assert [c for c in calls(env) if c.startswith("runner-terminate-self")] == [
        "runner-terminate-self boot failed"
    ]


@pytest.mark.parametrize("args", [("--bake",), ("--bake-only", "extra"), ("boot",)])
def test_unknown_arguments_are_refused_before_anything_runs(tmp_path, args):
    script, env = sandboxed(tmp_path)
    result = run_sandboxed(script, env, *args)
    assert result.returncode == 2
    assert result.stderr == "usage: runner-bootstrap [--bake-only]\n"
    assert calls(env) == []


# -- runner-terminate-self: an agent too old for GitHub is reported before the host leaves ---


def terminate_self_sandboxed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """runner-terminate-self with fleet.env under tmp_path; IMDS, systemd and the AWS CLI are
    recording stubs (the CLI's calls succeed)."""
    env_file = tmp_path / "fleet.env"
    env_file.write_text(fleet_env(SETTINGS))
    script = (HERE / "terminate-self.sh").read_text()
    script = script.replace("/etc/runner-fleet/fleet.env", str(env_file))
    script = script.replace("/opt/runner-fleet/venv/bin", str(tmp_path / "stubs"))
    target = tmp_path / "runner-terminate-self"
    target.write_text(script)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, body in {
        "curl": 'case "$*" in *instance-id*) echo i-0aaaaaaaaaaaaaaaa;; *) echo token;; esac\n',
        "systemctl": "exit 0\n",  # runner-boot.service is active: the boot is complete
        "logger": "",
        "aws": "",
    }.items():
        (stubs / name).write_text(RECORDING_STUB + body)
        (stubs / name).chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")}
    return target, env


@pytest.mark.parametrize(
    ("exit_code", "exit_status", "reported"),
    [
        ("exited", "7", True),
        ("exited", "0", False),
        ("exited", "1", False),
        ("killed", "TERM", False),
    ],
)
def test_an_outdated_agent_is_reported_then_the_host_leaves(
    tmp_path, exit_code, exit_status, reported
):
    """ExecStopPost after the agent exits: exit 7 (agent too old for GitHub) puts one datapoint
    into the fleet's runner namespace, the one the alarm watches; any other end reports
    nothing. Either way the instance leaves its group."""
    script, env = terminate_self_sandboxed(tmp_path)
    env |= {"SERVICE_RESULT": "exit-code", "EXIT_CODE": exit_code, "EXIT_STATUS": exit_status}
    result = run_sandboxed(script, env)
    assert result.returncode == 0, result.stderr
    aws = [c for c in calls(env) if c.startswith("aws ")]
    report = (
        "aws cloudwatch put-metric-data --namespace RunnerFleet/Runners/main "
        "--metric-name RunnerAgentOutdated --value 1"
    )
    assert aws[0] == report if reported else report not in aws
    assert aws[-1].startswith("aws autoscaling terminate-instance-in-auto-scaling-group")
    logged = [c for c in calls(env) if c.startswith("logger ")]
    too_old = any("agent too old for GitHub (exit 7)" in line for line in logged)
    assert too_old is reported


def test_a_failed_report_does_not_keep_the_host(tmp_path):
    script, env = terminate_self_sandboxed(tmp_path)
    (tmp_path / "stubs" / "aws").write_text(
        RECORDING_STUB + '[ "$1" = cloudwatch ] && exit 255\nexit 0\n'
    )
    result = run_sandboxed(script, {**env, "EXIT_CODE": "exited", "EXIT_STATUS": "7"})
    assert result.returncode == 0, result.stderr
    assert calls(env)[-1].startswith("aws autoscaling terminate-instance-in-auto-scaling-group")
