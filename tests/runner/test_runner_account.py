"""The account jobs run as: unprivileged, in the docker group, no sudo.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

from host_shell import Shell
from role_vars import RoleVars

ADMIN_GROUPS = {"sudo", "wheel", "admin", "root"}


def test_the_runner_user_exists_and_is_not_root(
    root: Shell, runner_user: str, role_vars: RoleVars
) -> None:
    """The runner user exists and is not root.

    Property 10: the account the agent and its jobs run as is an ordinary user."""
    entry = root.check("getent passwd %s", runner_user).split(":")
    name, uid, home = entry[0], int(entry[2]), entry[5]
    assert name == runner_user
    assert uid != 0
    assert home == role_vars["actions_runner_home"]
    assert root.check("id -gn %s", runner_user) == role_vars["actions_runner_group"]


def test_the_runner_user_is_in_the_docker_group_and_no_admin_group(
    root: Shell, runner_user: str, role_vars: RoleVars
) -> None:
    """The runner user is in the docker group and in no admin group.

    Docker access comes from the docker group (when configured), nothing else."""
    groups = set(root.check("id -Gn %s", runner_user).split())
    expected = {role_vars["actions_runner_group"]}
    if role_vars["actions_runner_docker_access"]:
        expected.add("docker")
    assert groups == expected
    assert not groups & ADMIN_GROUPS


def test_the_runner_user_has_no_sudo(root: Shell, runner_user: str) -> None:
    """The runner user cannot use sudo.

    No sudoers rule names the runner; where sudo is installed, sudo itself says so."""
    sudoers = root.check("sh -c %s", "ls -d /etc/sudoers /etc/sudoers.d/* 2>/dev/null || :").split()
    if sudoers:
        rules = root.run("grep -lw -- %s" + " %s" * len(sudoers), runner_user, *sudoers)
        assert rules.rc == 1, f"sudoers files mention {runner_user}: {rules.stdout}"
    sudo = root.run("sh -c %s", "command -v sudo")
    if sudo.rc == 0:
        listing = root.run("sudo -l -n -U %s", runner_user)
        assert "is not allowed to run sudo" in listing.stdout + listing.stderr
    else:
        assert not sudoers, f"sudoers files without sudo: {sudoers}"
