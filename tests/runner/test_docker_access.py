"""What jobs do with Docker, done as the runner user: reach the engine, DinD, isolation.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import re

import pytest
from host_shell import Shell
from role_vars import RoleVars

# Checks that start, count or remove containers on the host run one after another on one
# xdist worker (`--dist loadgroup`): the job-completed hook removes every container, and the
# canary counts what is left.
pytestmark = pytest.mark.xdist_group("host-containers")

GREETING = "hello from a container inside a privileged container"

# DinD as a job runs it: a privileged container running dockerd; a tiny image made from the
# host's static busybox is imported into the nested engine and run there.
DIND_SCRIPT = r"""
set -eu
name="fleet-validate-dind-$$"
docker run --detach --rm --privileged --name "$name" "$1" \
    dockerd --host=unix:///var/run/docker.sock >/dev/null
trap 'docker rm --force --volumes "$name" >/dev/null 2>&1 || :' EXIT
# Wait inside the DinD container (one exec, not one per try; fails at once if it exits).
docker exec "$name" timeout 120 sh -c \
    'until [ -S /var/run/docker.sock ] && docker version >/dev/null 2>&1; do sleep 0.2; done'
echo "privileged=$(docker inspect --format '{{.HostConfig.Privileged}}' "$name")"
busybox=$(command -v busybox)
tar -C "$(dirname "$busybox")" --transform 's,^,bin/,' -cf - busybox \
    | docker exec -i "$name" docker import - fleet-validate/busybox:1 >/dev/null
docker exec "$name" docker run --rm fleet-validate/busybox:1 /bin/busybox echo "$2"
"""

# A job container on the default bridge asks IMDS for a session token (IMDSv2) and for the
# instance role's credentials, with bash's /dev/tcp (job images need not have curl).
IMDS_SCRIPT = r"""
ask() {
    timeout 5 bash -c 'exec 3<>/dev/tcp/169.254.169.254/80 && printf "$1" >&3 && cat <&3' _ "$1" 2>&1
}
token=$(ask 'PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
echo "token-exit=$? $token"
credentials=$(ask 'GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n')
echo "credentials-exit=$? $credentials"
"""  # noqa: E501

SOCKET_SCRIPT = r"""
for path in /var/run/docker.sock /run/docker.sock; do
    if [ -e "$path" ]; then echo "found $path"; fi
done
echo "docker.sock mounts: $(grep -c docker.sock /proc/mounts)"
"""


def _canary_image(runner: Shell, role_vars: RoleVars, recipe: str) -> str:
    """An image from the canary's builder (official when pullable, else built locally, cached)."""
    code = (
        f"import sys; sys.path.insert(0, {role_vars['test_toolchain_canary_dest']!r}); "
        "import docker, canary_images; "
        f"print(canary_images.ensure_image(docker.from_env(timeout=900), canary_images.{recipe}))"
    )
    python = f"{role_vars['test_toolchain_venv']}/bin/python"
    return runner.check("%s -c %s", python, code).splitlines()[-1]


def test_the_runner_user_reaches_docker_without_sudo(root: Shell, runner: Shell) -> None:
    """The runner user reaches the Docker engine without sudo.

    `docker info` as the runner user shows the same server the host runs."""
    server = root.check("docker version --format %s", "{{.Server.Version}}")
    info = runner.check("docker info --format %s", "server={{.ServerVersion}}")
    assert info == f"server={server}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", server)


def test_the_runner_user_can_start_a_privileged_container_and_a_container_inside_it(
    runner: Shell, role_vars: RoleVars
) -> None:
    """The runner user can start a privileged container and a container inside it.

    DinD as jobs run it: a privileged dockerd, and a container started inside it."""
    image = _canary_image(runner, role_vars, "DIND")
    output = runner.check("sh -c %s _ %s %s", DIND_SCRIPT, image, GREETING)
    assert "privileged=true" in output
    assert output.splitlines()[-1] == GREETING


def test_a_job_container_on_the_bridge_network_gets_no_imds_token(
    runner: Shell, job_image: str
) -> None:
    """A job container on the bridge network gets no instance metadata token or credentials.

    Property 2: no token and no credentials reach a bridge-network container (on AWS the
    IMDS hop limit of 1 drops the answers; elsewhere there is no route, or a proxy refuses)."""
    output = runner.check("docker run --rm --network bridge %s bash -c %s", job_image, IMDS_SCRIPT)
    assert "token-exit=" in output and "credentials-exit=" in output, output
    statuses = re.findall(r"HTTP/1\.[01] (\d{3})", output)
    assert [status for status in statuses if status.startswith("2")] == [], output
    assert "AccessKeyId" not in output, output


def test_a_container_the_runner_user_starts_gets_no_docker_socket(
    runner: Shell, job_image: str
) -> None:
    """A container the runner user starts gets no Docker socket.

    Property 22: the host's socket is not mounted into containers by default.

    (GitHub's agent itself mounts it into `container:` jobs; see docs/validation.md.)"""
    output = runner.check("docker run --rm %s sh -c %s", job_image, SOCKET_SCRIPT)
    assert "found" not in output, output
    assert output.splitlines()[-1] == "docker.sock mounts: 0"
