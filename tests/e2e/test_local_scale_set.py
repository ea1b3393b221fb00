"""The local fleet in a runner scale set, end to end on a real engine, with no webhook port.

One fleet, baked once, registered into a scale set of the FAKE GitHub with scale sets
(tests/fakes/scaleset_github.py: the fake GitHub that queues jobs and feeds the FAKE agent,
plus the scale-set service and its message queue, held 0.5 s per quiet long poll). The tests
run in file order and share the fleet: `up --scale-set` creates the scale set; `serve
--scale-set` scales hosts up for queued jobs, keeps busy ones, removes used ones and retires
idle ones beyond the desired count; a `serve` killed mid-job and started again takes its own
session over, loses no job and removes no busy host; an agent too old for GitHub (exit 7) is
named by `status` and `serve`; `down` deletes the scale set it created.

Run them (root, a Docker engine that runs privileged containers; about 10 minutes, most of
it the one bake):  .venv/bin/pytest -m e2e -p no:cacheprovider tests/e2e/test_local_scale_set.py
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from fleet import cli
from fleet.local import docker as backend
from fleet.local.engine.engine import client
from fleet.local.scale_set import StateFile, state_path
from tests.e2e.fake_app import ORG, RUNNER_GROUP, github_app_env
from tests.e2e.polling import wait_for
from tests.fakes.github_jobs import FakeJob, WallClock
from tests.fakes.runner_agent import ServedAgent
from tests.fakes.scaleset_github import FakeGitHubWithScaleSets

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

LABELS = "self-hosted,linux,x64,dind"
SCALE_SET = "e2e-scale-set"
APP_ID = "4243"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def github(fleet_name: str, agent: ServedAgent, app_key) -> Iterator[FakeGitHubWithScaleSets]:
    """The FAKE GitHub with scale sets where runner hosts reach it (the fleet network's
    gateway), threaded: a long poll holds a thread."""
    server = HTTPServer(host=backend.network_gateway(fleet_name), port=0, threaded=True)
    server.start()
    fake = FakeGitHubWithScaleSets(
        server=server, app_id=APP_ID, public_key=app_key[1], clock=WallClock()
    )
    fake.scalesets.hold_seconds = 0.5
    fake.install(ORG, 1)
    fake.add_group(ORG, RUNNER_GROUP, group_id=7)
    yield fake
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def github_env(github: FakeGitHubWithScaleSets, app_key) -> Iterator[None]:
    with github_app_env(APP_ID, app_key[0], github.base_url):
        yield


def live_hosts(fleet: str) -> set[str]:
    return {c.name for c in backend.list_hosts(fleet) if c.status == "running"}


def members(github: FakeGitHubWithScaleSets) -> set[str]:
    """Runners registered into the scale set."""
    return {r["name"] for r in github.all_runners() if r.get("runnerScaleSetId")}


def wait_job(job: FakeJob, status: str, seconds: float) -> FakeJob:
    wait_for(lambda: job.status == status, seconds, f"job {job.id} to be {status}")
    return job


def serve_argv(fleet: str, *extra: str) -> list[str]:
    return ["serve", "--name", fleet, "--scale-set", SCALE_SET, "--idle-grace", "0", *extra]


def test_up_creates_the_scale_set_and_registers_its_hosts_into_it(
    fleet_name, agent, github, capsys
):
    # The runner unit (actions_runner role) sets ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_
    # EXIT_CODE=1, so the agent exits 7 when the fake GitHub deems it too old
    # (test_an_agent_too_old_for_github_is_named_by_status_and_serve).
    argv = ["up", "--name", fleet_name, "--runners", "2", "--labels", LABELS, "--no-canary"]
    argv += ["--agent-url", agent.url, "--agent-sha256", agent.sha256]
    rc = cli.main([*argv, "--scale-set", SCALE_SET])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert f"created scale set '{SCALE_SET}'" in out
    hosts = live_hosts(fleet_name)
    assert len(hosts) == 2 and members(github) == hosts
    (record,) = github.scalesets.scale_sets.values()
    assert [label["name"] for label in record.labels] == [SCALE_SET, *LABELS.split(",")]
    state = StateFile(state_path(fleet_name)).load()
    assert state is not None and state.created and state.name == SCALE_SET
    wait_for(
        lambda: all(github.runner_by_name(h)["status"] == "online" for h in hosts),
        60,
        "both agents online",
    )


def test_serve_scales_up_for_jobs_replaces_used_hosts_and_retires_idle_ones(
    fleet_name, github, capsys
):
    """No webhook port: jobs reach serve through the scale set's message queue. Two idle
    hosts and --idle 1: one is retired; two jobs raise the count, hosts take them, used
    hosts go, and the fleet settles at one idle host."""
    args = cli.parser().parse_args(serve_argv(fleet_name, "--interval", "2", "--idle", "1"))
    lines: list[str] = []
    autoscaler = cli.build_autoscaler(args, report=lines.append)
    thread = threading.Thread(target=autoscaler.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(live_hosts(fleet_name)) == 1, 120, "the surplus idle host retired")
        jobs = [github.queue_job(f"sleep 5; echo job-{n}") for n in range(2)]
        for job in jobs:
            wait_job(job, "completed", 180)
        assert all(job.exit_code == 0 for job in jobs), [job.output for job in jobs]
        used = {job.runner_name for job in jobs}
        assert len(used) == 2

        def settled() -> bool:
            hosts = live_hosts(fleet_name)
            return len(hosts) == 1 and not used & hosts and members(github) == hosts

        wait_for(settled, 180, "used hosts gone and the fleet back to one idle host")
    finally:
        autoscaler.stop()
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert autoscaler.server is None and github.webhook_url is None  # no port, no webhook
    retired = {name for cycle in autoscaler.cycles for name in cycle.retired}
    launched = {name for cycle in autoscaler.cycles for name in cycle.launched}
    assert retired and not retired & used  # idle ones only
    assert len(launched) >= 2  # one idle host and two jobs: two more hosts, at least
    assert github.scalesets.acquired and github.scalesets.sessions == {}
    assert any("no webhook port" in line for line in lines)
    capsys.readouterr()


def _start_serve(fleet: str) -> tuple[subprocess.Popen[str], list[str]]:
    argv = [sys.executable, "-m", "fleet", *serve_argv(fleet, "--interval", "2", "--idle", "0")]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    return process, lines


def test_a_serve_killed_mid_job_is_taken_over_and_loses_no_job_nor_a_busy_host(fleet_name, github):
    first, first_lines = _start_serve(fleet_name)
    second, second_lines = None, []
    try:
        wait_for(lambda: any("(session " in line for line in first_lines), 120, "a session")
        long_job = wait_job(github.queue_job("sleep 40; echo long-done"), "in_progress", 180)
        busy_host = long_job.runner_name
        first.kill()  # SIGKILL: no cycle finished, no session closed
        first.wait(timeout=30)
        dead = StateFile(state_path(fleet_name)).load().session_id
        assert dead in github.scalesets.sessions
        waiting = github.queue_job("echo while-down")  # queued while nobody listens

        second, second_lines = _start_serve(fleet_name)
        wait_for(lambda: any("(session " in line for line in second_lines), 60, "a session")
        assert dead not in github.scalesets.sessions  # its own old session taken over
        wait_job(waiting, "completed", 180)
        assert busy_host in live_hosts(fleet_name) and long_job.status == "in_progress"
        wait_job(long_job, "completed", 120)
        assert long_job.exit_code == 0 and "long-done" in long_job.output
        assert waiting.exit_code == 0 and "while-down" in waiting.output
        wait_for(lambda: not live_hosts(fleet_name), 120, "used hosts gone (--idle 0)")
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=90)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"serve did not stop: {''.join(second_lines[-80:])}") from exc
        assert second.returncode == 0, "".join(second_lines)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    text = "".join(second_lines)
    assert "another listener holds" not in text and "busy for" not in text
    assert github.scalesets.sessions == {}


def test_an_agent_too_old_for_github_is_named_by_status_and_serve(fleet_name, github, capsys):
    github.deprecated_agents = True
    try:
        assert cli.main(serve_argv(fleet_name, "--once", "--idle", "1")) == 0
        (host,) = live_hosts(fleet_name)
        wait_for(
            lambda: backend.probe_host(client().containers.get(host)).unit_exit_status == 7,
            120,
            "the agent to exit 7",
        )
        capsys.readouterr()
        assert cli.main(["status", "--name", fleet_name]) == 0
        out = capsys.readouterr().out
        assert "agent outdated (exit 7)" in out and "Re-bake with a current agent" in out
        assert f"{host}: the runner agent baked into this fleet's image is too old" in out
        assert f"mode: scale set '{SCALE_SET}'" in out
        assert cli.main(serve_argv(fleet_name, "--once", "--idle", "1")) == 1
        out = capsys.readouterr().out
        assert f"{host}: the runner agent baked into this fleet's image" in out
        assert "next launch in" in out
        assert host not in live_hosts(fleet_name)
    finally:
        github.deprecated_agents = False


def test_down_deletes_the_scale_set_it_created_and_says_so(fleet_name, github, capsys):
    assert cli.main(["down", "--name", fleet_name]) == 0
    out = capsys.readouterr().out
    assert f"deleted scale set '{SCALE_SET}'" in out and "created by this fleet" in out, out
    assert github.scalesets.scale_sets == {}
    assert StateFile(state_path(fleet_name)).load() is None
    assert not live_hosts(fleet_name) and not members(github)
