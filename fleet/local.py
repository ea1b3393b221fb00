"""The local fleet: runner hosts on this machine's Docker engine.

``up`` = bootstrap the machine, start hosts, converge them with the playbooks,
validate them with the testinfra suite. The same playbooks and checks serve AWS.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleet import provision, validate
from fleet.backends import docker as backend
from fleet.bootstrap import Bootstrap, bootstrap
from fleet.errors import FleetError

Report = Callable[[str], None]
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REPORTS = provision.ROOT / "reports"


@dataclass
class UpOptions:
    name: str = "local"
    runners: int = 1
    labels: tuple[str, ...] = ("self-hosted", "linux", "x64", "dind")
    vars_file: Path | None = None
    agent_url: str | None = None
    agent_sha256: str | None = None
    trust_host_cas: bool = True
    cache_dir: Path | None = None
    junit: Path | None = None


@dataclass
class HostRow:
    name: str
    state: str
    converge_seconds: float | None = None
    checks_passed: int = 0
    checks_total: int = 0
    problems: list[str] = field(default_factory=list)


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise FleetError(
            f"fleet name {name!r} is not valid",
            hint="use 1-31 lower-case letters, digits and dashes, starting with a letter or digit",
        )
    return name


def load_vars_file(path: Path | None) -> dict[str, Any]:
    """User role variables (the same the playbooks take), as a mapping."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise FleetError(f"cannot read vars file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise FleetError(f"vars file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FleetError(
            f"vars file {path} must be a mapping of role variables",
            hint="e.g. docker_host_log_max_file: 5",
        )
    return data


def local_extravars(boot: Bootstrap, options: UpOptions) -> dict[str, Any]:
    """Variables that make the playbooks fit a local host, then the user's own."""
    variables: dict[str, Any] = {
        "docker_host_preload_images": [
            {
                "name": boot.images.base,
                "path": f"{backend.PRELOAD_MOUNT}/{boot.images.preload_tar.name}",
            }
        ],
    }
    if options.trust_host_cas and HOST_CA_BUNDLE.exists():
        # Machines behind a TLS-inspecting proxy: runner hosts must trust what this
        # machine trusts, or pip and git inside them fail.
        variables["docker_host_extra_ca_certificates"] = [
            {"name": "fleet-machine-trust", "content": HOST_CA_BUNDLE.read_text()}
        ]
    if options.agent_url:
        variables["actions_runner_url"] = options.agent_url
    if options.agent_sha256:
        variables["actions_runner_sha256"] = options.agent_sha256
    variables.update(load_vars_file(options.vars_file))
    return variables


def _write_runner_vars(name: str, variables: dict[str, Any]) -> Path:
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"{name}-vars.yml"
    path.write_text(yaml.safe_dump(variables, sort_keys=True))
    path.chmod(0o600)
    return path


def up(options: UpOptions, report: Report) -> list[HostRow]:
    """Bring the fleet to ``options.runners`` validated hosts; returns one row per host."""
    check_name(options.name)
    if not 1 <= options.runners <= 50:
        raise FleetError(
            f"--runners {options.runners} is out of range", hint="use 1 to 50 runner hosts"
        )
    boot = bootstrap(report, options.cache_dir)
    report(
        f"engine {boot.engine.version} ready, image {boot.images.runner_host} "
        f"({boot.seconds:.1f} s)"
    )
    existing = [c.name for c in backend.list_hosts(options.name)]
    new = [
        f"{options.name}-runner-{secrets.token_hex(3)}"
        for _ in range(max(0, options.runners - len(existing)))
    ]
    rows = {name: HostRow(name=name, state="existing") for name in existing}
    if new:
        report(f"starting {len(new)} runner host(s): {', '.join(new)}")
        labels = {"dev.fleet.labels": ",".join(options.labels)}

        def start(name: str) -> None:
            spec = backend.HostSpec(
                name=name,
                fleet=options.name,
                image=boot.images.runner_host,
                preload_dir=boot.images.preload_dir,
                labels=labels,
            )
            backend.wait_until_booted(backend.start_host(spec, boot.engine.cgroup_version))

        with ThreadPoolExecutor(max_workers=min(8, len(new))) as pool:
            list(pool.map(start, new))
    variables = local_extravars(boot, options)
    if new:
        report(f"converging {len(new)} host(s) with playbooks/site.yml")
        result = provision.converge(provision.docker_inventory(new), "site.yml", variables)
        for name in new:
            stats = result.stats.get(name, {})
            failed = stats.get("failures", 0) or stats.get("dark", 0) or name not in result.stats
            rows[name] = HostRow(
                name=name,
                state="converge failed" if failed else "converged",
                converge_seconds=result.seconds,
                problems=[m for m in result.failures if m.startswith(name + ":")],
            )
        if not result.ok:
            raise FleetError(
                "converging the runner hosts failed:\n  " + "\n  ".join(result.failures[:10]),
                hint="fix the variable or task named above, then run `python -m fleet up` again "
                "(hosts are kept; `python -m fleet down` removes them)",
            )
    names = sorted(rows)
    report(f"validating {len(names)} host(s) with tests/runner (includes the canary suite)")
    outcome = run_validation(options.name, names, variables, options.junit)
    for name in names:
        counts = outcome.counts(name)
        rows[name].checks_passed = counts["passed"]
        rows[name].checks_total = sum(counts.values())
        if rows[name].state != "converge failed":
            rows[name].state = (
                "validated"
                if counts["passed"] == rows[name].checks_total and counts["passed"]
                else "checks failed"
            )
    return [rows[name] for name in names]


def run_validation(
    name: str, hosts: list[str], variables: dict[str, Any], junit: Path | None
) -> validate.Validation:
    junit_path = junit or REPORTS / f"{name}-validation.xml"
    outcome = validate.validate(
        [f"docker://{host}" for host in hosts], junit_path, _write_runner_vars(name, variables)
    )
    if not outcome.checks:
        raise FleetError(
            "the validation suite ran no checks:\n" + outcome.output[-3000:],
            hint="run `pytest tests/runner --hosts=docker://HOST` by hand to see why",
        )
    return outcome


def status(name: str) -> list[dict[str, str]]:
    check_name(name)
    rows = []
    for container in backend.list_hosts(name):
        rows.append(
            {
                "runner": container.name,
                "state": container.status,
                "image": (container.image.tags or [container.image.short_id])[0],
                "labels": container.labels.get("dev.fleet.labels", ""),
                "started": container.attrs.get("State", {}).get("StartedAt", "")[:19],
            }
        )
    return rows


def down(name: str) -> dict[str, int]:
    check_name(name)
    return backend.remove_fleet(name)


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"
