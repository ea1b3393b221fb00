"""The test toolchain every job finds: pinned Python packages, system tools, CA trust."""

from __future__ import annotations

import json
import re

from host_shell import Shell
from role_vars import RoleVars

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def _distribution_name(requirement: str) -> str:
    """`psycopg[binary]` -> `psycopg`; names compared the way pip normalises them."""
    return re.sub(r"[-_.]+", "-", requirement.split("[", 1)[0]).lower()


def _pem_bodies(text: str) -> set[str]:
    return {"".join(body.split()) for body in PEM_BLOCK.findall(text)}


def test_the_toolchain_has_the_pinned_versions(runner: Shell, role_vars: RoleVars) -> None:
    """The test toolchain has exactly the pinned package versions.

    Every package of test_toolchain_packages (+ extras) at exactly its pinned version."""
    python = f"{role_vars['test_toolchain_venv']}/bin/python"
    listed = json.loads(runner.check("%s -m pip list --format=json", python))
    installed = {_distribution_name(p["name"]): p["version"] for p in listed}
    pinned = {
        _distribution_name(name): str(version)
        for name, version in role_vars["__test_toolchain_all_packages"].items()
    }
    assert {name: installed.get(name) for name in pinned} == pinned


def test_the_toolchain_comes_first_on_the_runner_users_path(
    runner: Shell, role_vars: RoleVars
) -> None:
    """The runner user's shell finds pytest and python in the toolchain first.

    A login shell of the runner user finds pytest and python in the toolchain venv."""
    venv = role_vars["test_toolchain_venv"]
    found = runner.check("bash -lc %s", "command -v pytest python")
    assert found.splitlines() == [f"{venv}/bin/pytest", f"{venv}/bin/python"]


def test_the_system_tools_jobs_use_are_installed(root: Shell, role_vars: RoleVars) -> None:
    """The system tools jobs use are installed.

    git, make, curl, jq, unzip, busybox-static, ... (test_toolchain_system_packages)."""
    packages = role_vars["__test_toolchain_install_system_packages"]
    output = root.check(
        "dpkg-query --show --showformat=%s" + " %s" * len(packages),
        "${Package} ${db:Status-Abbrev}\\n",
        *packages,
    )
    status = dict(line.split(" ", 1) for line in output.splitlines())
    assert {p: status.get(p, "").strip() for p in packages} == {p: "ii" for p in packages}


def test_the_canary_suite_is_installed_for_everyone(runner: Shell, role_vars: RoleVars) -> None:
    """The canary suite is installed and readable by the runner user.

    The runner user can read the canary suite the role installed."""
    canary = role_vars["test_toolchain_canary_dest"]
    listing = runner.check("ls %s", canary).split()
    assert {"conftest.py", "pytest.ini"} <= set(listing)
    assert any(name.startswith("test_") for name in listing), listing


def test_pip_trusts_the_system_ca_bundle(runner: Shell, role_vars: RoleVars) -> None:
    """pip trusts the system CA bundle.

    pip reads /etc/pip.conf, which points at the bundle holding the extra CAs."""
    python = f"{role_vars['test_toolchain_venv']}/bin/python"
    config = runner.check("%s -m pip config list", python)
    assert f"global.cert='{role_vars['test_toolchain_pip_cert']}'" in config.splitlines()


def test_the_extra_ca_certificates_are_in_the_system_bundle(
    root: Shell, role_vars: RoleVars
) -> None:
    """The configured extra CA certificates are in the system bundle.

    Exactly the configured extra CAs are installed, and each one is in the bundle that
    pip, git, curl and Docker read (offline, membership is what can be proved)."""
    ca_dir = role_vars["__docker_host_ca_dir"]
    configured = role_vars["docker_host_extra_ca_certificates"]
    installed = root.check("find %s -maxdepth 1 -name %s -printf %s", ca_dir, "*.crt", "%f\\n")
    assert sorted(installed.split()) == sorted(f"{c['name']}.crt" for c in configured)
    bundle = _pem_bodies(root.check("cat %s", SYSTEM_BUNDLE))
    assert bundle, f"{SYSTEM_BUNDLE} holds no certificates"
    for certificate in configured:
        content = root.check("cat %s", f"{ca_dir}/{certificate['name']}.crt")
        if "content" in certificate:
            assert _pem_bodies(content) == _pem_bodies(certificate["content"])
        assert _pem_bodies(content) <= bundle, f"{certificate['name']} is not in {SYSTEM_BUNDLE}"
