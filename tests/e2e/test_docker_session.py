"""The docker-session testinfra backend answers exactly as testinfra's docker backend does.

Both run against the same real container on the local engine, side by side.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import testinfra

from fleet.local.engine.bootstrap import Bootstrap
from tests.runner import docker_session

pytestmark = pytest.mark.e2e

# Commands whose exit status, stdout and stderr must come back byte for byte.
COMMANDS = [
    "true",
    "false",
    "exit 3",
    "echo out; echo err >&2",
    "printf 'no newline at the end'",
    "printf '0 0 0\\nready\\n'",  # looks like the session's own header lines
    "printf '\\000\\001\\377binary\\n'",
    "head -c 1048576 /dev/zero | tr '\\0' x",  # 1 MiB
    "cat; echo stdin-is-empty",
    "echo 'single '\"'\"'quotes'\"'\"' and \"double\"'",
    "for i in 1 2 3; do\n  echo line $i\ndone",
    "id -u; id -gn; pwd; echo HOME=$HOME; umask",
    "env | grep -v -e '^HOSTNAME=' -e '^_=' | sort",
    "cd /nonexistent",
    "kill -9 $$",
]


@pytest.fixture(scope="module")
def container(boot: Bootstrap) -> Iterator[str]:
    name = f"e2e-session-{secrets.token_hex(3)}"
    client = docker.from_env()
    client.containers.run(
        boot.images.base, ["sleep", "infinity"], name=name, detach=True, init=True
    )
    yield name
    client.containers.get(name).remove(force=True)


def _answer(host: testinfra.host.Host, command: str) -> tuple[int, bytes, bytes]:
    result = host.run(command)
    return result.rc, result.stdout_bytes, result.stderr_bytes


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_gets_the_answer_docker_exec_gives(container: str, command: str) -> None:
    stock = testinfra.get_host(f"docker://{container}")
    fast = docker_session.DockerSessionBackend(container)
    try:
        expected = _answer(stock, command)
        result = fast.run(command)
        assert (result.rc, result.stdout_bytes, result.stderr_bytes) == expected
        assert result.command == command.encode()
    finally:
        fast.close()


def test_one_shell_serves_every_command_and_cleans_up_after_itself(container: str) -> None:
    fast = docker_session.DockerSessionBackend(container)
    parents = {fast.run("echo $PPID").stdout.strip() for _ in range(5)}
    assert len(parents) == 1, parents  # one long-lived shell, not an exec per command
    directory = fast.run("ls -d /tmp/fleet-session.*").stdout.strip()
    assert fast.run("stat -c %%a %s", directory).stdout.strip() == "700"
    fast.close()
    stock = testinfra.get_host(f"docker://{container}")
    assert stock.run("ls -d /tmp/fleet-session.* 2>/dev/null").stdout == ""


def test_a_user_in_the_spec_runs_the_commands(container: str) -> None:
    fast = docker_session.DockerSessionBackend(f"nobody@{container}")
    try:
        assert fast.run("id -un").stdout.strip() == "nobody"
    finally:
        fast.close()


def test_the_scheme_is_registered_for_host_specs(container: str) -> None:
    docker_session.register()
    host = testinfra.get_host(f"docker-session://{container}")
    # The runner suite's conftest may have registered the same file under its own module
    # name (`docker_session`) first: compare the class by its source, not its identity.
    backend_class = type(host.backend)
    assert backend_class.__qualname__ == "DockerSessionBackend"
    assert Path(inspect.getfile(backend_class)) == Path(docker_session.__file__)
    assert host.backend.get_pytest_id() == f"docker-session://{container}"
    assert host.file("/etc/os-release").contains("Debian")
    host.backend.close()


def test_a_shell_lost_during_a_command_fails_it_and_the_next_command_gets_a_new_shell(
    container: str,
) -> None:
    """A command is never sent twice: it may have had effects before the shell went."""
    fast = docker_session.DockerSessionBackend(container)
    try:
        first = fast.run("echo $PPID").stdout
        with pytest.raises(docker_session.SessionLost, match="ended during a command"):
            fast.run("echo ran >> /tmp/session-marker; kill -9 $PPID")
        assert fast.run("cat /tmp/session-marker").stdout == "ran\n"
        assert fast.run("echo $PPID").stdout not in ("", first)
    finally:
        fast.run("rm -f /tmp/session-marker")
        fast.close()


def test_a_missing_container_is_a_clear_error() -> None:
    fast = docker_session.DockerSessionBackend(f"no-such-container-{secrets.token_hex(3)}")
    with pytest.raises(
        docker_session.SessionLost, match="cannot start a shell in no-such-container"
    ):
        fast.run("true")
    fast.close()
