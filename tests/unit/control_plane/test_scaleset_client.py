"""The scale-set client against the FAKE scale-set service on loopback: the registration
flow and admin-token refresh, the admin calls and their typed errors, sessions (409), the
long poll (200/202), redelivery, acquire, the queue token's 401, and bounded retries on 5xx
and rate limits."""

from __future__ import annotations

import threading
import time

import pytest

from fleet.core.github.errors import GitHubNotFound, GitHubRateLimited, GitHubServerError
from fleet.core.github.scaleset.errors import (
    AgentExists,
    AgentNotFound,
    JobStillRunning,
    QueueTokenExpired,
    SessionConflict,
    SessionGone,
)
from fleet.core.github.scaleset.session import MessageSession
from tests.fakes.scaleset_agent import StepAgent
from tests.fakes.scaleset_service import SESSION_EXPIRED_TYPE
from tests.unit.control_plane.scaleset_world import GROUP, GROUP_ID, ORG, World

# integration, not unit: the FAKE scale-set service runs over loopback with threads and
# timed waits (its long poll), which the unit layer's shifted-clock run cannot host
# (libfaketime fakes the monotonic clock, so a 1 s timed wait lasts a year).
pytestmark = pytest.mark.integration


def make_scale_set(world: World, name: str = "fleet"):
    return world.service.create_scale_set(name, GROUP_ID)


def open_session(world: World, name: str = "fleet") -> MessageSession:
    """A new scale set ``name`` with an open message session on it."""
    session = world.session(make_scale_set(world, name).id)
    session.open()
    return session


def test_registration_flow_gives_the_service_url_and_an_admin_token(world):
    group = world.service.runner_group(GROUP)
    assert (group.id, group.name) == (GROUP_ID, GROUP)
    token_calls = world.fake.calls("POST", f"/orgs/{ORG}/actions/runners/registration-token")
    registration = world.fake.calls("POST", "/actions/runner-registration")
    assert len(token_calls) == 1 and len(registration) == 1
    assert registration[0].headers["Authorization"].startswith("RemoteAuth AREG")
    assert registration[0].body == {
        "url": f"{world.fake.base_url}/{ORG}",
        "runner_event": "register",
    }
    admin = world.fake.calls("GET", "/_services/pipelines/_apis/runtime/runnergroups/")
    assert admin[0].args["api-version"] == "6.0-preview"
    assert admin[0].headers["Authorization"].startswith("Bearer ")


def test_the_admin_token_is_reused_then_refreshed_before_its_exp(world):
    world.service.runner_group(GROUP)
    world.service.runner_group(GROUP)
    assert world.fake.admin_tokens_issued == 1
    world.clock.advance(world.fake.admin_token_ttl - 59)  # inside the 60 s refresh margin
    world.service.runner_group(GROUP)
    assert world.fake.admin_tokens_issued == 2


def test_a_refused_admin_token_is_replaced_and_the_call_retried_once(world):
    world.service.runner_group(GROUP)
    world.fake.fail_next(401, path_prefix="/_services/", message="token revoked")
    assert world.service.runner_group(GROUP).id == GROUP_ID
    assert world.fake.admin_tokens_issued == 2


def test_a_missing_runner_group_says_what_to_do(world):
    with pytest.raises(GitHubNotFound, match="no runner group named 'nope': create it"):
        world.service.runner_group("nope")


def test_scale_sets_are_created_found_updated_and_deleted(world):
    created = make_scale_set(world)
    assert created.id and created.label_names == ("fleet",)
    assert created.runner_setting.disable_update is True
    found = world.service.get_scale_set(GROUP_ID, "fleet")
    assert found is not None and found.id == created.id
    assert world.service.get_scale_set(GROUP_ID, "other") is None
    changed = created.model_copy(update={"labels": (*created.labels, created.labels[0])})
    updated = world.service.update_scale_set(created.id, changed)
    assert updated.label_names == ("fleet", "fleet")
    assert world.service.get_scale_set_by_id(created.id).id == created.id
    assert world.service.delete_scale_set(created.id) is True
    assert world.service.delete_scale_set(created.id) is False


def test_jit_configs_and_runner_removal_with_typed_errors(world):
    scale_set = make_scale_set(world)
    jit = world.service.generate_jit_config(scale_set.id, "fleet-r1")
    assert jit.runner.name == "fleet-r1" and jit.runner.runner_scale_set_id == scale_set.id
    assert jit.encoded_jit_config not in repr(jit)
    with pytest.raises(AgentExists):
        world.service.generate_jit_config(scale_set.id, "fleet-r1")
    ref = world.service.get_runner_by_name("fleet-r1")
    assert ref is not None and ref.id == jit.runner.id
    world.fake.queue_job("true", labels=("fleet",))
    session = world.session(scale_set.id)
    session.open()
    message = session.get_message(0, 5)
    session.acquire_jobs([m.runner_request_id for m in message.available])
    agent = StepAgent(jit.encoded_jit_config)
    agent.online()
    assert agent.take_job() is not None
    with pytest.raises(JobStillRunning):
        world.service.remove_runner(jit.runner.id)
    agent.finish(0)
    with pytest.raises(AgentNotFound):  # an ephemeral runner is gone after its job
        world.service.remove_runner(jit.runner.id)
    idle = world.service.generate_jit_config(scale_set.id, "fleet-r2")
    world.service.remove_runner(idle.runner.id)
    assert world.service.get_runner_by_name("fleet-r2") is None


def test_a_second_session_conflicts_until_the_first_is_closed_or_expires(world):
    scale_set = make_scale_set(world)
    first = world.session(scale_set.id, "a")
    opened = first.open()
    assert opened.message_queue_access_token not in repr(opened)
    with pytest.raises(SessionConflict, match="already has an open session"):
        world.session(scale_set.id, "b").open()
    assert first.close() is True and first.close() is False
    second = world.session(scale_set.id, "b")
    second.open()
    world.clock.advance(world.fake.scalesets.session_expiry + 1)  # "b" stopped polling
    world.session(scale_set.id, "c").open()
    assert second.close() is False  # the service dropped it


def test_a_session_can_be_taken_over_by_its_remembered_id(world):
    scale_set = make_scale_set(world)
    old = world.session(scale_set.id, "a").open()
    fresh = world.session(scale_set.id, "a")
    assert fresh.close_other(old.session_id) is True
    fresh.open()
    assert fresh.close_other(old.session_id) is False


def test_a_session_deleted_under_a_long_poll_ends_the_poll_with_session_gone(world):
    """The poll is held (a minute: far past the wait below), the session is deleted from
    another thread, and the poll ends at once with the service's answer for a session it no
    longer holds; closing it again is no error."""
    world.fake.scalesets.hold_seconds = 60.0
    session = open_session(world)
    session.poll_timeout = (2.0, 90.0)
    opened = session.session
    outcome: list[BaseException | object] = []

    def poll() -> None:
        try:
            outcome.append(session.get_message(0, 5))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    deadline = time.monotonic() + 10
    while not world.fake.scalesets.polls:  # the poll is held at the fake
        assert time.monotonic() < deadline, "the poll never reached the fake"
        time.sleep(0.01)
    other = world.session(session.scale_set_id)
    assert other.close_other(opened.session_id) is True
    poller.join(timeout=10)
    assert not poller.is_alive(), "the long poll outlived its session"
    (gone,) = outcome
    assert isinstance(gone, SessionGone) and gone.status == 400
    assert gone.type_name == SESSION_EXPIRED_TYPE
    assert f"The session identifier {opened.session_id} is not valid." in str(gone)
    assert session.refreshes == 0  # not taken for an expired queue token
    assert session.close() is False  # already gone: not an error
    assert other.close_other(opened.session_id) is False


def test_long_poll_202_then_a_batch_with_statistics_and_redelivery(world):
    session = open_session(world)
    assert session.get_message(0, 3) is None  # 202 after the (short) hold
    job = world.fake.queue_job("true", labels=("fleet",))
    message = session.get_message(0, 3)
    assert message is not None
    assert [m.job_display_name for m in message.available] == [f"job {job.id}"]
    assert message.statistics.total_available_jobs == 1
    again = session.get_message(message.message_id, 3)
    assert again is not None and again.message_id == message.message_id  # not deleted
    session.delete_message(message.message_id)
    assert session.get_message(message.message_id, 3) is None
    poll = world.fake.calls("GET", "/_queue/")[-1]
    assert poll.args == {"lastMessageId": str(message.message_id)}
    assert poll.headers["X-Scalesetmaxcapacity"] == "3"
    assert "api-version=6.0-preview" in poll.headers["Accept"]


def test_a_restarted_listener_gets_the_undeleted_message_again(world):
    scale_set = make_scale_set(world)
    first = world.session(scale_set.id, "a")
    first.open()
    world.fake.queue_job("true", labels=("fleet",))
    message = first.get_message(0, 1)
    first.close()  # stopped before deleting it
    second = world.session(scale_set.id, "a")
    second.open()
    assert second.get_message(0, 1).message_id == message.message_id


def test_acquire_assign_start_complete_and_the_statistics_on_the_way(world):
    session = open_session(world)
    world.fake.queue_job("true", labels=("fleet",))
    other = world.fake.queue_job("true", labels=("self-hosted", "linux"))  # not the set's
    available = session.get_message(0, 2)
    session.delete_message(available.message_id)
    ids = [m.runner_request_id for m in available.available]
    assert session.acquire_jobs(ids) == tuple(ids)
    assert session.acquire_jobs(ids) == ()  # acquired once only
    assigned = session.get_message(available.message_id, 2)
    session.delete_message(assigned.message_id)
    assert [m.runner_request_id for m in assigned.assigned] == ids
    assert assigned.statistics.total_assigned_jobs == 1
    jit = world.service.generate_jit_config(session.scale_set_id, "fleet-r1")
    agent = StepAgent(jit.encoded_jit_config)
    agent.online()
    agent.take_job()
    started = session.get_message(assigned.message_id, 2)
    session.delete_message(started.message_id)
    assert [(m.runner_name, m.runner_id) for m in started.started] == [("fleet-r1", jit.runner.id)]
    assert started.statistics.total_running_jobs == 1
    assert started.statistics.total_busy_runners == 1
    agent.finish(1)
    completed = session.get_message(started.message_id, 2)
    assert [m.result for m in completed.completed] == ["failed"]
    assert completed.statistics.total_assigned_jobs == 0
    assert world.fake.jobs[other.id].status == "queued"


def test_a_job_taken_back_completes_as_canceled(world):
    session = open_session(world)
    job = world.fake.queue_job("true", labels=("fleet",))
    first = session.get_message(0, 1)
    session.delete_message(first.message_id)
    world.fake.cancel_job(job)
    assert [m.result for m in session.get_message(first.message_id, 1).completed] == ["canceled"]


def test_jobs_queued_before_the_scale_set_exists_are_offered_when_it_is_created(world):
    world.fake.queue_job("true", labels=("later",))
    session = open_session(world, "later")
    assert len(session.get_message(0, 1).available) == 1


def test_an_expired_queue_token_refreshes_the_session_and_retries_once(world):
    session = open_session(world)
    world.fake.queue_job("true", labels=("fleet",))
    world.fake.scalesets.expire_queue_tokens()
    message = session.get_message(0, 1)
    assert message is not None and session.refreshes == 1
    world.fake.scalesets.expire_queue_tokens()
    session.delete_message(message.message_id)
    assert session.refreshes == 2
    world.fake.queue_job("true", labels=("fleet",))
    world.fake.scalesets.expire_queue_tokens()
    available = session.get_message(0, 1)
    world.fake.scalesets.expire_queue_tokens()
    assert len(session.acquire_jobs([available.available[0].runner_request_id])) == 1
    assert session.refreshes == 4


def test_a_queue_that_refuses_the_refreshed_token_too_is_an_error(world):
    session = open_session(world)
    world.fake.fail_next(401, times=2, path_prefix="/_queue/")
    with pytest.raises(QueueTokenExpired, match="right after a refresh"):
        session.get_message(0, 1)
    assert session.refreshes == 1


def test_a_5xx_burst_on_the_registration_token_is_retried(world):
    path = f"/orgs/{ORG}/actions/runners/registration-token"
    world.fake.fail_next(503, times=2, path_prefix=path)
    assert world.service.runner_group(GROUP).id == GROUP_ID
    assert len(world.fake.calls("POST", path)) == 3  # two refused, the third served


def test_a_5xx_burst_is_retried_with_backoff_within_bounds(world):
    session = open_session(world)
    world.fake.fail_next(503, times=2, path_prefix="/_queue/")
    assert session.get_message(0, 1) is None
    assert world.clock.sleeps == [0.5, 1.0]  # half-fixed backoff, no jitter
    world.fake.fail_next(502, times=5, path_prefix="/_queue/")
    before = len(world.fake.calls("GET", "/_queue/"))
    with pytest.raises(GitHubServerError):
        session.get_message(0, 1)
    assert len(world.fake.calls("GET", "/_queue/")) - before == 3  # max_attempts


def test_rate_limits_are_waited_out_or_raised_when_too_long(world):
    scale_set = make_scale_set(world)
    world.fake.fail_next(429, headers={"Retry-After": "7"}, path_prefix="/_services/")
    assert world.service.get_scale_set_by_id(scale_set.id).id == scale_set.id
    assert 7 in world.clock.sleeps
    world.fake.fail_next(429, headers={"Retry-After": "3600"}, path_prefix="/_services/")
    slept = list(world.clock.sleeps)
    with pytest.raises(GitHubRateLimited):
        world.service.get_scale_set_by_id(scale_set.id)
    assert world.clock.sleeps == slept  # an hour is not slept


def test_every_call_has_a_timeout_and_the_poll_outlasts_the_service_hold(world):
    session = open_session(world)
    session.get_message(0, 1)
    session.close()
    assert world.http.timeouts and all(t is not None for t in world.http.timeouts)
    assert (2.0, 10.0) in world.http.timeouts  # the poll's, longer than the fake's hold


def test_the_default_poll_timeout_outlasts_the_real_services_50_second_hold():
    from fleet.core.github.scaleset.session import DEFAULT_POLL_TIMEOUT

    assert DEFAULT_POLL_TIMEOUT[1] > 50
