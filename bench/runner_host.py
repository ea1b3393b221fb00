"""Benchmark a runner host: cold converge, idempotent re-converge, validation, canary.

Each figure is the median of --runs runs, measured side by side in one process on
the same engine. Usage (root, after `scripts/setup`):

    .venv/bin/python -m bench.runner_host --runs 3 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench import charts
from bench._common import host, write_section
from fleet.local import docker as backend
from fleet.local import provision, validate
from fleet.local.commands import UpOptions, local_extravars
from fleet.local.engine.bootstrap import bootstrap
from tests.fakes.runner_agent import serve_agent

SECTION = "## Runner host (`bench/runner_host.py`)"
GOALS = {"idempotent re-converge": 10.0, "validation without canary": 20.0}


def _machine() -> str:
    engine = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{host()}, Docker engine {engine}"


def measure(runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(the table's figures, seconds per check group in each run)."""
    boot = bootstrap(print)
    fleet = f"bench-{secrets.token_hex(3)}"
    figures: dict[str, list[float]] = {
        "cold converge": [],
        "idempotent re-converge": [],
        "idempotent re-converge, stock strategy": [],
        "validation without canary": [],
        "canary suite (through validation)": [],
    }
    groups: dict[str, list[float]] = {}
    try:
        backend.ensure_network(fleet)
        with (
            tempfile.TemporaryDirectory() as directory,
            serve_agent(Path(directory), backend.network_gateway(fleet)) as agent,
        ):
            options = UpOptions(agent_url=agent.url, agent_sha256=agent.sha256)
            variables = local_extravars(boot, options)
            vars_file = Path(directory) / "vars.yml"
            vars_file.write_text(yaml.safe_dump(variables))
            for run in range(runs):
                name = f"{fleet}-runner-{run}"
                spec = backend.HostSpec(
                    name=name,
                    fleet=fleet,
                    image=boot.images.runner_host,
                    preload_dir=boot.images.preload_dir,
                )
                backend.wait_until_booted(backend.start_host(spec, boot.engine.cgroup_version))
                inventory = provision.docker_inventory([name])
                cold = provision.converge(inventory, "site.yml", variables)
                assert cold.ok, cold.failures
                again = provision.converge(inventory, "site.yml", variables)
                assert again.ok and again.total("changed") == 0, again.stats
                # The same re-converge under Ansible's own linear strategy, side by side.
                stock = provision.converge(inventory, "site.yml", variables, strategy="linear")
                assert stock.ok and stock.total("changed") == 0, stock.stats
                junit = Path(directory) / f"{name}.xml"
                started = time.monotonic()
                checks = validate.validate(
                    [validate.local_host_spec(name)],
                    junit,
                    vars_file,
                    extra_args=validate.NO_CANARY,
                )
                no_canary = time.monotonic() - started
                assert checks.ok, checks.output[-3000:]
                started = time.monotonic()
                canary = validate.validate(
                    [validate.local_host_spec(name)],
                    junit,
                    vars_file,
                    extra_args=["-k", "canary or performance"],
                )
                canary_seconds = time.monotonic() - started
                assert canary.ok, canary.output[-3000:]
                figures["cold converge"].append(cold.seconds)
                figures["idempotent re-converge"].append(again.seconds)
                figures["idempotent re-converge, stock strategy"].append(stock.seconds)
                figures["validation without canary"].append(no_canary)
                figures["canary suite (through validation)"].append(canary_seconds)
                for group, seconds in charts.group_seconds(checks.checks + canary.checks).items():
                    groups.setdefault(group, []).append(seconds)
                print(
                    f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in figures.items())
                )
    finally:
        backend.remove_fleet(fleet)
    return figures, groups


def render(figures: dict[str, list[float]], machine: str) -> str:
    lines = [
        SECTION,
        "",
        f"Machine: {machine}. Each run starts a fresh runner host from the cached image.",
        "Converges run under Mitogen's `mitogen_linear` strategy (`fleet.local.provision`'s",
        "default); the stock-strategy row re-converges the same host under Ansible's own",
        "`linear` strategy right after, for comparison.",
        "",
        f"![Validation time per check group](images/{charts.CHECK_GROUPS_PNG})",
        "",
        "| measure | goal | median | runs (s) |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in figures.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        median = statistics.median(values)
        goal = GOALS.get(name)
        verdict = "—"
        if goal is not None:
            verdict = f"≤ {goal:.0f} s ({'met' if median <= goal else '**not met**'})"
        lines.append(f"| {name} | {verdict} | {median:.1f} s | {runs} |")
    stock = statistics.median(figures["idempotent re-converge, stock strategy"])
    mitogen = statistics.median(figures["idempotent re-converge"])
    lines += [
        "",
        f"Mitogen's strategy re-converges {stock / mitogen:.1f}x faster than the stock one here:",
        "the ~100 tasks of an idempotent `site.yml` are short module runs, and the stock",
        "strategy starts a Python interpreter in the host and uploads the module for each",
        "one; Mitogen keeps one interpreter per host for the whole run.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path, help="replace this section in a Markdown file")
    args = parser.parse_args()
    figures, groups = measure(args.runs)
    section = render(figures, _machine())
    print(section)
    if args.write:
        write_section(args.write, SECTION, section)
        medians = {group: statistics.median(values) for group, values in groups.items()}
        charts.check_groups(medians, args.write.parent / charts.IMAGES / charts.CHECK_GROUPS_PNG)


if __name__ == "__main__":
    main()
