"""Benchmark runner scale sets against webhooks: job-to-runner latency, the listener's idle cost.

1. **Latency** (root, a Docker engine): from a job queued at the FAKE GitHub to a runner
   assigned (the job taken by an agent), median of ``--runs`` runs, for four paths measured
   in one run on one fleet, one baked image, one fake: ``serve --webhook-port`` (a signed
   ``workflow_job`` webhook) and ``serve --scale-set`` (the listener's long poll), each with
   an idle warm host (``--idle 1``) and with none (``--idle 0``: a host starts from the baked
   image, boots, registers, its agent comes online and takes the job). The real local fleet
   (``fleet.cli``), the stand-in agent, the fake GitHub with scale sets
   (``bench/_scale_set_fleet.py``).
2. **Idle cost** (no Docker): the listener ``serve --scale-set`` runs (its ``ListenerThread``,
   alone, in a process of its own) against the fake scale-set service holding each quiet long
   poll ``--hold`` seconds (50, as the real service), over ``--window`` seconds once its
   session is open: requests to the service (counted by the fake) and the CPU time of the
   listener's process (getrusage), extrapolated per hour (``bench/_scale_set_idle.py``).

Usage:

    sudo .venv/bin/python -m bench.scale_set --runs 5 --write docs/benchmarks.md
    .venv/bin/python -m bench.scale_set --no-latency --window 300 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._common import host, write_section

SECTION = "## Scale sets (`bench/scale_set.py`)"
NOT_MEASURED = "not yet measured"
SCALE_SET = "bench-scale-set"
ORG = "octo-org"
APP_ID = "4244"
GROUP, GROUP_ID = "local-fleet", 7
LABELS = ("self-hosted", "linux", "x64", "dind")
# (key, path, idle warm host): the rows of the latency table, in order.
PATHS = (
    ("scale set, warm", "scale set (`serve --scale-set`)", "yes"),
    ("scale set, cold", "scale set (`serve --scale-set`)", "no: a host starts from the image"),
    ("webhook, warm", "webhook (`serve --webhook-port`)", "yes"),
    ("webhook, cold", "webhook (`serve --webhook-port`)", "no: a host starts from the image"),
)


# -- pure: statistics, requests, the section -----------------------------------------------------


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    runs: tuple[float, ...]


def summarise(values: Sequence[float]) -> Summary:
    """Median, range and the runs themselves; at least one value."""
    if not values:
        raise ValueError("no runs to summarise")
    return Summary(statistics.median(values), min(values), max(values), tuple(values))


def ratio(value: Summary | None, base: Summary | None) -> str:
    """``value``'s median over ``base``'s, as text (— when either is missing or zero)."""
    if value is None or base is None or base.median <= 0:
        return "—"
    return f"{value.median / base.median:.2f}x"


def job_timings(
    queued: datetime, taken: datetime | None, acquired: datetime | None
) -> tuple[float, float | None]:
    """Seconds from a job queued to a runner taking it, and to the listener acquiring it
    (None off the scale-set path); the fake's stamps, all aware."""
    if taken is None:
        raise ValueError("the job was not taken by a runner")
    if taken < queued or (acquired is not None and acquired < queued):
        raise ValueError(f"a stamp before the job was queued ({queued.isoformat()})")
    late = (acquired - queued).total_seconds() if acquired is not None else None
    return (taken - queued).total_seconds(), late


def settled(
    live: Iterable[str],
    runners: Mapping[str, Mapping[str, Any]],
    idle: int,
    *,
    scale_set: bool,
    waiting: int = 0,
) -> bool:
    """Ready for the next run: exactly ``idle`` live hosts, each one's runner registered
    (into the scale set on that path), online and not busy, and ``waiting`` (jobs queued at
    serve's intake, or the scale set's desired count beyond the idle hosts and the runners
    it still counts busy) zero."""
    hosts = set(live)
    if len(hosts) != idle or waiting:
        return False
    for name in hosts:
        runner = runners.get(name)
        if runner is None or runner.get("status") != "online" or runner.get("busy"):
            return False
        if scale_set and not runner.get("runnerScaleSetId"):
            return False
    return True


def classify(method: str, path: str) -> str:
    """What a request to the fake GitHub was, by its method and path."""
    if path.startswith("/_queue/"):
        return "long poll (GET messages)" if method == "GET" else "message delete"
    if "/sessions" in path:
        return {"POST": "session open", "PATCH": "session refresh"}.get(method, "session close")
    if path.endswith("/acquirejobs"):
        return "acquire jobs"
    if "registration-token" in path or path == "/actions/runner-registration":
        return "admin token (registration)"
    if path.startswith("/app/") or path.endswith("/installation"):
        return "App installation token"
    if path.startswith("/_services/"):
        return "service admin call"
    return "REST API"


@dataclass(frozen=True)
class Request:
    at: float  # epoch seconds, when it reached the fake
    method: str
    path: str


@dataclass(frozen=True)
class IdleCost:
    window: float  # seconds of requests counted, from the first long poll
    hold: float
    requests: Mapping[str, int]  # kind -> count in the window
    startup: Mapping[str, int]  # kind -> count before the first long poll
    cpu_seconds: float  # of the listener's process, over cpu_window
    cpu_window: float

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def per_hour(self, count: float) -> float:
        return count * 3600.0 / self.window

    @property
    def cpu_per_hour(self) -> float:
        return self.cpu_seconds * 3600.0 / self.cpu_window


def idle_cost(
    requests: Iterable[Request],
    *,
    listening_from: float,
    window: float,
    hold: float,
    cpu_seconds: float,
    cpu_window: float,
) -> IdleCost:
    """Requests in ``[first long poll, + window)`` by kind, the ones before it (start-up)."""
    ordered = sorted(requests, key=lambda r: r.at)
    polls = [
        r.at for r in ordered if r.at >= listening_from and classify(r.method, r.path)[:4] == "long"
    ]
    if not polls:
        raise ValueError("the listener made no long poll: nothing to measure")
    start = polls[0]
    counted = Counter(classify(r.method, r.path) for r in ordered if start <= r.at < start + window)
    startup = Counter(classify(r.method, r.path) for r in ordered if r.at < start)
    return IdleCost(window, hold, dict(counted), dict(startup), cpu_seconds, cpu_window)


def _breakdown(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _latency_lines(latency: Mapping[str, Summary] | None, acquired: Summary | None) -> list[str]:
    lines = [
        "| path | idle warm host | median | range | runs (s) | against the webhook path |",
        "| --- | --- | ---: | --- | --- | ---: |",
    ]
    latency = latency or {}
    for key, path, warm in PATHS:
        found = latency.get(key)
        base = latency.get(key.replace("scale set", "webhook"))
        against = ratio(found, base) if key.startswith("scale set") else "(the base)"
        if found is None:
            lines.append(f"| {path} | {warm} | {NOT_MEASURED} | — | — | — |")
            continue
        runs = ", ".join(f"{v:.2f}" for v in found.runs)
        lines.append(
            f"| {path} | {warm} | {found.median:.2f} s | {found.low:.2f}-{found.high:.2f} s "
            f"| {runs} | {against} |"
        )
    acquired_text = f"{acquired.median * 1000:.0f} ms" if acquired else NOT_MEASURED
    lines += [
        "",
        f"Scale-set path, job queued to job acquired by the listener (median): {acquired_text}.",
        "",
        "With an idle warm host the job waits only for that runner's next poll (the stand-in "
        "agent asks each second), on both paths alike: those rows spread over 0-1 s and their "
        "ratio is noise. Without one, the time is the host's start (about 1 s), its boot and "
        "JIT config, and its agent coming online; the path's own share is the acquire above "
        "against a webhook's delivery.",
    ]
    return lines


def _idle_lines(idle: IdleCost | None) -> list[str]:
    if idle is None:
        return [f"Not measured in this run ({NOT_MEASURED})."]
    polls_per_hour = idle.per_hour(idle.requests.get("long poll (GET messages)", 0))
    cpu_ms = idle.cpu_per_hour / polls_per_hour * 1000 if polls_per_hour else 0.0
    return [
        f"Long poll held {idle.hold:.0f} s by the fake service; requests counted over "
        f"{idle.window:.0f} s from the first long poll, CPU over {idle.cpu_window:.0f} s.",
        "",
        "| measure | per hour | measured |",
        "| --- | ---: | --- |",
        f"| requests to the service | {idle.per_hour(idle.total):.0f} | {idle.total} in "
        f"{idle.window:.0f} s: {_breakdown(idle.requests) or 'none'} |",
        f"| CPU of the listener's process | {idle.cpu_per_hour:.2f} CPU-s "
        f"({idle.cpu_per_hour / 36:.4f} % of a core) | {idle.cpu_seconds:.3f} CPU-s in "
        f"{idle.cpu_window:.0f} s, {cpu_ms:.1f} ms per long poll |",
        f"| start-up, once per session | — | {sum(idle.startup.values())} requests: "
        f"{_breakdown(idle.startup)} |",
    ]


def render(
    *,
    machine: str,
    runs: int,
    latency: Mapping[str, Summary] | None,
    acquired: Summary | None,
    idle: IdleCost | None,
) -> str:
    lines = [
        SECTION,
        "",
        f"Machine: {machine}. FAKE GitHub with scale sets (tests/fakes/scaleset_github.py) and",
        "FAKE runner agent. Reproduce: `sudo .venv/bin/python -m bench.scale_set --runs "
        f"{runs} --write docs/benchmarks.md` (root and a Docker engine for the latency;",
        "`--no-latency` measures only the idle cost, without Docker).",
        "",
        f"### From a job queued at the fake GitHub to a runner assigned (median of {runs} runs)",
        "",
        "One fleet, one baked image, `serve` with its defaults (`--interval 15`) and "
        "`--idle-grace 0`; the job is taken when the agent (polling each second) gets it. "
        "Webhook path: the fake posts a signed `workflow_job` webhook to `serve "
        "--webhook-port` as it queues the job. Scale-set path: the job reaches `serve "
        "--scale-set` through its long poll, is acquired, and the desired count sizes the "
        "fleet. Cold rows start a host from the baked image (boot.yml, JIT config, agent "
        "online) for the job.",
        "",
        *_latency_lines(latency, acquired),
        "",
        "### The listener while idle (`serve --scale-set` with no jobs)",
        "",
        *_idle_lines(idle),
        "",
        "The webhook path's `serve` makes no request while idle: it waits for GitHub to call "
        "it, on a port GitHub can reach. The reconcile loop beside the listener (a cycle every "
        "`--interval`, listing the fleet's runners on GitHub) is the same in both modes and "
        "not counted here; an idle "
        "listener makes no admin call, so its admin token is renewed only when one is made. "
        "A queue token that expires costs one refresh (`PATCH` the session) and one repeated "
        "poll: the fake's tokens last an hour, longer than the window.",
        "",
    ]
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------


def machine(with_docker: bool) -> str:
    if with_docker:
        from bench.runner_host import _machine

        return f"{_machine()}, Python {platform.python_version()}"
    return f"{host()}, Python {platform.python_version()}"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(prog="bench.scale_set", description=__doc__.splitlines()[0])
    command.add_argument("--runs", type=int, default=5, help="runs per latency path (5)")
    command.add_argument(
        "--window", type=_positive, default=300.0, help="seconds of idle listening (300)"
    )
    command.add_argument(
        "--hold", type=_positive, default=50.0, help="seconds the fake holds a quiet poll (50)"
    )
    command.add_argument("--no-latency", action="store_true", help="skip the Docker part")
    command.add_argument("--no-idle-cost", action="store_true", help="skip the idle cost")
    command.add_argument("--write", type=Path, help="replace this section in a Markdown file")
    return command


def main(argv: list[str] | None = None) -> int:
    command = parser()
    args = command.parse_args(argv)
    if args.runs < 1:
        command.error(f"--runs {args.runs}: at least 1")
    if args.no_latency and args.no_idle_cost:
        command.error("--no-latency and --no-idle-cost leave nothing to measure")
    if not args.no_latency and os.geteuid() != 0:
        command.error(
            "the latency part runs a local fleet: run as root (sudo), or give --no-latency "
            "to measure only the listener's idle cost"
        )
    latency = acquired = idle = None
    if not args.no_latency:
        from bench._scale_set_fleet import measure_latency

        latency, acquired = measure_latency(args.runs, args.hold)
    if not args.no_idle_cost:
        from bench._scale_set_idle import measure_idle_cost

        idle = measure_idle_cost(args.window, args.hold)
    section = render(
        machine=f"{machine(not args.no_latency)}, {time.strftime('%Y-%m-%d')}",
        runs=args.runs,
        latency=latency,
        acquired=acquired,
        idle=idle,
    )
    print(section)
    if args.write:
        write_section(args.write, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
