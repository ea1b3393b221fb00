"""The local fleet's scale-set pieces: the pure demand rule, the state file and its lock,
create-or-adopt and what ``down`` does with each, the registrar's removals through the
service, ``status``'s mode line, and the command line's refusals (the agent-too-old rule:
test_local_state.py)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from fleet import cli
from fleet.core.github.runners import RunnerBusyError
from fleet.core.github.scaleset.messages import JobCompleted, JobStarted
from fleet.core.github.scaleset.models import Statistics
from fleet.core.github.scaleset.session import MessageSession
from fleet.core.scaleset_listener import ScaleUpdate
from fleet.errors import FleetError
from fleet.local.commands import mode_line
from fleet.local.hosts import retire_host
from fleet.local.scale_set import (
    ScaleSetState,
    StateFile,
    delete_if_created,
    join_scale_set,
    serve_lock,
    state_path,
)
from fleet.local.serve.scale_set_mode import Restarts, ScaleSetDemand, pending_jobs
from tests.fakes.scaleset_agent import StepAgent
from tests.fakes.scaleset_hosts import FakeScaleSetHosts

pytestmark = pytest.mark.unit

LABELS = ("self-hosted", "linux")


def join(world, name: str = "fleet"):
    return join_scale_set(world.rest, "f", name, LABELS, lambda _line: None, world.directory)


# --- pure -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "min_idle", "busy", "pending"),
    [
        (None, 1, 0, 0),  # no word from the listener yet
        (0, 0, 0, 0),
        (3, 1, 0, 2),  # two assigned jobs wait for a runner, one warm idle
        (3, 1, 2, 0),  # both run: only the warm one is left to keep
        (2, 0, 5, 0),  # more busy than wanted: never negative
    ],
)
def test_the_jobs_the_desired_count_leaves_uncovered(desired, min_idle, busy, pending):
    assert pending_jobs(desired, min_idle=min_idle, busy=busy) == pending


def _update(desired: int, *, started=(), completed=(), message_id=None) -> ScaleUpdate:
    return ScaleUpdate(
        desired,
        Statistics(totalAssignedJobs=desired),
        message_id,
        started=tuple(
            JobStarted(messageType="JobStarted", runnerRequestId=1, runnerName=n) for n in started
        ),
        completed=tuple(
            JobCompleted(messageType="JobCompleted", runnerRequestId=1, runnerName=n)
            for n in completed
        ),
    )


def test_the_demand_keeps_the_last_count_and_the_runners_with_a_job_under_way():
    wake = threading.Event()
    lines: list[str] = []
    demand = ScaleSetDemand(wake, lines.append)
    assert demand.desired() is None and not demand.heard.is_set()
    demand.update(_update(2, started=("F-runner-1", "f-runner-2"), message_id=4))
    assert demand.desired() == 2 and demand.heard.is_set() and wake.is_set()
    assert demand.busy_runner_names() == {"f-runner-1", "f-runner-2"}
    assert lines == ["scale set: 2 job(s) assigned, 0 running: 2 runner(s) wanted"]
    wake.clear()
    demand.update(_update(2))  # a quiet poll with the same count: nothing to wake for
    assert not wake.is_set() and len(lines) == 1
    demand.update(_update(1, completed=("f-runner-1",), message_id=5))
    assert demand.busy_runner_names() == {"f-runner-2"} and wake.is_set()


def test_the_demand_remembers_a_bounded_number_of_runners(monkeypatch):
    monkeypatch.setattr("fleet.local.serve.scale_set_mode.MAX_RUNNING_NAMES", 3)
    demand = ScaleSetDemand(threading.Event())
    demand.update(_update(5, started=[f"r{n}" for n in range(5)]))
    assert demand.busy_runner_names() == {"r2", "r3", "r4"}


def test_listener_restarts_back_off_up_to_a_bound():
    restarts = Restarts(first=10, longest=300)
    assert [restarts.delay(n) for n in (1, 2, 3, 6, 20)] == [10, 20, 40, 300, 300]


# --- the state file and its lock -----------------------------------------------------------


def test_the_state_file_round_trips_and_says_what_to_do_when_garbled(tmp_path):
    state_file = StateFile(state_path("f", tmp_path))
    assert state_file.load() is None
    state = ScaleSetState("fleet", 3, "local-fleet", True, ("fleet", "linux"), "s-1")
    state_file.save(state)
    assert state_file.load() == state
    assert state_file.path.stat().st_mode & 0o777 == 0o600
    state_file.remember_session("")
    assert state_file.load() == replace(state, session_id="")
    state_file.path.write_text('{"format": 1, "name": "fleet"}')
    with pytest.raises(FleetError, match="not readable") as error:
        state_file.load()
    assert "move it aside" in error.value.hint
    assert state_file.remove() and not state_file.path.parent.exists()
    assert not state_file.remove()


def test_one_serve_per_fleet(tmp_path):
    refused = pytest.raises(FleetError, match="another `serve` of fleet 'f' runs")
    with serve_lock("f", tmp_path / "f"), refused, serve_lock("f", tmp_path / "f"):
        pass
    with serve_lock("f", tmp_path / "f"):  # released with the first holder
        pass


# --- create or adopt, and down ---------------------------------------------------------------


def test_a_scale_set_made_here_stays_created_by_this_fleet_and_down_deletes_it(world):
    registrar, spec, state_file = join(world)
    assert registrar.state.created and spec.labels == ("fleet", *LABELS)
    record = world.fake.scalesets.scale_sets[registrar.state.scale_set_id]
    assert [label["name"] for label in record.labels] == ["fleet", *LABELS]
    assert record.runner_group_id == 7
    state_file.remember_session("s-9")
    again, _, _ = join(world)  # serve after up: the same one, still this fleet's
    assert again.state.created and again.state.session_id == "s-9"
    lines: list[str] = []
    said = delete_if_created(world.rest, state_file, lines.append)
    assert (
        said == f"deleted scale set 'fleet' (id {again.state.scale_set_id}, created by this fleet)"
    )
    assert world.fake.scalesets.scale_sets == {} and state_file.load() is None


def test_an_existing_scale_set_is_adopted_and_left_in_place_by_down(world):
    other_fleet = join(world)[0]
    StateFile(state_path("f", world.directory)).remove()  # as if made by someone else
    registrar, _, state_file = join(world)
    assert registrar.state.scale_set_id == other_fleet.state.scale_set_id
    assert not registrar.state.created
    said = delete_if_created(world.rest, state_file, lambda _line: None)
    assert "left in place: this fleet did not create it" in said
    assert len(world.fake.scalesets.scale_sets) == 1 and state_file.load() is None


def test_without_github_settings_down_keeps_the_state_to_delete_it_later(world):
    _, _, state_file = join(world)
    said = delete_if_created(None, state_file, lambda _line: None)
    assert "NOT deleted" in said and state_file.load() is not None


def test_a_fleet_still_in_a_scale_set_it_created_cannot_silently_switch(world):
    join(world, "fleet")
    with pytest.raises(FleetError, match="this fleet created scale set 'fleet'") as error:
        join(world, "another")
    assert "--scale-set fleet" in error.value.hint


def test_a_missing_runner_group_is_named_with_what_to_do(world, app_keys):
    world.rest.settings = replace(world.rest.settings, runner_group="nope")
    with pytest.raises(FleetError, match="no runner group named 'nope'") as error:
        join(world)
    assert "FLEET_GITHUB_RUNNER_GROUP" in error.value.hint


# --- registering and removing runners through the scale set ---------------------------------


def test_a_busy_runner_is_refused_by_the_service_and_its_host_kept(world):
    registrar, _, _ = join(world)
    hosts = FakeScaleSetHosts(registrar)
    (name,) = [row.name for row in hosts.add(1)]
    assert world.fake.runner_by_name(name)["runnerScaleSetId"] == registrar.state.scale_set_id
    session = MessageSession(registrar.service, registrar.state.scale_set_id, "test")
    session.open()
    world.fake.queue_job("sleep 1", labels=LABELS)
    message = session.get_message(0, 5)
    assert session.acquire_jobs([job.runner_request_id for job in message.available])
    assert hosts.take_jobs(1) == [name]
    stale = hosts.observe().by_name()[name].registration
    stale = replace(stale, busy=False)  # GitHub's busy flag lags
    with pytest.raises(RunnerBusyError):
        registrar.deregister(stale)  # JobStillRunningException
    assert not retire_host(hosts, name, stale, lambda _line: None)
    assert name in hosts.names() and hosts.removed == []
    hosts.finish(name)
    assert registrar.deregister(stale) is False  # gone with its job (AgentNotFound)
    session.close()


def test_a_jit_config_comes_from_the_scale_set(world):
    registrar, _, _ = join(world)
    jit = registrar.register("f-runner-abc")
    agent = StepAgent(jit.encoded_jit_config)
    agent.online()
    assert world.fake.runner_by_name("f-runner-abc")["status"] == "online"
    assert set(registrar.runners("f-runner-")) == {"f-runner-abc"}
    with pytest.raises(FleetError, match="refused a JIT config for f-runner-abc"):
        registrar.register("f-runner-abc")  # AgentExistsException


# --- status ---------------------------------------------------------------------------------


def test_status_shows_the_mode_the_scale_set_and_githubs_counts(world):
    assert "REST API" in mode_line("f", world.rest, world.directory)
    registrar = join(world)[0]
    world.fake.queue_job("true", labels=LABELS)
    line = mode_line("f", world.rest, world.directory)
    assert f"mode: scale set 'fleet' (id {registrar.state.scale_set_id}, created" in line
    assert "runner group 'local-fleet'" in line and "none open" in line
    assert "1 job(s) available, 0 assigned (0 running), 0 runner(s)" in line
    assert "GitHub:" not in mode_line("f", None, world.directory)


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--scale-set", "x", "--webhook-port", "8080"], "--webhook-port is not used"),
        (["serve", "--scale-set", "x", "--jobs-file", "/tmp/j"], "--jobs-file is not used"),
    ],
)
def test_webhook_options_are_refused_with_a_scale_set(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "no port" in err and "drop --scale-set to take webhooks" in err


def test_a_scale_set_needs_github_settings(capsys, monkeypatch):
    for name in ("FLEET_GITHUB_APP_ID", "FLEET_GITHUB_APP_PRIVATE_KEY_FILE", "FLEET_GITHUB_SCOPE"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["serve", "--scale-set", "fleet"]) == 2
    assert "--scale-set fleet needs GitHub App settings" in capsys.readouterr().err
    assert cli.main(["up", "--scale-set", "fleet"]) == 2
    assert "needs GitHub App settings" in capsys.readouterr().err


def test_a_bad_scale_set_name_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--scale-set", "no spaces"])
    assert exit_info.value.code == 2
    assert "is not a scale set name" in capsys.readouterr().err
