"""Benchmark the local fleet: warm `up` per host, first-ever `up`, parallel `up`, memory.

Measured on this machine's engine with the FAKE runner agent (no GitHub here), on a fleet
of its own that is removed at the end. Usage (root, after `scripts/setup`):

    .venv/bin/python -m bench.local_fleet --runs 3 --write docs/benchmarks.md

* warm `up`: a fleet whose image is baked; `up --runners 1` from no host to one validated
  host (start from the baked image, boot.yml, tests/runner), with and without the canary;
* first-ever `up`: every step of a fresh machine, timed one by one: debootstrap, import, the
  runner-host image build (into throwaway tags), the preload tarball, the bake, the first host;
* `up --runners 4` against `--runners 1` (a chart with --write: bench/charts.py); idle memory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import charts
from bench._common import write_section
from bench.runner_host import _machine
from fleet.local import docker as backend
from fleet.local.commands import UpOptions, fleet_for, up
from fleet.local.engine import image as image_module
from fleet.local.engine.bootstrap import Bootstrap, bootstrap
from fleet.local.engine.engine import client, privileged_works
from tests.fakes.runner_agent import serve_agent

SECTION = "## Local fleet (`bench/local_fleet.py`)"
BENCH_LABEL = {"dev.fleet.bench": "true"}


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    value = action()
    return time.monotonic() - started, value


def _quiet(message: str) -> None:
    print(f"  {message}", flush=True)


def _remove_hosts(fleet: str) -> None:
    for container in backend.list_hosts(fleet):
        backend.remove_host(container)


def busy_cpu_seconds(stat_line: str, ticks_per_second: int = 100) -> float:
    """CPU time the whole machine spent working (user, nice, system, irq, softirq) from the
    ``cpu`` line of /proc/stat; idle, iowait and steal are not work."""
    fields = [int(v) for v in stat_line.split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / ticks_per_second


def _machine_busy() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        return busy_cpu_seconds(handle.readline(), os.sysconf("SC_CLK_TCK"))


def _up(options: UpOptions) -> tuple[float, float]:
    """Seconds an `up` took and the CPU seconds the machine worked meanwhile."""
    before = _machine_busy()
    seconds, rows = _timed(lambda: up(options, _quiet))
    cpu = _machine_busy() - before
    bad = [r for r in rows if r.state != "validated"]
    assert not bad, f"hosts not validated: {bad}"
    return seconds, cpu


def cold_parts(boot: Bootstrap, work: Path) -> dict[str, float]:
    """The image-building steps of a first `up`, into throwaway tags."""
    parts: dict[str, float] = {}
    rootfs = work / "rootfs"
    mirror = image_module.DEFAULT_MIRROR
    argv = ["debootstrap", "--variant=minbase", image_module.SUITE, str(rootfs), mirror]
    parts["debootstrap (Debian minbase)"], result = _timed(
        lambda: subprocess.run(argv, capture_output=True, text=True, check=False)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tag = f"fleet-bench/debian:{secrets.token_hex(4)}"
    tarball = work / "rootfs.tar"

    def import_base() -> None:
        subprocess.run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], check=True
        )
        repository, version = tag.split(":")
        client().api.import_image_from_file(
            str(tarball), repository=repository, tag=version, changes=['CMD ["bash"]']
        )

    parts["tar + docker import"], _ = _timed(import_base)
    host_tag = f"fleet-bench/runner-host:{secrets.token_hex(4)}"

    def build_host() -> None:
        context = io.BytesIO()
        image_module._tar_single_file(context, "Dockerfile", image_module.DOCKERFILE.read_bytes())
        context.seek(0)
        for chunk in client().api.build(
            fileobj=context,
            custom_context=True,
            tag=host_tag,
            buildargs={"BASE_IMAGE": tag},
            labels=BENCH_LABEL,
            nocache=True,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            assert "error" not in chunk, chunk

    try:
        parts["runner-host image build (systemd, python3)"], _ = _timed(build_host)

        def save() -> None:
            with (work / "preload.tar").open("wb") as handle:
                for chunk in client().images.get(tag).save(named=True):
                    handle.write(chunk)

        parts["docker save of the preload tarball"], _ = _timed(save)
        parts["privileged probe"], _ = _timed(lambda: privileged_works(host_tag))
    finally:
        for name in (host_tag, tag):
            with contextlib.suppress(Exception):
                client().images.remove(name, force=True)
    return parts


def measure(runs: int, cold: bool) -> dict[str, Any]:
    boot = bootstrap(_quiet)
    fleet = f"bench-{secrets.token_hex(3)}"
    figures: dict[str, Any] = {"runs": runs, "cpu seconds": {}, "cores": os.cpu_count() or 1}
    backend.ensure_network(fleet)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="fleet-bench-") as directory,
            serve_agent(Path(directory), backend.network_gateway(fleet)) as agent,
        ):
            base = UpOptions(
                name=fleet,
                runners=1,
                agent_url=agent.url,
                agent_sha256=agent.sha256,
                junit=Path(directory) / "validation.xml",
            )

            def options(runners: int, canary: bool) -> UpOptions:
                return UpOptions(**{**base.__dict__, "runners": runners, "canary": canary})

            print("first up of a new fleet on this machine (bake + one host with the canary)")
            fleet_obj = fleet_for(fleet, boot, options(1, True), None, _quiet)
            figures["bake"], _ = _timed(fleet_obj.ensure_image)
            figures["first host with canary"], _ = _up(options(1, True))
            _remove_hosts(fleet)
            for key, canary in (("warm no canary", False), ("warm canary", True)):
                figures[key] = []
                for run in range(runs):
                    print(f"warm up --runners 1 ({key}), run {run + 1}")
                    seconds, cpu = _up(options(1, canary))
                    figures[key].append(seconds)
                    figures["cpu seconds"].setdefault(key, []).append(cpu)
                    _remove_hosts(fleet)
            phases = {"start": [], "boot.yml": [], "checks without canary": []}
            for run in range(runs):
                print(f"phases of one warm host, run {run + 1}")
                seconds, names = _timed(lambda: fleet_obj.start(1))
                phases["start"].append(seconds)
                seconds, result = _timed(lambda names=names: fleet_obj.boot_hosts(names))
                assert result.ok, result.failures
                phases["boot.yml"].append(seconds)
                seconds, outcome = _timed(
                    lambda names=names: fleet_obj.validate(names, base.junit, canary=False)
                )
                assert outcome.ok, outcome.output[-2000:]
                phases["checks without canary"].append(seconds)
                _remove_hosts(fleet)
            figures["phases"] = phases
            figures["four hosts no canary"] = []
            for run in range(runs):
                print(f"up --runners 4 (without the canary), run {run + 1}")
                seconds, cpu = _up(options(4, False))
                figures["four hosts no canary"].append(seconds)
                figures["cpu seconds"].setdefault("four hosts no canary", []).append(cpu)
                _remove_hosts(fleet)
            print("up --runners 4 (with the canary), one run")
            figures["four hosts canary"], cpu = _up(options(4, True))
            figures["cpu seconds"]["four hosts canary"] = [cpu]
            print("memory of idle runner hosts (4 hosts, settled for 30 s)")
            time.sleep(30)
            figures["memory MiB"] = [_memory_mib(c) for c in backend.list_hosts(fleet)]
            figures["image size GiB"] = (
                client().images.get(fleet_obj.current_image()).attrs["Size"] / 1024**3
            )
        if cold:
            with tempfile.TemporaryDirectory(prefix="fleet-bench-cold-") as work:
                print("first-ever up: image-building steps into throwaway tags")
                figures["cold parts"] = cold_parts(boot, Path(work))
    finally:
        backend.remove_fleet(fleet)
    return figures


def _memory_mib(container: Any) -> float:
    """Memory in use (usage minus inactive page cache, as `docker stats` shows it).

    `docker stats` reports nothing for systemd hosts on a cgroup v1 engine (systemd moves
    its processes into sub-cgroups), so the container's memory cgroup is read directly.
    """
    stats = container.stats(stream=False).get("memory_stats") or {}
    if stats.get("usage"):
        detail = stats.get("stats", {})
        cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
        return (stats["usage"] - cache) / 1024**2
    for directory in (
        Path(f"/sys/fs/cgroup/memory/docker/{container.id}"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container.id}.scope"),
        Path(f"/sys/fs/cgroup/docker/{container.id}"),
    ):
        usage_file = next(
            (
                directory / n
                for n in ("memory.usage_in_bytes", "memory.current")
                if (directory / n).exists()
            ),
            None,
        )
        if usage_file is None:
            continue
        usage = int(usage_file.read_text())
        stat = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines())
        cache = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
        return (usage - cache) / 1024**2
    raise RuntimeError(f"no memory figures for {container.name}")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s"


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def _cpu_lines(figures: dict[str, Any], one: float, four: float) -> list[str]:
    """What the machine's CPUs did during the warm single-host and the four-host `up`."""
    cpu = figures.get("cpu seconds", {})
    if "warm no canary" not in cpu or "four hosts no canary" not in cpu:
        return []
    cores = figures["cores"]
    one_cpu = statistics.median(cpu["warm no canary"])
    four_cpu = statistics.median(cpu["four hosts no canary"])
    return [
        f"CPU time the machine spent (every process, from /proc/stat) without the canary: one "
        f"host {one_cpu:.1f} CPU-s in {one:.1f} s ({one_cpu / one / cores:.0%} of {cores} "
        f"cores busy); four hosts {four_cpu:.1f} CPU-s in {four:.1f} s "
        f"({four_cpu / four / cores:.0%} busy), {four_cpu / 4:.1f} CPU-s per host.",
        "",
    ]


def _cpu_bound_note(figures: dict[str, Any], one: float) -> str:
    """Why the four-host figure is what it is, from the CPU time measured beside it."""
    cpu = figures.get("cpu seconds", {}).get("four hosts no canary")
    if not cpu:
        return "."
    cores = figures["cores"]
    four_cpu = statistics.median(cpu)
    busy = four_cpu / statistics.median(figures["four hosts no canary"]) / cores
    needed = four_cpu / (2 * one)
    return (
        f". Four hosts need {four_cpu:.1f} CPU-s: on {cores} cores they cannot finish in less "
        f"than {four_cpu / cores:.1f} s, against a 2x bound of {2 * one:.1f} s. Perfectly "
        f"packed, that work fits in 2x on {needed:.2f} cores; packed as well as here "
        f"({busy:.0%} busy), on {needed / busy:.2f} cores (derived from the measured CPU time, "
        "not measured on such a machine)."
    )


def render(figures: dict[str, Any], machine: str) -> str:
    warm, warm_canary = figures["warm no canary"], figures["warm canary"]
    one = statistics.median(warm)
    one_canary = statistics.median(warm_canary)
    four_runs, four_canary = figures["four hosts no canary"], figures["four hosts canary"]
    four = statistics.median(four_runs)
    phases = figures["phases"]
    memory = figures["memory MiB"]
    lines = [
        SECTION,
        "",
        f"Machine: {machine}. FAKE runner agent (no GitHub here), runners not registered;",
        f"medians of {figures['runs']} runs where runs are listed. Reproduce:",
        "`.venv/bin/python -m bench.local_fleet --runs 3 --write docs/benchmarks.md` (root).",
        "",
        "### Warm `up`: from no host to one validated runner host (image already baked)",
        "",
        "| measure | goal | median | runs (s) |",
        "| --- | --- | --- | --- |",
        f"| `up --runners 1 --no-canary` | ≤ 15 s | {_median(warm)} | {_runs(warm)} |",
        f"| `up --runners 1` (with the canary) | — | {_median(warm_canary)} | "
        f"{_runs(warm_canary)} |",
    ]
    for name, values in phases.items():
        lines.append(f"| phase: {name} | — | {_median(values)} | {_runs(values)} |")
    lines += [
        "",
        "### First-ever `up` on a fresh machine",
        "",
        "| step | seconds |",
        "| --- | --- |",
    ]
    total = 0.0
    for name, seconds in figures.get("cold parts", {}).items():
        lines.append(f"| {name} | {seconds:.1f} |")
        total += seconds
    bake = figures["bake"]
    lines.append(f"| bake: converge one host with bake.yml, `docker commit` | {bake:.1f} |")
    lines.append(
        f"| first host: start, boot.yml, tests/runner with the canary | "
        f"{figures['first host with canary']:.1f} |"
    )
    total += figures["bake"] + figures["first host with canary"]
    lines += [
        f"| **total** (goal ≤ 180 s) | **{total:.1f}** |",
        "",
        "### Parallel `up`",
        "",
        f"![up with 1 and 4 runners](images/{charts.UP_SCALING_PNG})",
        "",
        "| measure | goal | median | runs (s) | ratio to one host (medians) |",
        "| --- | --- | --- | --- | --- |",
        f"| `up --runners 4 --no-canary` | ≤ 2x | {four:.1f} s | {_runs(four_runs)} | "
        f"{four / one:.2f}x (runs: {', '.join(f'{r / one:.2f}x' for r in four_runs)}) |",
        f"| `up --runners 4` (4 canaries side by side) | — | {four_canary:.1f} s | one run | "
        f"{four_canary / one_canary:.2f}x |",
        "",
        *_cpu_lines(figures, one, four),
        "### Idle runner hosts",
        "",
        f"- memory per idle host (the container's memory cgroup: usage minus inactive page "
        f"cache, the figure `docker stats` shows; `docker stats` itself reports nothing for "
        f"systemd hosts on this cgroup v1 engine): mean {statistics.mean(memory):.0f} MiB, "
        f"max {max(memory):.0f} MiB over {len(memory)} hosts",
        f"- baked image: {figures['image size GiB']:.2f} GiB (shared by every host of the fleet)",
        "",
        "### Against the goals",
        "",
        f"- warm host ≤ 15 s: {_verdict(one <= 15)} for a single host ({one:.1f} s without "
        f"the canary, {one_canary:.1f} s with it). Where the time goes: start "
        f"{statistics.median(phases['start']):.1f} s, boot.yml "
        f"{statistics.median(phases['boot.yml']):.1f} s (ansible-runner start-up, waiting for "
        "the host's image preload unit), checks "
        f"{statistics.median(phases['checks without canary']):.1f} s (a child pytest on two "
        "workers; the DinD check loads the baked DinD image and starts a nested engine). "
        f"Per host when hosts start together: {four / 4:.1f} s for `--runners 4`. A host "
        "`serve` starts to replace a used runner is not validated (its image was), so it is "
        "ready after start + boot.yml.",
        f"- first-ever `up` ≤ 180 s: {_verdict(total <= 180)} ({total:.0f} s, summed from its "
        "timed steps; the cached base and runner-host images were not rebuilt in place, their "
        "builds were timed into throwaway tags).",
        f"- `--runners 4` ≤ 2x `--runners 1`: {_verdict(four / one <= 2)} ({four / one:.2f}x "
        f"without the canary, {four_canary / one_canary:.2f}x with four canaries side by side)"
        + _cpu_bound_note(figures, one),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-cold", action="store_true", help="skip the first-ever up parts")
    parser.add_argument("--write", type=Path, help="replace this section in a Markdown file")
    args = parser.parse_args()
    if not shutil.which("debootstrap") and not args.no_cold:
        parser.error("debootstrap is needed for the first-ever up parts (or give --no-cold)")
    section = render(measure(args.runs, not args.no_cold), _machine())
    print(section)
    if args.write:
        write_section(args.write, SECTION, section)
        charts.from_markdown(args.write, args.write.parent / charts.IMAGES)


if __name__ == "__main__":
    main()
