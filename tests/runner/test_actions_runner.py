"""The GitHub Actions agent: installed, unprivileged, its secret never on a command line.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from host_shell import Shell
from role_vars import RoleVars

JIT_VARIABLE = "ACTIONS_RUNNER_INPUT_JITCONFIG"
AGENT_PROCESS = re.compile(r"(run\.sh|run-helper\.sh|Runner\.Listener|Runner\.Worker)")


def _unit_properties(root: Shell, unit: str, *names: str) -> dict[str, str]:
    output = root.check("systemctl show --property=%s %s", ",".join(names), unit)
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def unit(role_vars: RoleVars) -> str:
    return role_vars["__actions_runner_unit"]


@pytest.fixture(scope="module")
def agent_env(root: Shell, role_vars: RoleVars) -> dict[str, str]:
    """The agent's .env (KEY=VALUE lines) that the agent and its jobs inherit."""
    content = root.check("cat %s", f"{role_vars['__actions_runner_current']}/.env")
    return dict(line.split("=", 1) for line in content.splitlines() if "=" in line)


def test_the_agent_is_installed_with_run_sh(root: Shell, role_vars: RoleVars) -> None:
    """The runner agent is installed and its run.sh is executable.

    Property 11: current points at <version>-<sha256 prefix> of the pinned release (with
    actions_runner_version latest: of whichever release was newest at bake time), and that
    directory holds an executable run.sh."""
    current = role_vars["__actions_runner_current"]
    installed = root.check("readlink %s", current)
    if role_vars["actions_runner_version"] == "latest":
        install_dir = re.escape(role_vars["actions_runner_install_dir"])
        assert re.fullmatch(rf"{install_dir}/\d+\.\d+\.\d+-[0-9a-f]{{12}}", installed), installed
    else:
        assert installed == role_vars["__actions_runner_agent_dir"]
    assert root.check("stat -L -c %s %s", "%F %A", f"{current}/run.sh").startswith(
        "regular file -rwx"
    )


def test_the_runner_service_is_enabled_and_runs_as_the_runner_user(
    root: Shell, unit: str, runner_user: str
) -> None:
    """The runner service is enabled and runs as the runner user.

    Property 10: systemd starts the agent as the runner user, never as root."""
    state = _unit_properties(root, unit, "User", "UnitFileState", "NoNewPrivileges")
    assert state == {"User": runner_user, "UnitFileState": "enabled", "NoNewPrivileges": "yes"}
    assert runner_user != "root"


def test_an_outdated_agent_exits_with_its_own_code(root: Shell, unit: str) -> None:
    """An agent GitHub deems too old exits with its own code, 7.

    run.sh passes it through only with ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1,
    so AWS and the local fleet can tell "re-bake" from a runner that simply finished."""
    environment = _unit_properties(root, unit, "Environment")["Environment"].split()
    assert "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1" in environment


def test_the_runner_service_reads_its_jit_config_from_a_root_only_file(
    root: Shell, unit: str, role_vars: RoleVars
) -> None:
    """The runner service reads its just-in-time config from a root-only file.

    Property 7: the config reaches the agent through a root-only EnvironmentFile (0600
    when present, in a 0700 directory), not through its command line."""
    config_file = role_vars["__actions_runner_jitconfig_file"]
    state = _unit_properties(root, unit, "EnvironmentFiles", "ExecStart")
    assert state["EnvironmentFiles"].split()[0] == config_file
    assert "jitconfig" not in state["ExecStart"].lower()
    config_dir = role_vars["__actions_runner_config_dir"]
    assert root.check("stat -c %s %s", "%U:%G %a", config_dir) == "root:root 700"
    if root.run("test -e %s", config_file).rc == 0:
        assert root.check("stat -c %s %s", "%U:%G %a", config_file) == "root:root 600"


def _agent_pid(root: Shell, unit: str) -> int:
    """The unit's main process (0 when no runner is running, e.g. a freshly baked host)."""
    return int(_unit_properties(root, unit, "MainPID")["MainPID"])


def _jit_values(root: Shell, unit: str, role_vars: RoleVars) -> Iterator[str]:
    """The JIT config where it lives: the root-only file, or the running agent's environment."""
    config_file = role_vars["__actions_runner_jitconfig_file"]
    if root.run("test -e %s", config_file).rc == 0:
        value = root.check("cat %s", config_file).partition("=")[2].strip()
        if value:
            yield value
    pid = _agent_pid(root, unit)
    if pid:
        for entry in root.check("cat /proc/%s/environ", str(pid)).split("\0"):
            name, _, value = entry.partition("=")
            if name == JIT_VARIABLE and value:
                yield value


def test_no_runner_agent_process_runs_as_root(root: Shell, unit: str, runner_user: str) -> None:
    """No runner agent process runs as root.

    Property 10: the unit's main process, and anything that looks like the agent, belongs
    to the runner user."""
    pid = _agent_pid(root, unit)
    if pid:
        assert root.check("ps -o user:32= -p %s", str(pid)).strip() == runner_user
    processes = root.check("ps -eo user:32=,args=")
    agents = [line.split(None, 1) for line in processes.splitlines() if AGENT_PROCESS.search(line)]
    assert [user for user, _ in agents if user != runner_user] == [], agents


def test_no_jit_config_appears_on_any_command_line(
    root: Shell, unit: str, role_vars: RoleVars
) -> None:
    """No just-in-time config appears on any process's command line.

    Property 7: no process (ps, /proc/*/cmdline) carries the JIT config or its option.

    The secret is compared in memory, never printed."""
    command_lines = root.check(
        "sh -c %s",
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\" 2>/dev/null; echo; done",
    )
    assert not re.search(r"--jitconfig|ACTIONS_RUNNER_INPUT_JITCONFIG", command_lines)
    # Counted, never kept in the test's frame: pytest prints lists and locals it reports.
    leaks = sum(1 for value in _jit_values(root, unit, role_vars) if value in command_lines)
    assert leaks == 0, "a JIT config value is on a command line"


def test_the_job_hooks_are_installed_executable_and_referenced_in_the_agent_env(
    root: Shell, role_vars: RoleVars, agent_env: dict[str, str]
) -> None:
    """The job cleanup hooks are installed and the agent runs them around every job.

    Property 23: the agent runs the cleanup hooks before and after every job."""
    assert role_vars["actions_runner_job_cleanup"], "job hooks are off: jobs leave state behind"
    hooks = role_vars["__actions_runner_hooks_dir"]
    for phase in ("started", "completed"):
        hook = f"{hooks}/job-{phase}.sh"
        assert root.check("stat -c %s %s", "%U:%G %a", hook) == "root:root 755"
        assert agent_env[f"ACTIONS_RUNNER_HOOK_JOB_{phase.upper()}"] == hook


def test_the_agent_env_has_the_configured_path_and_variables(
    role_vars: RoleVars, agent_env: dict[str, str]
) -> None:
    """The agent's environment has the configured PATH and variables.

    Jobs find the toolchain first on PATH and get actions_runner_env."""
    assert agent_env["PATH"] == role_vars["actions_runner_path"]
    for name, value in role_vars["actions_runner_env"].items():
        assert agent_env.get(name) == str(value), name


@pytest.mark.xdist_group("host-containers")  # removes every container: see test_canary.py
def test_the_job_completed_hook_leaves_no_containers_volumes_or_networks(
    runner: Shell, role_vars: RoleVars, job_image: str
) -> None:
    """After a job, the cleanup hook leaves no containers, volumes or networks.

    Property 23: what a job leaves (a container with an anonymous volume, a named volume,
    a network) is gone after the job-completed hook; run it on an idle host."""
    created = runner.check(
        "sh -c %s _ %s",
        "set -eu; docker network create fleet-validate-net >/dev/null; "
        "docker volume create fleet-validate-vol >/dev/null; "
        'docker create --volume /data --network fleet-validate-net "$1" true',
        job_image,
    ).splitlines()[-1]
    hook = f"{role_vars['__actions_runner_hooks_dir']}/job-completed.sh"
    output = runner.check("%s", hook)
    assert "no containers, networks or volumes left" in output
    assert runner.check("docker ps --all --quiet --no-trunc") == ""
    assert runner.check("docker volume ls --quiet") == ""
    networks = runner.check("docker network ls --format %s", "{{.Name}}").split()
    assert "fleet-validate-net" not in networks
    assert created  # the container id docker create printed, gone with the rest
