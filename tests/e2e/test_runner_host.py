"""A runner host, end to end: image, converge, idempotence, validation, bad input.

Real engine, real privileged systemd container, real playbooks through
ansible-runner, and the real testinfra suite (which runs the canary suite).
"""

from __future__ import annotations

import pytest

from fleet.local import docker as backend
from fleet.local import provision, validate
from fleet.local.engine.bootstrap import bootstrap
from fleet.local.engine.engine import client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def first_converge(host: str, local_vars: dict) -> provision.ConvergeResult:
    return provision.converge(provision.docker_inventory([host]), "site.yml", local_vars)


def test_bootstrap_on_a_warm_machine_reuses_the_cached_images(boot):
    messages: list[str] = []
    again = bootstrap(messages.append)
    assert again.images == boot.images
    assert not [m for m in messages if "debootstrap" in m or "building" in m]
    image = client().images.get(boot.images.runner_host)
    assert image.labels["dev.fleet.recipe"]
    assert boot.images.preload_tar.stat().st_size > 50_000_000
    # No .debs left behind by debootstrap: every host loads this image at start.
    cached = client().containers.run(
        boot.images.base, ["ls", "-A", "/var/cache/apt/archives"], remove=True
    )
    assert cached.decode().split() == ["partial"]


def test_runner_host_boots_systemd_as_pid_1(host, fleet_name):
    container = client().containers.get(host)
    assert container.exec_run(["cat", "/proc/1/comm"]).output.decode().strip() == "systemd"
    assert container.labels[backend.LABEL_FLEET] == fleet_name
    assert [c.name for c in backend.list_hosts(fleet_name)] == [host]
    assert container.attrs["HostConfig"]["Privileged"] is True


def test_first_converge_succeeds(first_converge, host):
    assert first_converge.ok, "\n".join(first_converge.failures)
    assert first_converge.stats[host]["failures"] == 0
    assert first_converge.stats[host]["changed"] > 0


def test_second_converge_changes_nothing(first_converge, host, local_vars):
    assert first_converge.ok
    again = provision.converge(provision.docker_inventory([host]), "site.yml", local_vars)
    assert again.ok, "\n".join(again.failures)
    assert again.stats[host]["changed"] == 0
    assert again.stats[host]["failures"] == 0
    assert again.stats[host]["dark"] == 0


def test_boot_waits_for_an_image_preload_that_is_still_running(first_converge, host, local_vars):
    """boot.yml returns only once the preload unit is done, not while it is activating
    (the systemd module alone calls an activating unit started)."""
    assert first_converge.ok
    container = client().containers.get(host)
    unit = "docker-preload-images.service"
    drop_in = f"/run/systemd/system/{unit}.d/slow.conf"

    def sh(script: str) -> str:
        result = container.exec_run(["sh", "-c", script])
        assert result.exit_code == 0, result.output.decode()
        return result.output.decode().strip()

    sh(
        f"mkdir -p {drop_in.rsplit('/', 1)[0]} && "
        f"printf '[Service]\\nExecStartPre=/bin/sleep 4\\n' > {drop_in} && "
        f"systemctl daemon-reload && systemctl restart --no-block {unit}"
    )
    try:
        assert sh(f"systemctl show --property=ActiveState --value {unit}") == "activating"
        booted = provision.converge(provision.docker_inventory([host]), "boot.yml", local_vars)
        assert booted.ok, "\n".join(booted.failures)
        assert sh(f"systemctl show --property=ActiveState --value {unit}") == "active"
    finally:
        sh(f"rm -f {drop_in} && systemctl daemon-reload")


def test_validation_suite_passes_including_the_canary(first_converge, host, local_vars, tmp_path):
    assert first_converge.ok
    import yaml

    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(yaml.safe_dump(local_vars))
    outcome = validate.validate([f"docker://{host}"], tmp_path / "junit.xml", vars_file)
    failed = [c for c in outcome.checks if c.outcome != "passed"]
    assert outcome.ok, outcome.output[-6000:] + "\n" + repr(failed)
    names = {c.name for c in outcome.checks}
    assert any("canary" in name for name in names), sorted(names)
    assert len(outcome.checks) >= 15


def test_bad_variable_fails_at_role_start_naming_it(first_converge, host, local_vars):
    bad = {**local_vars, "docker_host_log_max_file": "lots"}
    result = provision.converge(provision.docker_inventory([host]), "site.yml", bad)
    assert not result.ok
    assert result.stats[host]["changed"] == 0
    assert any("docker_host_log_max_file" in message for message in result.failures), (
        result.failures
    )


def test_wrong_checksum_fails_before_anything_is_unpacked(first_converge, host, local_vars):
    version = "9.9.9"
    bad = {
        **local_vars,
        "actions_runner_version": version,
        "actions_runner_sha256": "0" * 64,
    }
    result = provision.converge(provision.docker_inventory([host]), "site.yml", bad)
    assert not result.ok
    assert any("checksum" in message.lower() for message in result.failures), result.failures
    container = client().containers.get(host)
    listing = container.exec_run(["sh", "-c", "ls /opt/actions-runner"]).output.decode()
    assert version not in listing
