"""What a runner host should look like: the roles' variables, as the playbooks compute them.

The checks compare a host with what was configured, never with literals: role defaults,
then the user's overrides (a vars file, and inventory variables with the ansible backend),
then the roles' internal variables, all rendered with Ansible's own templating.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLES = ("docker_host", "test_toolchain", "actions_runner")
ROLES_DIR = Path(__file__).resolve().parents[2] / "playbooks" / "roles"
DISTRIBUTIONS = {"debian": "Debian", "ubuntu": "Ubuntu"}


class RoleVarsError(ValueError):
    """A vars file or a role file could not be read."""


def _trusted(value: Any) -> Any:
    """Mark strings as templates: Ansible 2.19 renders only what comes from trusted files."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, Mapping):
        return {key: _trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    return value


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RoleVarsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RoleVarsError(f"{path} must hold a mapping of variable names to values")
    return data


def load_overrides(path: Path | None) -> dict[str, Any]:
    """The user's variables (the same YAML the playbooks take with -e @FILE)."""
    return _load_yaml(path) if path else {}


def is_role_variable(name: str) -> bool:
    return name.startswith(tuple(f"{role}_" for role in ROLES))


class RoleVars:
    """Rendered role variables for one host (lazy: each is rendered when asked for)."""

    def __init__(
        self,
        overrides: Mapping[str, Any],
        facts: Mapping[str, Any],
        roles_dir: Path = ROLES_DIR,
    ) -> None:
        values: dict[str, Any] = {}
        for role in ROLES:
            values |= _load_yaml(roles_dir / role / "defaults" / "main.yml")
        values |= dict(overrides)
        distribution = facts.get("distribution", "")
        for role in ROLES:
            values |= _load_yaml(roles_dir / role / "vars" / "main.yml")
            os_vars = roles_dir / role / "vars" / f"{distribution}.yml"
            if os_vars.is_file():
                values |= _load_yaml(os_vars)
        values = _trusted(values)
        values["ansible_facts"] = dict(facts)
        values["playbook_dir"] = str(roles_dir.parent)
        self._templar = Templar(loader=DataLoader(), variables=values)
        self._values = values

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            raise KeyError(f"no role variable {name!r} (roles: {', '.join(ROLES)})")
        return self._templar.template(self._values[name])

    def __contains__(self, name: object) -> bool:
        return name in self._values


def facts_from_os_release(os_release: str, architecture: str) -> dict[str, str]:
    """The few Ansible facts the role variables use, from /etc/os-release and `uname -m`."""
    fields = {}
    for line in os_release.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value.strip().strip('"')
    os_id = fields.get("ID", "")
    return {
        "distribution": DISTRIBUTIONS.get(os_id, os_id.capitalize()),
        "distribution_release": fields.get("VERSION_CODENAME", ""),
        "distribution_major_version": fields.get("VERSION_ID", "").split(".")[0],
        "architecture": architecture,
    }
