"""The Docker part of bench/scale_set.py: job-to-runner latency on a real local fleet.

Set up as tests/e2e/test_local_fleet.py and tests/e2e/test_local_scale_set.py do: the fleet's
network, the FAKE agent served on its gateway, the FAKE GitHub with scale sets on that gateway
(threaded: a long poll holds a thread), the fleet's GitHub settings in the environment, and
the commands run through ``fleet.cli`` (``serve`` on a thread, from ``build_autoscaler``;
``FLEET_BENCH_TRACE=1`` prints its lines as they come, stamped).
On one fleet and one baked image, in this order:

1. ``up --runners 1`` (the bake, once; the host registered through the REST API);
2. the webhook path: ``serve --webhook-port 0`` with ``--idle 1`` (warm), then ``--idle 0``
   (cold); the fake posts each job's signed ``workflow_job`` webhook to it as it queues it;
3. the scale-set path: ``serve --scale-set NAME`` with ``--idle 1``, then ``--idle 0`` (it
   creates the scale set; its hosts get scale-set JIT configs). It comes second because the
   fake routes every job whose labels a scale set has to that scale set;
4. ``down`` (hosts, image, network, jobs file, and the scale set it created).

Each run waits for the fleet to settle (``bench.scale_set.settled``; each path's cold runs
end with no host, so the scale-set path starts from none), queues one job and takes, from
the fake's own stamps (``bench.scale_set.job_timings``), the time from the job queued to the
job taken by an agent, and on the scale-set path to the job acquired by the listener.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer

from bench._scale_set_github import fake_github, github_settings
from bench.scale_set import (
    LABELS,
    SCALE_SET,
    Summary,
    job_timings,
    settled,
    summarise,
)
from fleet import cli
from fleet.local import docker as backend
from tests.e2e.polling import wait_for
from tests.fakes.github import app_key_pair
from tests.fakes.github_jobs import FakeJob
from tests.fakes.runner_agent import serve_agent
from tests.fakes.scaleset_github import FakeGitHubWithScaleSets

WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway secret for the fake
RUN_LIMIT = 300.0  # seconds any one wait may take
JOB = "echo bench-job"
# FLEET_BENCH_TRACE=1: print serve's lines as they come, stamped.
TRACE = os.environ.get("FLEET_BENCH_TRACE") == "1"


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _serving(argv: list[str], lines: list[str]) -> Iterator[Any]:
    """``python -m fleet serve ARGV`` on a thread, stopped (bounded) at the end; with
    ``TRACE`` set, serve's lines are printed as they come, stamped (where the time goes)."""

    def report(line: str) -> None:
        lines.append(line)
        if TRACE:
            now = time.time()
            millis = int(now * 1000) % 1000
            stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{millis:03d}"
            print(f"  serve {stamp} {line}", flush=True)

    autoscaler = cli.build_autoscaler(cli.parser().parse_args(argv), report=report)
    thread = threading.Thread(target=autoscaler.run, daemon=True, name="serve")
    thread.start()
    try:
        yield autoscaler
    finally:
        autoscaler.stop()
        thread.join(timeout=120)
        if thread.is_alive():
            raise RuntimeError("serve did not stop within 120 s:\n" + "\n".join(lines[-20:]))


def serve_argv(fleet: str, idle: int, *, scale_set: bool) -> list[str]:
    """``serve``'s command line on a path: webhooks on a free port, or the scale set."""
    path = ["--scale-set", SCALE_SET] if scale_set else ["--webhook-port", "0"]
    return ["serve", "--name", fleet, *path, "--idle", str(idle), "--idle-grace", "0"]


def up_argv(fleet: str, agent_url: str, agent_sha256: str) -> list[str]:
    """``up``: one host, registered through the REST API, checked without the canary."""
    argv = ["up", "--name", fleet, "--runners", "1", "--labels", ",".join(LABELS)]
    return [*argv, "--no-canary", "--agent-url", agent_url, "--agent-sha256", agent_sha256]


def _live(fleet: str) -> set[str]:
    return {c.name for c in backend.list_hosts(fleet) if c.status == "running"}


def _runners(github: FakeGitHubWithScaleSets) -> dict[str, dict[str, Any]]:
    with github._lock:  # the fake's server threads change these records
        return {r["name"]: dict(r) for r in github.all_runners()}


def _wait(check: Callable[[], object], what: str, lines: list[str]) -> Any:
    try:
        return wait_for(check, RUN_LIMIT, what)
    except AssertionError as exc:
        raise RuntimeError(f"{exc}; serve's last lines:\n" + "\n".join(lines[-20:])) from None


def _one_run(
    github: FakeGitHubWithScaleSets, ready: Callable[[], bool], lines: list[str]
) -> tuple[float, float | None]:
    """Seconds from a job queued to a runner taking it, and to the listener acquiring it."""
    _wait(ready, "the fleet to settle before a run", lines)
    job: FakeJob = github.queue_job(JOB)
    _wait(lambda: job.started_at is not None, f"job {job.id} to be taken by a runner", lines)
    with github._lock:
        entry = github.scalesets.job_of(job.id)
        acquired_at = entry.assigned_at if entry is not None else None
    assigned, acquired = job_timings(job.created_at, job.started_at, acquired_at)
    _wait(lambda: job.status == "completed", f"job {job.id} to complete", lines)
    if job.exit_code != 0:
        raise RuntimeError(f"job {job.id} failed on {job.runner_name}: {job.output[-2000:]}")
    return assigned, acquired


def _webhook_path(
    fleet: str, github: FakeGitHubWithScaleSets, runs: int, found: dict[str, list[float]]
) -> None:
    for idle, key in ((1, "webhook, warm"), (0, "webhook, cold")):
        lines: list[str] = []
        with _serving(serve_argv(fleet, idle, scale_set=False), lines) as autoscaler:
            server = _wait(lambda a=autoscaler: a.server, "serve's webhook port", lines)
            github.webhook_secret = WEBHOOK_SECRET
            github.webhook_url = f"http://127.0.0.1:{server.port}/"
            try:

                def ready(a: Any = autoscaler, idle: int = idle) -> bool:
                    waiting = a.intake.queued()
                    return settled(
                        _live(fleet), _runners(github), idle, scale_set=False, waiting=waiting
                    )

                for run in range(runs):
                    print(f"latency: {key}, run {run + 1} of {runs}", flush=True)
                    found[key].append(_one_run(github, ready, lines)[0])
                _wait(ready, "the fleet to settle after the last run", lines)
            finally:
                github.webhook_url = None


def _scale_set_path(
    fleet: str,
    github: FakeGitHubWithScaleSets,
    runs: int,
    found: dict[str, list[float]],
    acquired: list[float],
) -> None:
    for idle, key in ((1, "scale set, warm"), (0, "scale set, cold")):
        lines: list[str] = []
        with _serving(serve_argv(fleet, idle, scale_set=True), lines) as autoscaler:

            def ready(a: Any = autoscaler, idle: int = idle) -> bool:
                desired = a.demand.desired()
                waiting = len(a.demand.busy_runner_names())
                waiting += 1 if desired is None else abs(desired - idle)
                return settled(
                    _live(fleet), _runners(github), idle, scale_set=True, waiting=waiting
                )

            for run in range(runs):
                print(f"latency: {key}, run {run + 1} of {runs}", flush=True)
                assigned, taken = _one_run(github, ready, lines)
                found[key].append(assigned)
                if taken is not None:
                    acquired.append(taken)
            _wait(ready, "the fleet to settle after the last run", lines)


def measure_latency(runs: int, hold: float) -> tuple[dict[str, Summary], Summary | None]:
    """The four latency rows (see the module docstring) and the listener's acquire time."""
    fleet = f"bench-{secrets.token_hex(3)}"
    found: dict[str, list[float]] = {
        key: [] for key in ("webhook, warm", "webhook, cold", "scale set, warm", "scale set, cold")
    }
    acquired: list[float] = []
    private, public = app_key_pair()
    backend.ensure_network(fleet)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="fleet-bench-") as directory,
            serve_agent(Path(directory), backend.network_gateway(fleet)) as agent,
        ):
            server = HTTPServer(host=backend.network_gateway(fleet), port=0, threaded=True)
            server.start()
            try:
                github = fake_github(server, public, hold)
                settings = {
                    **github_settings(Path(directory), private, github.base_url),
                    "FLEET_WEBHOOK_SECRET": WEBHOOK_SECRET,
                }
                with _environment(settings):
                    try:
                        _measure(fleet, github, agent, runs, found, acquired)
                    finally:
                        if cli.main(["down", "--name", fleet]) != 0:
                            print(f"`down --name {fleet}` failed: see above", flush=True)
            finally:
                server.stop()
    finally:
        backend.remove_fleet(fleet)
    return {k: summarise(v) for k, v in found.items()}, summarise(acquired) if acquired else None


def _measure(
    fleet: str,
    github: FakeGitHubWithScaleSets,
    agent: Any,
    runs: int,
    found: dict[str, list[float]],
    acquired: list[float],
) -> None:
    print("latency: up --runners 1 (bakes the fleet's image once)", flush=True)
    if cli.main(up_argv(fleet, agent.url, agent.sha256)) != 0:
        raise RuntimeError("`up` failed (its output is above)")
    _webhook_path(fleet, github, runs, found)
    left = _live(fleet)  # the cold runs ended settled at no host
    if left:
        raise RuntimeError(f"hosts of the webhook path left running: {', '.join(sorted(left))}")
    print("latency: the scale-set path", flush=True)
    os.environ.pop("FLEET_WEBHOOK_SECRET", None)  # a scale set needs none (restored after)
    _scale_set_path(fleet, github, runs, found, acquired)
