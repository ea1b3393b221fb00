"""How a local host's probe, its GitHub registration and the job ledger become a state."""

from datetime import UTC, datetime

import pytest

from fleet.cli_text import outdated_lines
from fleet.core.github.runners import Runner
from fleet.core.scaling import RunnerStatus
from fleet.local.observe import (
    AGENT_OUTDATED_HINT,
    OUTDATED_STATE,
    HostProbe,
    HostState,
    host_state,
    observe,
    outdated_message,
    parse_probe,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LISTENING = HostProbe(unit_state="active", unit_started=True, booted=True)
FINISHED = HostProbe(unit_state="inactive", unit_started=True, unit_exit_status=0, booted=True)
WORKING = HostProbe(unit_state="active", unit_started=True, worker=True, booted=True)
READY = HostProbe(booted=True)


def runner(name: str, *, busy: bool = False, status: str = "online") -> Runner:
    return Runner(id=hash(name) % 10_000 + 1, name=name, status=status, busy=busy)


def test_the_probe_output_is_read_line_by_line():
    probe = parse_probe(
        "ActiveState=active\nSubState=running\nExecMainStartTimestampMonotonic=123456\n"
        "ExecMainStatus=0\nWorker=yes\nBooted=yes\n"
    )
    assert probe == HostProbe(
        running=True,
        unit_state="active",
        unit_started=True,
        unit_exit_status=0,
        worker=True,
        booted=True,
    )


def test_a_runner_unit_that_never_started_is_not_finished():
    probe = parse_probe("ActiveState=inactive\nExecMainStartTimestampMonotonic=0\nBooted=yes\n")
    assert not probe.unit_started
    assert not probe.finished


def test_exit_7_is_an_agent_too_old_for_github():
    probe = parse_probe("ActiveState=failed\nExecMainStartTimestampMonotonic=99\nExecMainStatus=7")
    assert probe.finished and probe.agent_outdated
    seen = observe([("h1", NOW, probe)], None, runner_prefix="h")
    assert [v.name for v in seen.finished] == [v.name for v in seen.outdated] == ["h1"]
    assert any("--agent-version latest" in reason for reason in seen.reasons)
    running = parse_probe(
        "ActiveState=active\nExecMainStartTimestampMonotonic=99\nExecMainStatus=7"
    )
    assert not running.agent_outdated  # still running: nothing ended yet
    done = parse_probe("ActiveState=inactive\nExecMainStartTimestampMonotonic=9\nExecMainStatus=0")
    assert done.finished and not done.agent_outdated
    assert observe([("h1", NOW, done)], None, runner_prefix="h").outdated == ()


def test_status_and_serve_name_the_outdated_hosts_and_how_to_re_bake():
    rows = [
        {"runner": "h1", "runner state": OUTDATED_STATE},
        {"runner": "h2", "runner state": "idle"},
        {"runner": "h3", "runner state": OUTDATED_STATE},
    ]
    (line,) = outdated_lines(rows)
    assert line == outdated_message(["h1", "h3"])
    assert line.startswith("h1, h3: the runner agent baked into this fleet's image is too old")
    for way in ("--agent-version latest", "pinned --agent-version", "--agent-url/--agent-sha256"):
        assert way in AGENT_OUTDATED_HINT
    assert outdated_lines(rows[1:2]) == []


def test_a_runner_unit_that_ran_and_ended_is_finished():
    probe = parse_probe("ActiveState=failed\nExecMainStartTimestampMonotonic=99\nExecMainStatus=1")
    assert probe.finished
    assert probe.unit_exit_status == 1


@pytest.mark.parametrize(
    ("probe", "registration", "registered", "ledger_busy", "expected"),
    [
        (HostProbe(running=False), None, True, False, HostState.GONE),
        (WORKING, runner("h"), True, False, HostState.BUSY),
        # GitHub's busy flag lags a job assignment: the worker process says busy first.
        (WORKING, runner("h", busy=False), True, False, HostState.BUSY),
        (LISTENING, runner("h", busy=True), True, False, HostState.BUSY),
        (LISTENING, runner("h"), True, True, HostState.BUSY),
        (FINISHED, runner("h", busy=True), True, True, HostState.FINISHED),
        (LISTENING, runner("h"), True, False, HostState.IDLE),
        (LISTENING, None, True, False, HostState.BOOTING),
        (HostProbe(), None, True, False, HostState.BOOTING),
        (READY, None, False, False, HostState.IDLE),
        (READY, None, True, False, HostState.BOOTING),
    ],
)
def test_host_state(probe, registration, registered, ledger_busy, expected):
    state = host_state(probe, registration, registered_fleet=registered, ledger_busy=ledger_busy)
    assert state is expected


def test_observe_joins_hosts_registrations_and_the_ledger():
    hosts = [
        ("f-runner-a", NOW, LISTENING),
        ("f-runner-b", NOW, WORKING),
        ("f-runner-c", NOW, FINISHED),
        ("f-runner-d", NOW, HostProbe(running=False)),
        ("f-runner-e", NOW, LISTENING),
    ]
    registrations = {
        name: runner(name) for name in ("f-runner-a", "f-runner-b", "f-runner-e", "f-runner-x")
    }
    registrations["other-fleet-runner-y"] = runner("other-fleet-runner-y")
    seen = observe(hosts, registrations, runner_prefix="f-runner-", busy_names=["F-RUNNER-E"])
    statuses = {r.instance_id: r.status for r in seen.runners}
    assert statuses == {
        "f-runner-a": RunnerStatus.IDLE,
        "f-runner-b": RunnerStatus.BUSY,
        "f-runner-e": RunnerStatus.BUSY,
    }
    assert [h.name for h in seen.finished] == ["f-runner-c"]
    assert [h.name for h in seen.gone] == ["f-runner-d"]
    # A registration of this fleet with no host is a ghost; another fleet's is not ours.
    assert [g.name for g in seen.ghosts] == ["f-runner-x"]
    assert seen.by_name()["f-runner-a"].registration.name == "f-runner-a"


def test_an_unregistered_fleet_has_idle_hosts_and_no_ghosts():
    seen = observe([("f-runner-a", NOW, READY)], None, runner_prefix="f-runner-")
    assert [r.status for r in seen.runners] == [RunnerStatus.IDLE]
    assert seen.ghosts == ()
