"""The Docker engine of a runner host: service, daemon.json, socket, storage, cleanup.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest
from host_shell import Shell
from role_vars import RoleVars

DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_SOCKET = "/var/run/docker.sock"
PRUNE_UNIT = "docker-prune-low-disk"
# Interfaces whose routes the engine creates itself.
ENGINE_INTERFACES = re.compile(r"^(docker\d*|br-[0-9a-f]+|veth.*)$")


def _systemd_properties(root: Shell, unit: str, *names: str) -> dict[str, str]:
    output = root.check("systemctl show --property=%s %s", ",".join(names), unit)
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def docker_info(root: Shell) -> dict[str, Any]:
    """`docker info` of the host's engine, asked once for this module's checks."""
    return json.loads(root.check("docker info --format %s", "{{json .}}"))


@pytest.fixture(scope="module")
def daemon_json(root: Shell) -> dict[str, Any]:
    """The engine's daemon.json as the host has it, read once for this module's checks."""
    return json.loads(root.check("cat %s", DAEMON_JSON))


def test_the_docker_service_is_enabled_and_running(root: Shell) -> None:
    """The Docker service is enabled and running.

    systemd starts the engine at boot and it runs now."""
    state = _systemd_properties(root, "docker.service", "ActiveState", "UnitFileState", "SubState")
    assert state == {"ActiveState": "active", "SubState": "running", "UnitFileState": "enabled"}


def test_the_engine_runs_overlay2_on_the_configured_data_root(
    docker_info: dict[str, Any], role_vars: RoleVars
) -> None:
    """The engine stores its data with overlay2 on the configured data root.

    Property 23: the engine keeps its data where the data root was mounted, on overlay2."""
    info = docker_info
    assert info["Driver"] == "overlay2"
    assert info["DockerRootDir"] == role_vars["docker_host_data_root"]
    assert info["LiveRestoreEnabled"] == role_vars["docker_host_live_restore"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", info["ServerVersion"])


def test_daemon_json_has_the_configured_values(
    daemon_json: dict[str, Any], role_vars: RoleVars
) -> None:
    """The engine's daemon.json holds exactly the configured values.

    Property 21: daemon.json is exactly what the docker_host variables render."""
    assert daemon_json == role_vars["__docker_host_daemon_config"]


def test_daemon_json_is_owned_by_root_with_mode_0644(root: Shell) -> None:
    """Only root can change the engine's daemon.json.

    Property 21: only root can change the engine's configuration."""
    assert root.check("stat -c %s %s", "%U:%G %a", DAEMON_JSON) == "root:root 644"


def test_container_logs_are_rotated_with_bounded_size(
    docker_info: dict[str, Any], daemon_json: dict[str, Any], role_vars: RoleVars
) -> None:
    """Container logs are rotated at a bounded size.

    Property 21: json-file logs (unbounded by default) rotate at the configured limits."""
    info, config = docker_info, daemon_json
    assert info["LoggingDriver"] == config["log-driver"] == "json-file"
    assert config["log-opts"]["max-size"] == str(role_vars["docker_host_log_max_size"])
    assert config["log-opts"]["max-file"] == str(role_vars["docker_host_log_max_file"])
    assert re.fullmatch(r"[1-9]\d*[kmg]?", config["log-opts"]["max-size"])
    assert int(config["log-opts"]["max-file"]) >= 1


def test_the_address_pools_do_not_overlap_the_hosts_networks(
    root: Shell, role_vars: RoleVars, vpc_cidrs: list[str]
) -> None:
    """The engine's address pools do not overlap the host's networks.

    Property 21: networks the engine creates never shadow the VPC or the host's routes."""
    pools = [
        ipaddress.ip_network(p["base"]) for p in role_vars["docker_host_default_address_pools"]
    ]
    assert pools, "docker_host_default_address_pools is empty: the engine would pick 172.17/16"
    routes = json.loads(root.check("ip -json -4 route show"))
    host_networks = [
        ipaddress.ip_network(r["dst"], strict=False)
        for r in routes
        if r["dst"] != "default" and not ENGINE_INTERFACES.match(r.get("dev", ""))
    ]
    taken = host_networks + [ipaddress.ip_network(c) for c in vpc_cidrs]
    overlaps = [(str(p), str(t)) for p in pools for t in taken if p.overlaps(t)]
    assert overlaps == [], f"address pools overlap: {overlaps}"


def test_the_docker_socket_is_owned_by_root_and_the_docker_group_with_mode_0660(
    root: Shell,
) -> None:
    """Only root and the docker group can use the Docker socket.

    Property 22: only root and members of the docker group reach the engine."""
    assert root.check("stat -L -c %s %s", "%U:%G %a %F", DOCKER_SOCKET) == "root:docker 660 socket"


def test_the_engine_does_not_listen_on_tcp(root: Shell, daemon_json: dict[str, Any]) -> None:
    """The engine does not listen on TCP.

    Property 20: no plain 2375 (nor any TCP API) on the host's engine."""
    listeners = root.check("ss --no-header --listening --tcp --numeric --processes")
    assert not re.search(r":(2375|2376)\s", listeners), listeners
    assert '"dockerd"' not in listeners, listeners
    command_line = root.check("ps -o args= -C dockerd")
    assert "dockerd" in command_line
    assert "tcp://" not in command_line
    assert "hosts" not in daemon_json


def test_the_data_root_is_its_own_mount(root: Shell, role_vars: RoleVars) -> None:
    """The engine's data root is a filesystem of its own.

    Property 23: /var/lib/docker is a filesystem of its own (not the root filesystem, and
    not overlay, on which overlay2 cannot work); locally it is a Docker volume."""
    data_root = role_vars["docker_host_data_root"]
    target, fstype = root.check("findmnt -n -o TARGET,FSTYPE --target %s", data_root).split()
    assert target == data_root, f"{data_root} is part of the filesystem mounted at {target}"
    assert fstype not in {"overlay", "tmpfs", "aufs"}, f"{data_root} is on {fstype}"


def test_the_prune_timer_is_active_and_the_threshold_is_configured(
    root: Shell, role_vars: RoleVars
) -> None:
    """A timer prunes images and volumes when free disk space runs low.

    Property 23: a timer prunes images and volumes when free space falls under the
    configured percentage."""
    timer = _systemd_properties(root, f"{PRUNE_UNIT}.timer", "ActiveState", "UnitFileState")
    assert timer == {"ActiveState": "active", "UnitFileState": "enabled"}
    timer_file = root.check("systemctl cat %s", f"{PRUNE_UNIT}.timer")
    assert f"OnUnitActiveSec={role_vars['docker_host_prune_interval']}" in timer_file
    service = _systemd_properties(root, f"{PRUNE_UNIT}.service", "ExecStart")
    script = role_vars["__docker_host_prune_script"]
    assert f"path={script} " in service["ExecStart"]
    content = root.check("cat %s", script)
    assert f"threshold={int(role_vars['docker_host_prune_free_percent'])}\n" in content
    assert f"data_root={role_vars['docker_host_data_root']}\n" in content


def test_free_space_on_the_data_root_is_above_the_threshold(
    root: Shell, role_vars: RoleVars
) -> None:
    """The data root has more free space than the prune threshold.

    Property 23: right now, the data root has more free space than the prune threshold."""
    data_root = role_vars["docker_host_data_root"]
    used = root.check("df --output=pcent %s", data_root).splitlines()[-1]
    free = 100 - int(used.strip().rstrip("%"))
    assert free > int(role_vars["docker_host_prune_free_percent"]), f"{free}% free"


def test_the_images_jobs_start_from_are_in_the_engine(
    root: Shell, runner: Shell, role_vars: RoleVars, job_image: str
) -> None:
    """The images jobs start from are in the engine.

    Every preloaded image (jobs without a registry start from them) is in the engine, and
    the job image the other checks use is there or can be pulled by the runner user."""
    names = [image["name"] for image in role_vars["docker_host_preload_images"]]
    if names:
        # The host loads them itself at every start (a fresh data volume lacks them).
        unit = "docker-preload-images.service"
        assert root.check("systemctl is-enabled %s", unit) == "enabled"
        state = root.check("systemctl show --property=ActiveState,Result %s", unit).split()
        assert sorted(state) == ["ActiveState=active", "Result=success"]
    for name in names:
        image_id = root.check("docker image inspect --format %s %s", "{{.Id}}", name)
        assert image_id.startswith("sha256:"), f"{name}: {image_id}"
    if job_image not in names:
        present = runner.run("docker image inspect --format %s %s", "{{.Id}}", job_image)
        if present.rc != 0:
            runner.check("docker pull --quiet %s", job_image)
        image_id = runner.check("docker image inspect --format %s %s", "{{.Id}}", job_image)
        assert image_id.startswith("sha256:"), f"{job_image}: {image_id}"
