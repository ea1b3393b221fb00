"""Benchmark an AWS runner instance's boot in the instance simulation (tests/e2e/aws_sim).

Phases come from the instance's own journal (runner-bootstrap's lines, the job's end at
the fake GitHub, runner-terminate-self's line), measured from cloud-init's first line, for
the stock path (a Debian 13 cloud image: tools, Docker volume, bake, JIT, runner) and the
baked path (an image committed from a stock instance after its bake), run side by side in
one simulation. The real EC2 VM boot (before cloud-init) is not part of it. Usage (root,
after `scripts/setup`):

    .venv/bin/python -m bench.aws_instance --runs 3 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import datetime
from pathlib import Path

from bench import charts
from bench._common import write_section
from bench.runner_host import _machine
from fleet.local.engine.bootstrap import bootstrap
from tests.e2e.aws_sim.scenario import (
    PHASES,
    Simulation,
    boot_phases,
    left_the_group,
    simulation,
    wait_job,
    wait_logged,
)

SECTION = "## AWS instance (`bench/aws_instance.py`)"
BAKED_AMI = "ami-0123456789abcdef0"
# Goals on this machine, cloud-init start -> runner online.
GOALS = {"stock": 300.0, "baked": 15.0}
ORDER = [phase for _, phase in PHASES] + ["runner online", "job done", "left the group"]


def _since_start(moments: dict[str, datetime]) -> dict[str, float]:
    start = moments["cloud-init start"]
    return {phase: (moment - start).total_seconds() for phase, moment in moments.items()}


def one_life(sim: Simulation, image: str, *, commit_as: str | None = None) -> dict[str, float]:
    """Launch, serve one small job, leave; the phases in seconds after cloud-init started."""
    launched = sim.aws.launch(image)
    sim.aws.fire_launch_hook(launched.instance_id)
    if commit_as:
        wait_logged(launched, "bake done", 900)
        launched.vm.commit(commit_as, "baked")
    wait_logged(launched, "runner started", 900)
    job = wait_job(sim.github.queue_job("echo benchmark-job"), 300)
    left_the_group(sim.aws, launched)
    log = launched.vm.boot_log()
    # This instance's first cloud-init line (an image carries its maker's journal too).
    cloud_init = launched.vm.shell(
        f"journalctl --no-pager -o short-iso-precise _HOSTNAME={launched.vm.hostname} "
        "-t cloud-init | head -1"
    )[1]
    moments = boot_phases(log)
    moments["cloud-init start"] = datetime.fromisoformat(cloud_init.split(" ", 1)[0])
    # The agent's own line when it reported online to GitHub (the stand-in agent here).
    online = launched.vm.shell(
        f"journalctl --no-pager -o short-iso-precise _HOSTNAME={launched.vm.hostname} "
        "-u actions-runner | grep -m1 'online as'"
    )[1]
    moments["runner online"] = datetime.fromisoformat(online.split(" ", 1)[0])
    assert job.completed_at is not None
    moments["job done"] = job.completed_at
    left = [
        line for line in log.splitlines() if "runner-terminate-self" in line and "leaves" in line
    ]
    moments["left the group"] = datetime.fromisoformat(left[-1].split(" ", 1)[0])
    sim.aws.reap_left(launched.instance_id)
    return _since_start(moments)


def measure(runs: int) -> dict[str, list[dict[str, float]]]:
    boot = bootstrap(print)
    results: dict[str, list[dict[str, float]]] = {"stock": [], "baked": []}
    with tempfile.TemporaryDirectory() as directory, simulation(boot, Path(directory)) as sim:
        ami = f"fleet/{sim.name}-ami"
        for run in range(runs):
            sim.deploy()
            results["stock"].append(one_life(sim, sim.image, commit_as=ami if run == 0 else None))
            sim.deploy(amiId=BAKED_AMI, bakedImage=True)
            results["baked"].append(one_life(sim, f"{ami}:baked"))
            for path in ("stock", "baked"):
                figures = results[path][-1]
                print(
                    f"run {run + 1} {path}: "
                    + ", ".join(f"{p} {figures[p]:.1f} s" for p in ORDER if p in figures)
                )
    return results


def render(results: dict[str, list[dict[str, float]]], machine: str) -> str:
    runs = len(results["stock"])
    lines = [
        SECTION,
        "",
        f"Machine: {machine}. One simulation (tests/e2e/aws_sim): a Debian 13 cloud-image",
        "container booted by cloud-init's NoCloud datasource with the user data the Pulumi",
        "program renders, moto for AWS (IAM enforced), the fake IMDS, GitHub and agent. Seconds",
        "after cloud-init's first line, from the instance's own journal; the real EC2 VM boot",
        f"before cloud-init is not included. Median of {runs} runs (each run in brackets).",
        "The first stock run is also committed as the baked image when its bake is done (the",
        "container is paused for it): its steps after `bake done` include that pause.",
        "",
        f"![Boot phases, stock and baked image](images/{charts.BOOT_PHASES_PNG})",
        "",
        "| phase | stock image | baked image |",
        "| --- | --- | --- |",
    ]
    for phase in ORDER:
        cells = []
        for path in ("stock", "baked"):
            values = [r[phase] for r in results[path] if phase in r]
            if not values:
                cells.append("— (skipped)")
                continue
            each = ", ".join(f"{v:.1f}" for v in values)
            cells.append(f"{statistics.median(values):.1f} s ({each})")
        lines.append(f"| {phase} | {cells[0]} | {cells[1]} |")
    lines += ["", "Goals, cloud-init start → runner online:"]
    for path, goal in GOALS.items():
        median = statistics.median(r["runner online"] for r in results[path])
        verdict = "met" if median <= goal else "**not met**"
        lines.append(f"- {path} image: ≤ {goal:.0f} s — {median:.1f} s, {verdict}.")
    lines += [
        "",
        "For comparison, users of terraform-aws-github-runner report about a minute per Linux",
        "runner with a baked AMI, VM boot included.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path, help="update this docs/benchmarks.md")
    args = parser.parse_args()
    results = measure(args.runs)
    text = render(results, _machine())
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)
        medians = {
            image: {p: statistics.median(r[p] for r in runs if p in r) for p in ORDER}
            for image, runs in results.items()
        }
        charts.boot_phases(medians, args.write.parent / charts.IMAGES / charts.BOOT_PHASES_PNG)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
