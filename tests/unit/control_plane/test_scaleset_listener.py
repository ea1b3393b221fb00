"""The scale-set listener (fleet.core.scaleset_listener) against the FAKE service on loopback:
create-or-adopt, the session's 409 waited out, given up or taken over, acquire, the desired
count handed to a callback, messages deleted only after it, transient failures, no busy loop,
and the session closed whatever ends the run."""

from __future__ import annotations

import threading
import time

import pytest

from fleet.core.github.errors import GitHubServerError
from fleet.core.github.scaleset.errors import SessionConflict
from fleet.core.scaleset_listener import (
    ListenerLimits,
    ScaleSetSpec,
    ScaleUpdate,
    adopt_or_create,
    run_listener,
)
from tests.fakes.github_api import FakeClock
from tests.fakes.scaleset_agent import StepAgent
from tests.unit.control_plane.scaleset_world import GROUP, scaleset_world

# integration, not unit: the FAKE scale-set service runs over loopback with threads and
# timed waits (its long poll), which the unit layer's shifted-clock run cannot host
# (libfaketime fakes the monotonic clock, so a 1 s timed wait lasts a year).
pytestmark = pytest.mark.integration

SPEC = ScaleSetSpec(name="fleet", runner_group=GROUP)


class FakeStop:
    """A stop signal whose waits move the fake clock; set after ``after`` waits if given."""

    def __init__(self, clock: FakeClock, after: int | None = None) -> None:
        self.clock = clock
        self.after = after
        self.waits: list[float] = []
        self.stopped = False

    def is_set(self) -> bool:
        return self.stopped

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        self.clock.advance(timeout or 0.0)
        if self.after is not None and len(self.waits) >= self.after:
            self.stopped = True
        return self.stopped


def listen(world, updates, **kwargs):
    limits = kwargs.pop("limits", ListenerLimits(min_idle=1, max_runners=3))
    return run_listener(
        world.service,
        SPEC,
        limits,
        updates.append,
        owner="listener-1",
        stop=kwargs.pop("stop", FakeStop(world.clock)),
        clock=world.clock,
        **kwargs,
    )


def test_the_scale_set_is_created_once_then_adopted_with_its_labels_corrected(world):
    created = adopt_or_create(world.service, SPEC).scale_set
    assert created.label_names == ("fleet",)
    relabelled = adopt_or_create(
        world.service, ScaleSetSpec("fleet", GROUP, labels=("fleet", "linux"))
    ).scale_set
    assert relabelled.id == created.id and relabelled.label_names == ("fleet", "linux")
    assert len(world.fake.scalesets.scale_sets) == 1


def service_calls(world) -> list[tuple[str, str]]:
    """The admin calls the fake saw (method, path under the runtime API), then forgets them."""
    prefix = "/_services/pipelines/_apis/runtime/"
    seen = [(r.method, r.path[len(prefix) :]) for r in world.fake.requests if prefix in r.path]
    world.fake.requests.clear()
    return seen


def test_each_run_looks_the_scale_set_up_once_and_not_at_all_when_handed_it(world):
    opened = adopt_or_create(world.service, SPEC)
    assert opened.created and opened.group.name == GROUP
    assert service_calls(world) == [
        ("GET", "runnergroups/"),
        ("GET", "runnerscalesets"),
        ("POST", "runnerscalesets"),
    ]
    again = adopt_or_create(world.service, SPEC)
    assert not again.created and again.id == opened.id
    service_calls(world)
    sessions = f"runnerscalesets/{opened.id}/sessions"
    report = listen(world, [], max_polls=1)  # as the AWS listener function calls it
    assert report.scale_set_id == opened.id
    assert service_calls(world)[:3] == [
        ("GET", "runnergroups/"),
        ("GET", "runnerscalesets"),
        ("POST", sessions),
    ]
    report = listen(world, [], max_polls=1, opened=opened)  # as serve's listener does
    assert report.scale_set_id == opened.id
    assert service_calls(world)[0] == ("POST", sessions)


def test_messages_are_acquired_counted_handed_over_and_deleted(world):
    updates: list[ScaleUpdate] = []
    world.fake.queue_job("true", labels=("fleet",))
    world.fake.queue_job("true", labels=("fleet",))
    report = listen(world, updates, max_polls=3)
    assert updates[0].message_id is None and updates[0].desired == 1  # min idle, no jobs
    first = next(u for u in updates if u.message_id is not None)
    assert len(first.acquired) == 2 and report.acquired == list(first.acquired)
    assigned = [u for u in updates if u.statistics.total_assigned_jobs == 2]
    assert assigned and assigned[0].desired == 3  # min(3, 1 + 2)
    record = world.fake.scalesets.scale_sets[report.scale_set_id]
    assert record.messages == {}  # every handled message deleted
    assert report.closed and world.fake.scalesets.sessions == {}
    assert report.ended == "max polls"


def test_a_callback_that_fails_leaves_the_message_to_come_again(world):
    world.fake.queue_job("true", labels=("fleet",))

    def refuse(update: ScaleUpdate) -> None:
        if update.message_id is not None:
            raise RuntimeError("the fleet could not scale")

    with pytest.raises(RuntimeError):
        run_listener(
            world.service,
            SPEC,
            ListenerLimits(),
            refuse,
            owner="a",
            stop=FakeStop(world.clock),
            clock=world.clock,
            max_polls=2,
        )
    assert world.fake.scalesets.sessions == {}  # closed all the same
    updates: list[ScaleUpdate] = []
    listen(world, updates, max_polls=1)
    again = [u for u in updates if u.message_id is not None]
    assert again and again[0].acquired == ()  # already acquired the first time


def test_a_busy_session_is_waited_out_until_the_service_drops_it(world):
    scale_set = adopt_or_create(world.service, SPEC).scale_set
    world.session(scale_set.id, "dead-listener").open()
    stop = FakeStop(world.clock)
    limits = ListenerLimits(conflict_wait=300, conflict_retry=30)
    report = listen(world, [], limits=limits, stop=stop, max_polls=1)
    assert report.session_id and stop.waits[:4] == [30, 30, 30, 30]  # 120 s session expiry


def test_a_busy_session_that_stays_busy_is_given_up(world):
    scale_set = adopt_or_create(world.service, SPEC).scale_set
    world.session(scale_set.id, "other-listener").open()
    stop = FakeStop(world.clock)
    limits = ListenerLimits(conflict_wait=60, conflict_retry=30)
    with pytest.raises(SessionConflict):
        listen(world, [], limits=limits, stop=stop, max_polls=1)
    assert stop.waits == [30, 30]


def test_its_own_previous_session_is_taken_over_at_once(world):
    scale_set = adopt_or_create(world.service, SPEC).scale_set
    old = world.session(scale_set.id, "listener-1").open()
    stop = FakeStop(world.clock)
    seen: list[tuple[int, str]] = []
    report = listen(
        world,
        [],
        stop=stop,
        max_polls=1,
        previous_session_id=old.session_id,
        on_session=lambda *ids: seen.append(ids),
    )
    assert stop.waits == [1.0]  # only the pause after a quick 202, no conflict wait
    assert seen == [(scale_set.id, report.session_id)] and report.session_id != old.session_id


def test_a_stop_while_waiting_out_a_conflict_opens_nothing(world):
    scale_set = adopt_or_create(world.service, SPEC).scale_set
    world.session(scale_set.id, "other").open()
    report = listen(world, [], stop=FakeStop(world.clock, after=1), max_polls=5)
    assert report.ended == "stopped" and report.session_id == ""


def test_transient_failures_back_off_and_too_many_end_the_run_with_the_session_closed(world):
    updates: list[ScaleUpdate] = []
    world.fake.fail_next(503, times=3, path_prefix="/_queue/")  # one poll's three attempts
    stop = FakeStop(world.clock)
    report = listen(world, updates, stop=stop, max_polls=2)
    assert report.failures == 1 and 5.0 in stop.waits
    world.fake.fail_next(503, times=100, path_prefix="/_queue/")
    limits = ListenerLimits(max_failures=2)
    with pytest.raises(GitHubServerError):
        listen(world, updates, limits=limits, max_polls=10)
    assert world.fake.scalesets.sessions == {}


def test_quick_quiet_polls_are_paced_not_spun(world):
    world.fake.scalesets.hold_seconds = 0.0  # a service that answers 202 at once
    stop = FakeStop(world.clock)
    report = listen(world, [], stop=stop, max_polls=5)
    assert report.polls == 5 and stop.waits == [1.0] * 5


def test_the_run_ends_at_its_deadline(world):
    world.fake.scalesets.hold_seconds = 0.0
    report = listen(world, [], until=world.clock() + 3.5)
    assert report.ended == "deadline" and report.polls == 4 and report.closed


def test_jobs_flow_through_a_running_listener_to_runners_and_back(app_keys, scaleset_server):
    """A listener on its own thread, real time: jobs queued at the fake GitHub raise the
    count, runners made from scale-set JIT configs take them, completions lower it."""
    with scaleset_world(app_keys, scaleset_server) as world:
        updates: list[ScaleUpdate] = []
        stop = threading.Event()
        thread = threading.Thread(
            target=run_listener,
            args=(world.service, SPEC, ListenerLimits(min_idle=0, max_runners=5), updates.append),
            kwargs={"owner": "t", "stop": stop, "clock": time.monotonic, "max_polls": 200},
            daemon=True,
        )
        thread.start()
        try:
            jobs = [world.fake.queue_job("true", labels=("fleet",)) for _ in range(2)]
            wait_for(lambda: updates and updates[-1].desired == 2)
            scale_set_id = next(iter(world.fake.scalesets.scale_sets))
            for n in range(2):
                jit = world.service.generate_jit_config(scale_set_id, f"fleet-r{n}")
                agent = StepAgent(jit.encoded_jit_config)
                agent.online()
                assert agent.take_job() is not None
                agent.finish(0)
            wait_for(lambda: sum(len(u.completed) for u in updates) == 2)
            wait_for(lambda: updates[-1].desired == 0)
            started = {m.runner_name for u in updates for m in u.started}
            assert started == {"fleet-r0", "fleet-r1"}
            assert all(world.fake.jobs[j.id].status == "completed" for j in jobs)
        finally:
            stop.set()
            thread.join(timeout=10)
        assert not thread.is_alive() and world.fake.scalesets.sessions == {}


def wait_for(condition, limit: float = 10.0) -> None:
    """Wait (bounded) for ``condition``; fails the test if it never holds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)
