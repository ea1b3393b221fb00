"""Converge runner hosts with the project's playbooks through ansible-runner.

Works for any backend: the caller hands an inventory (a dict); for local hosts
``docker_inventory`` builds one that reaches containers with ``docker exec``.

Playbooks run under Mitogen for Ansible's linear strategy by default: one Python
interpreter per host for the whole run instead of a fresh one, and a fresh module
upload, per task (an idempotent ``site.yml`` re-converge of a local host: about 8 s
instead of about 27 s; docs/benchmarks.md). Mitogen only takes over the connections it
knows (docker, ssh, local and a few more); others, such as ``aws_ssm``, run exactly as
under the stock strategy. ``FLEET_ANSIBLE_STRATEGY=linear`` turns it off.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from fleet.errors import FleetError

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
STAT_KEYS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
STRATEGIES = ("mitogen_linear", "linear")
STRATEGY_ENV = "FLEET_ANSIBLE_STRATEGY"


@dataclass
class ConvergeResult:
    """What one ansible-runner run did, per host, and how long it took."""

    status: str
    rc: int
    seconds: float
    stats: dict[str, dict[str, int]]
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0

    def total(self, key: str) -> int:
        return sum(host.get(key, 0) for host in self.stats.values())


def docker_inventory(hosts: list[str], group: str = "runners") -> dict[str, Any]:
    """An inventory that reaches each named container with the docker (CLI) connection.

    The short name ``docker`` (which ansible-core routes to ``community.docker.docker``)
    is the one Mitogen's strategy recognises and replaces with its own connection.
    """
    return {
        "all": {
            "children": {
                group: {
                    "hosts": {
                        name: {
                            "ansible_connection": "docker",
                            "ansible_host": name,
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                        for name in hosts
                    }
                }
            }
        }
    }


def stats_by_host(stats: Mapping[str, Mapping[str, int]] | None) -> dict[str, dict[str, int]]:
    """Turn ansible's {stat: {host: n}} into {host: {stat: n}}."""
    by_host: dict[str, dict[str, int]] = {}
    for key in STAT_KEYS:
        for host, count in (stats or {}).get(key, {}).items():
            by_host.setdefault(host, dict.fromkeys(STAT_KEYS, 0))[key] = count
    return by_host


def _failure_messages(runner: Any) -> list[str]:
    messages = []
    for event in runner.events:
        if event.get("event") not in ("runner_on_failed", "runner_on_unreachable"):
            continue
        data = event.get("event_data", {})
        result = data.get("res", {})
        text = result.get("msg") or result.get("stderr") or result.get("module_stderr") or ""
        messages.append(f"{data.get('host')}: {data.get('task')}: {str(text).strip()[:2000]}")
    return messages


def _tail(runner: Any, lines: int = 15) -> str:
    try:
        text = runner.stdout.read()
    except (OSError, ValueError, AttributeError):
        return "(no output)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _ansible_on_path() -> None:
    """ansible-runner starts `ansible-playbook` from PATH: use this interpreter's."""
    scripts = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([scripts, path]) if path else scripts


def strategy_env(strategy: str | None = None) -> dict[str, str]:
    """The environment that selects ``strategy`` (default: $FLEET_ANSIBLE_STRATEGY or Mitogen's)."""
    chosen = strategy or os.environ.get(STRATEGY_ENV) or STRATEGIES[0]
    if chosen not in STRATEGIES:
        raise FleetError(
            f"unknown Ansible strategy {chosen!r}",
            hint=f"set {STRATEGY_ENV} to one of: {', '.join(STRATEGIES)}",
        )
    env = {"ANSIBLE_STRATEGY": chosen}
    if chosen.startswith("mitogen_"):
        spec = importlib.util.find_spec("ansible_mitogen")
        if spec is None or spec.origin is None:
            raise FleetError(
                "Mitogen for Ansible (the mitogen package) is not installed in this environment",
                hint=f"run scripts/setup (requirements.txt pins it), or set {STRATEGY_ENV}=linear",
            )
        env["ANSIBLE_STRATEGY_PLUGINS"] = str(Path(spec.origin).parent / "plugins" / "strategy")
    return env


def _never_cancel() -> bool:
    return False


def converge(
    inventory: dict[str, Any],
    playbook: str = "site.yml",
    extravars: dict[str, Any] | None = None,
    forks: int = 10,
    on_event: Callable[[dict], None] | None = None,
    strategy: str | None = None,
) -> ConvergeResult:
    """Run ``playbooks/<playbook>`` against ``inventory``; never raises on task failures.

    ``strategy`` is one of STRATEGIES (default: see ``strategy_env``).
    """
    started = time.monotonic()
    envvars = {"ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), **strategy_env(strategy)}
    _ansible_on_path()
    # Extra vars may carry secrets (a JIT config): keep the runner's files private
    # and gone when the run ends.
    work = Path(tempfile.mkdtemp(prefix="fleet-ansible-"))
    work.chmod(0o700)
    try:

        def handler(event: dict) -> bool:
            if on_event is not None:
                on_event(event)
            return True

        runner = ansible_runner.run(
            private_data_dir=str(work),
            project_dir=str(PLAYBOOKS),
            playbook=str(PLAYBOOKS / playbook),
            inventory=inventory,
            extravars=extravars or {},
            envvars=envvars,
            forks=forks,
            quiet=True,
            event_handler=handler,
            # Without a cancel callback, ansible-runner installs SIGTERM/SIGINT handlers of
            # its own in the main thread and leaves them there: `serve` would stop obeying
            # SIGTERM after its first host start. A converge is never cancelled half-way.
            cancel_callback=_never_cancel,
        )
        failures = _failure_messages(runner)
        if (runner.status != "successful" or runner.rc != 0) and not failures:
            # Failed before any task (a syntax error, an unreadable inventory...): the
            # end of ansible-playbook's own output says why.
            failures = [f"ansible-playbook {runner.status} (rc {runner.rc}): " + _tail(runner)]
        return ConvergeResult(
            status=runner.status,
            rc=runner.rc,
            seconds=time.monotonic() - started,
            stats=stats_by_host(runner.stats),
            failures=failures,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
