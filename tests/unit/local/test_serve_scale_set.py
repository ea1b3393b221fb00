"""``serve --scale-set`` without Docker: the product's listener, registrar and reconcile loop
against the FAKE scale-set service on loopback, with the host side in memory
(``tests/fakes/scaleset_hosts.py``: each host a step-by-step agent the test drives).

Jobs queued at the fake raise the desired count, hosts start with scale-set JIT configs and
take the jobs, busy hosts are kept through cycles, used hosts go, idle ones beyond the count
are retired through the service; a serve that died without closing its session is taken over
by the next one, which loses no job and removes no busy host.
"""

from __future__ import annotations

import threading
import time

import pytest

from fleet.core.github.scaleset.session import MessageSession
from fleet.core.scaleset_listener import ListenerLimits
from fleet.local.scale_set import join_scale_set
from fleet.local.serve.reconciler import ServeOptions
from fleet.local.serve.scale_set_mode import Restarts, ScaleSetAutoscaler
from tests.fakes.scaleset_hosts import FakeScaleSetHosts
from tests.unit.local.conftest import World

# integration, not unit: the FAKE scale-set service runs over loopback with threads and
# timed waits (its long poll), which the unit layer's shifted-clock run cannot host
# (libfaketime fakes the monotonic clock, so a 1 s timed wait lasts a year).
pytestmark = pytest.mark.integration

JOB_LABELS = ("self-hosted", "linux")
SERVICE = "/_services/pipelines/_apis"
SESSIONS = f"{SERVICE}/runtime/runnerscalesets/1/sessions"


def wait_for(condition, what: str, limit: float = 20.0):
    """Wait (bounded) for ``condition``; fails naming ``what``."""
    deadline = time.monotonic() + limit
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def take(hosts: FakeScaleSetHosts, count: int) -> set[str]:
    """Let idle hosts ask for jobs until ``count`` hosts are busy; their names."""

    def enough() -> bool:
        hosts.take_jobs(count - len(hosts.busy()))
        return len(hosts.busy()) >= count

    wait_for(enough, f"{count} hosts to take a job")
    return hosts.busy()


class Serve:
    """A ``ScaleSetAutoscaler`` on its own thread, as ``python -m fleet serve --scale-set``."""

    def __init__(self, world: World, hosts: FakeScaleSetHosts | None = None, **options) -> None:
        registrar, spec, state_file = join_scale_set(
            world.rest, "f", "fleet", ("self-hosted", "linux"), print, world.directory
        )
        self.hosts = hosts or FakeScaleSetHosts(registrar)
        self.hosts.registrar = registrar
        settings = {"idle": 1, "max_size": 4, "interval": 0.1, "idle_grace": 0.0, **options}
        serve_options = ServeOptions(**settings)
        self.lines: list[str] = []
        self.autoscaler = ScaleSetAutoscaler(
            self.hosts,
            serve_options,
            self.lines.append,
            registrar=registrar,
            spec=spec,
            state_file=state_file,
            limits=ListenerLimits(
                min_idle=serve_options.idle,
                max_runners=serve_options.max_size,
                min_poll_interval=0.05,
                conflict_wait=0.25,
                conflict_retry=0.05,
            ),
            restarts=Restarts(first=0.2, longest=1.0),
        )
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.autoscaler.run()

    def cycles(self, more: int = 2) -> None:
        """Wait until ``more`` further reconcile cycles have run."""
        target = self.autoscaler.cycle_count + more
        wait_for(lambda: self.autoscaler.cycle_count >= target, f"{more} more cycles")

    def stop(self) -> int | None:
        self.autoscaler.stop()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()
        return self.code


def test_jobs_scale_the_fleet_up_busy_hosts_stay_used_ones_go_and_idle_ones_retire(world):
    serve = Serve(world)
    hosts = serve.hosts
    try:
        wait_for(lambda: len(hosts.names()) == 1, "the one warm idle host")
        jobs = [world.fake.queue_job("true", labels=JOB_LABELS) for _ in range(2)]
        wait_for(lambda: len(hosts.names()) == 3, "a host for each assigned job")
        take(hosts, 2)
        busy = hosts.busy()
        assert len(busy) == 2
        serve.cycles(3)
        assert busy <= hosts.names() and hosts.removed == []  # busy hosts kept, cycle after cycle
        for name in busy:
            hosts.finish(name)
        wait_for(
            lambda: len(hosts.names()) == 1 and not busy & hosts.names(),
            "used hosts gone, one warm idle host left",
        )
        assert all(world.fake.jobs[job.id].status == "completed" for job in jobs)

        # Jobs taken back before any host takes them: the count falls, idle hosts retire.
        more = [world.fake.queue_job("true", labels=JOB_LABELS) for _ in range(2)]
        wait_for(lambda: len(hosts.names()) == 3, "hosts for two more jobs")
        for job in more:
            world.fake.cancel_job(job)
        wait_for(lambda: len(hosts.names()) == 1, "idle hosts beyond the count retired")
        retired = [name for cycle in serve.autoscaler.cycles for name in cycle.retired]
        assert len(retired) == 2
        assert not any(world.fake.runner_by_name(name) for name in retired)  # removed first
    finally:
        assert serve.stop() == 0
    assert hosts.removed_busy == []
    assert world.fake.scalesets.sessions == {}  # closed on stop
    assert world.state().load().session_id == ""
    assert any("no webhook port" in line for line in serve.lines)


def start_up(world) -> list[tuple[str, str]]:
    """The requests the fake saw up to and including the one that opened a session, and
    forgets them (method, path; a scale set's id and session ids written as ``{id}``)."""
    seen = [(r.method, r.path) for r in world.fake.requests]
    world.fake.requests.clear()
    opened = next(
        i for i, (method, path) in enumerate(seen) if (method, path) == ("POST", SESSIONS)
    )
    return seen[: opened + 1]


# Every serve --scale-set start: the App's installation token and the fleet's runner group
# (REST), a registration token and the admin token for the service.
AUTH = [
    ("GET", "/orgs/octo-org/installation"),
    ("POST", "/app/installations/1/access_tokens"),
    ("GET", "/orgs/octo-org/actions/runner-groups"),
    ("POST", "/orgs/octo-org/actions/runners/registration-token"),
    ("POST", "/actions/runner-registration"),
]
LOOK_UP = [
    ("GET", f"{SERVICE}/runtime/runnergroups/"),
    ("GET", f"{SERVICE}/runtime/runnerscalesets"),
]


def test_serve_looks_the_runner_group_and_the_scale_set_up_once_at_start_up(world):
    """Joining the scale set and the listener's first run share one create-or-adopt (it was
    done three times: 17 requests to the first session, 11 of them group and scale-set
    look-ups and the create)."""
    first = Serve(world, idle=0)
    wait_for(lambda: first.autoscaler.listener.session_id, "the first serve's session")
    assert first.stop() == 0
    assert start_up(world) == [
        *AUTH,
        *LOOK_UP,
        ("POST", f"{SERVICE}/runtime/runnerscalesets"),  # created: it did not exist
        ("POST", SESSIONS),
    ]
    second = Serve(world, idle=0)
    wait_for(lambda: second.autoscaler.listener.session_id, "the second serve's session")
    assert second.stop() == 0
    # adopted as it was (the App's installation token is still good: no REST call)
    assert start_up(world) == [*AUTH[-2:], *LOOK_UP, ("POST", SESSIONS)]


def test_a_stopped_serve_ends_its_long_poll_by_deleting_the_session(world):
    """The quiet poll is held a minute; stopping serve deletes the session, the poll ends at
    once and the listener closes up cleanly: no failure reported, nothing left open."""
    world.fake.scalesets.hold_seconds = 60.0
    serve = Serve(world, idle=0)
    wait_for(lambda: world.fake.scalesets.polls, "a long poll held at the fake")
    assert serve.stop() == 0
    listener = serve.autoscaler.listener
    assert not listener.is_alive(), "the listener outlived its session"
    assert world.fake.scalesets.sessions == {} and world.state().load().session_id == ""
    assert not any("listener failed" in line or "could not close" in line for line in serve.lines)
    assert not any("listening again" in line for line in serve.lines)


def test_a_serve_that_died_is_taken_over_and_loses_no_job_nor_a_busy_host(world):
    first = Serve(world, idle=0)
    hosts = first.hosts
    wait_for(lambda: first.autoscaler.listener.session_id, "the first serve's session")
    job = world.fake.queue_job("true", labels=JOB_LABELS)
    wait_for(lambda: hosts.names(), "a host for the job")
    (busy,) = wait_for(lambda: hosts.take_jobs(1), "the host to take the job")
    dead = first.autoscaler.listener.session_id
    # The first serve dies: its session is never closed (its DELETEs fail, as a killed
    # process sends none), so it stays open on the service, and the state remembers it.
    world.fake.fail_next(400, times=2, path_prefix=SESSIONS)
    first.stop()
    assert dead in world.fake.scalesets.sessions
    assert world.state().load().session_id == dead
    waiting = world.fake.queue_job("true", labels=JOB_LABELS)  # queued while nobody listens

    second = Serve(world, hosts, idle=0)
    try:
        wait_for(lambda: second.autoscaler.listener.session_id, "the second serve's session")
        assert dead not in world.fake.scalesets.sessions  # taken over, not waited out
        wait_for(lambda: len(hosts.names()) == 2, "a host for the job queued meanwhile")
        assert busy in hosts.busy()
        (other,) = wait_for(lambda: hosts.take_jobs(1), "the new host to take it")
        second.cycles(2)
        assert {busy, other} <= hosts.busy()
        hosts.finish(busy)
        hosts.finish(other)
        wait_for(lambda: not hosts.names(), "both used hosts gone")
    finally:
        second.stop()
    assert world.fake.jobs[job.id].status == world.fake.jobs[waiting.id].status == "completed"
    assert hosts.removed_busy == []
    assert not any("SessionConflict" in line or "busy for" in line for line in second.lines)


def test_a_second_listener_elsewhere_makes_serve_stop_with_a_clear_error(world):
    registrar, _spec, _state = join_scale_set(
        world.rest, "f", "fleet", ("self-hosted", "linux"), print, world.directory
    )
    other = MessageSession(registrar.service, registrar.state.scale_set_id, "another-machine")
    other.open()
    serve = Serve(world)
    serve.thread.join(timeout=20)
    assert serve.code == 1
    assert serve.lines[-1].startswith("problem: ")
    assert "another listener holds the scale set" in serve.lines[-1]
    other.close()


def test_an_agent_too_old_for_github_is_reported_and_launches_back_off(world):
    hosts = FakeScaleSetHosts(registrar=None)
    hosts.agents_too_old = True
    serve = Serve(world, hosts, idle=1)
    try:
        wait_for(
            lambda: any("(exit 7)" in line for line in serve.lines), "the too-old agent reported"
        )
        serve.cycles(3)
    finally:
        serve.stop()
    line = next(line for line in serve.lines if "(exit 7)" in line)
    (host,) = serve.hosts.launched
    assert f"{host}: the runner agent baked into this fleet's image is too old" in line
    assert "--agent-version latest" in line and "next launch in" in line
    assert any("postponed" in line for line in serve.lines)
    assert len(serve.hosts.launched) == 1  # no launch storm: the next one waits its back-off
