"""The autoscaler's reconcile cycle against an in-memory fleet, and its webhook endpoint.

The in-memory fleet stands in for Docker and GitHub (hosts with probes, registrations);
the cycle, the decisions (fleet.scaling) and the retire procedure are the real ones.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from fleet.errors import FleetError
from fleet.github.client import GitHubServerError
from fleet.github.runners import Runner
from fleet.local import HostRow
from fleet.local_state import HostProbe, observe
from fleet.registration import RunnerBusyError
from fleet.serve import Autoscaler, Intake, Reconciler, ServeOptions, WebhookServer, retire_host
from fleet.webhook import QueuedDelivery
from tests.unit.control_plane.payloads import SECRET, signed, workflow_job

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LISTENING = HostProbe(unit_state="active", unit_started=True, booted=True)
WORKING = HostProbe(unit_state="active", unit_started=True, worker=True, booted=True)
FINISHED = HostProbe(unit_state="inactive", unit_started=True, unit_exit_status=0, booted=True)
LABELS = ("self-hosted", "linux", "fleet-a")


class MemoryFleet:
    """Hosts and GitHub registrations in memory, behaving like LocalFleet + GitHub."""

    name = "f"
    labels = LABELS

    def __init__(self, registered: bool = True) -> None:
        self.registered = registered
        self.hosts: dict[str, tuple[datetime, HostProbe]] = {}
        self.registrations: dict[str, Runner] = {}
        self.removed: list[str] = []
        self.deregistered: list[str] = []
        self.fail_next_launch = False
        self.github_down = False
        self.on_deregister: dict[str, HostProbe] = {}  # a job lands as it is deregistered
        self._next = 0

    def host(self, probe: HostProbe, *, age: timedelta = timedelta(minutes=30), busy=False):
        self._next += 1
        name = f"f-runner-{self._next:02d}"
        self.hosts[name] = (NOW - age, probe)
        if self.registered:
            self.registrations[name] = Runner(self._next, name, "online", busy)
        return name

    def observe(self, busy_names=()):
        if self.github_down:
            raise GitHubServerError("GET", "/orgs/o/actions/runners", 502, "Bad Gateway")
        hosts = [(name, created, probe) for name, (created, probe) in self.hosts.items()]
        regs = self.registrations if self.registered else None
        return observe(hosts, regs, runner_prefix="f-runner-", busy_names=busy_names)

    def probe(self, name):
        return self.hosts[name][1] if name in self.hosts else HostProbe(running=False)

    def remove(self, name):
        if self.hosts.pop(name, None) is not None:
            self.removed.append(name)

    def remove_orphans(self):
        return []

    def deregister(self, registration):
        current = self.registrations.get(registration.name)
        if current is None:
            return False
        if current.busy:
            raise RunnerBusyError("DELETE", "/runners/1", 422, "still running a job")
        del self.registrations[registration.name]
        self.deregistered.append(registration.name)
        if registration.name in self.on_deregister:
            created, _ = self.hosts[registration.name]
            self.hosts[registration.name] = (created, self.on_deregister[registration.name])
        return True

    def add(self, count, *, validate_hosts=False, canary=False):
        rows = []
        for _ in range(count):
            name = self.host(LISTENING, age=timedelta(0))
            state = "registered" if self.registered else "booted"
            if self.fail_next_launch:
                state = "boot failed"
            rows.append(HostRow(name=name, state=state, problems=[f"{name}: boom"]))
        self.fail_next_launch = False
        return rows


def reconciler(fleet, intake=None, clock=None, **options):
    settings = {"idle": 2, "idle_grace": 0.0, "max_size": 5, **options}
    times = {"now": 1000.0}
    rec = Reconciler(
        fleet,
        ServeOptions(**settings),
        intake or Intake(clock=lambda: NOW),
        report=lambda _message: None,
        clock=clock or (lambda: NOW),
        monotonic=lambda: times["now"],
    )
    rec.times = times  # type: ignore[attr-defined]
    return rec


def test_a_host_killed_from_outside_is_removed_deregistered_and_replaced():
    fleet = MemoryFleet()
    fleet.host(LISTENING)
    killed = fleet.host(HostProbe(running=False))
    result = reconciler(fleet).cycle()
    assert result.removed == [killed]
    assert killed in fleet.deregistered
    assert len(result.launched) == 1
    assert len(fleet.hosts) == 2


def test_a_host_removed_from_outside_leaves_a_ghost_registration_that_is_deleted():
    fleet = MemoryFleet()
    fleet.host(LISTENING)
    gone = fleet.host(LISTENING)
    del fleet.hosts[gone]  # `docker rm -f` from outside
    result = reconciler(fleet).cycle()
    assert result.deregistered == [gone]
    assert len(result.launched) == 1


def test_an_ephemeral_runner_that_finished_its_job_is_replaced_by_a_fresh_host():
    fleet = MemoryFleet()
    fleet.host(LISTENING)
    done = fleet.host(FINISHED)
    result = reconciler(fleet).cycle()
    assert result.removed == [done]
    assert result.launched and result.launched[0] != done
    assert done not in fleet.hosts


def test_surplus_idle_runners_are_retired_oldest_first_after_the_grace_period():
    fleet = MemoryFleet()
    old = fleet.host(LISTENING, age=timedelta(hours=2))
    fleet.host(LISTENING, age=timedelta(hours=1))
    fleet.host(LISTENING, age=timedelta(minutes=1))
    kept = reconciler(fleet, idle=2, idle_grace=3600.0 * 3).cycle()
    assert kept.retired == []
    result = reconciler(fleet, idle=2, idle_grace=60.0).cycle()
    assert result.retired == [old]
    assert old in fleet.deregistered  # deregistered before removal


def test_a_busy_runner_is_never_retired_whatever_says_busy():
    fleet = MemoryFleet()
    worker = fleet.host(WORKING)  # a job's worker runs on the host
    flagged = fleet.host(LISTENING, busy=True)  # GitHub says busy
    ledger = fleet.host(LISTENING)  # only the job ledger knows (busy flag lags)
    intake = Intake(clock=lambda: NOW)
    payload = workflow_job("in_progress", labels=list(LABELS), runner_name=ledger)
    intake.accept(QueuedDelivery("d-1", _job_event(payload)))
    for _ in range(3):
        result = reconciler(fleet, intake, idle=0).cycle()
        assert result.retired == []
    assert {worker, flagged, ledger} <= set(fleet.hosts)
    assert fleet.deregistered == []


def test_a_job_that_lands_during_retirement_keeps_the_host():
    """Property 16: deregistered, re-checked, found busy: not removed."""
    fleet = MemoryFleet()
    host = fleet.host(LISTENING)
    fleet.on_deregister[host] = WORKING
    removed = retire_host(fleet, host, fleet.registrations[host], lambda _m: None)
    assert not removed
    assert host in fleet.hosts
    assert fleet.deregistered == [host]


def test_github_refusing_to_deregister_a_busy_runner_keeps_the_host():
    fleet = MemoryFleet()
    host = fleet.host(LISTENING)
    stale = fleet.registrations[host]
    fleet.registrations[host] = replace(stale, busy=True)  # GitHub assigned a job meanwhile
    assert not retire_host(fleet, host, stale, lambda _m: None)
    assert host in fleet.hosts


def test_uncertain_state_changes_nothing():
    fleet = MemoryFleet()
    fleet.host(HostProbe(running=False))
    fleet.github_down = True
    result = reconciler(fleet).cycle()
    assert result.errors and "nothing changed" in result.errors[0]
    assert fleet.removed == [] and fleet.deregistered == []


def test_a_failed_launch_is_cleaned_up_and_backs_off():
    fleet = MemoryFleet()
    fleet.fail_next_launch = True
    rec = reconciler(fleet, idle=1)
    first = rec.cycle()
    assert first.launched == [] and fleet.hosts == {}
    assert "failed" in first.errors[0]
    second = rec.cycle()
    assert "postponed" in second.errors[0]
    rec.times["now"] += 3600
    third = rec.cycle()
    assert len(third.launched) == 1


def test_queued_jobs_raise_capacity_up_to_max_size():
    fleet = MemoryFleet()
    intake = Intake(clock=lambda: NOW)
    for n in range(10):
        payload = workflow_job("queued", job_id=100 + n, labels=list(LABELS))
        intake.accept(QueuedDelivery(f"d-{n}", _job_event(payload)))
    result = reconciler(fleet, intake, idle=0, max_size=3).cycle()
    assert len(result.launched) == 3
    assert result.decision.queued == 10


def test_an_unregistered_fleet_keeps_its_idle_target():
    fleet = MemoryFleet(registered=False)
    result = reconciler(fleet, idle=2).cycle()
    assert len(result.launched) == 2
    assert len(reconciler(fleet, idle=2).cycle().launched) == 0


def test_the_autoscaler_runs_one_cycle_with_once_and_stops_on_request():
    fleet = MemoryFleet()
    once = Autoscaler(fleet, ServeOptions(idle=1, once=True), lambda _m: None)
    assert once.run() == 0
    assert len(once.cycles) == 1
    looping = Autoscaler(fleet, ServeOptions(idle=1, interval=3600), lambda _m: None)
    thread = threading.Thread(target=looping.run)
    thread.start()
    looping.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def _job_event(payload):
    from fleet.jobs import parse_workflow_job_event
    from fleet.ledger import JobEvent

    return JobEvent.from_webhook(parse_workflow_job_event(payload))


# --- the webhook endpoint ---------------------------------------------------------------


@pytest.fixture
def endpoint():
    intake = Intake()
    server = WebhookServer(
        "127.0.0.1", 0, secret=SECRET, labels=LABELS, intake=intake, report=lambda _m: None
    )
    server.start()
    yield f"http://127.0.0.1:{server.port}/", intake
    server.stop()


def test_a_signed_queued_job_is_accepted_once_per_delivery(endpoint):
    url, intake = endpoint
    headers, body = signed(workflow_job("queued", labels=list(LABELS)), delivery="abc-1")
    assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 202
    assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 202
    assert intake.queued() == 1
    assert intake.wake.is_set()


def test_in_progress_names_the_busy_runner(endpoint):
    url, intake = endpoint
    payload = workflow_job("in_progress", labels=list(LABELS), runner_name="f-runner-07")
    headers, body = signed(payload, delivery="abc-2")
    assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 202
    assert intake.busy_runner_names() == {"f-runner-07"}
    assert intake.queued() == 0


def test_a_forged_delivery_is_rejected_and_changes_nothing(endpoint):
    url, intake = endpoint
    headers, body = signed(workflow_job("queued", labels=list(LABELS)), secret="not-the-secret")
    answer = requests.post(url, data=body, headers=headers, timeout=5)
    assert answer.status_code == 401
    assert intake.queued() == 0
    unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    assert requests.post(url, data=body, headers=unsigned, timeout=5).status_code == 401


def test_jobs_for_other_labels_are_ignored(endpoint):
    url, intake = endpoint
    headers, body = signed(workflow_job("queued", labels=["self-hosted", "gpu"]))
    assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 204
    assert intake.queued() == 0


def test_an_oversized_delivery_is_refused_unread(endpoint):
    url, _ = endpoint
    answer = requests.post(url, data=b"x" * (1024 * 1024 + 1), timeout=5)
    assert answer.status_code == 413


def test_the_endpoint_has_a_health_check(endpoint):
    url, _ = endpoint
    answer = requests.get(url + "healthz", timeout=5)
    assert answer.status_code == 200
    assert json.loads(answer.text)["reason"] == "ok"


def test_a_webhook_port_without_a_secret_is_refused():
    with pytest.raises(FleetError, match="needs a webhook secret"):
        WebhookServer("127.0.0.1", 0, secret="", labels=LABELS, intake=Intake(), report=print)


def test_intake_forgets_completed_jobs_after_a_while():
    moments = {"now": NOW}
    intake = Intake(clock=lambda: moments["now"], keep_completed=timedelta(minutes=5))
    done = workflow_job("completed", labels=list(LABELS), conclusion="success")
    intake.accept(QueuedDelivery("d-1", _job_event(done)))
    assert len(intake.records()) == 1
    moments["now"] += timedelta(minutes=6)
    assert intake.records() == []


def test_a_launch_that_raises_backs_off_instead_of_retrying_every_cycle():
    fleet = MemoryFleet()

    def broken(count, **_options):
        raise FleetError("could not start runner host f-runner-99: no space left on device")

    fleet.add = broken  # type: ignore[method-assign]
    rec = reconciler(fleet, idle=1)
    first = rec.cycle()
    assert "no space left" in first.errors[0] and "next launch in 10 s" in first.errors[0]
    assert "postponed" in rec.cycle().errors[0]


def test_a_host_that_never_registers_is_replaced_after_the_boot_deadline():
    """Property 19: booting past --boot-deadline is ended (deregistered if a registration
    exists) and replaced; booting within it is left alone."""
    fleet = MemoryFleet()
    stuck = fleet.host(HostProbe(booted=False), age=timedelta(minutes=11))
    fresh = fleet.host(HostProbe(booted=False), age=timedelta(minutes=1))
    result = reconciler(fleet, idle=2, boot_deadline=600.0).cycle()
    assert result.terminated == [stuck]
    assert stuck in fleet.deregistered and stuck not in fleet.hosts
    assert fresh in fleet.hosts
    assert len(result.launched) == 1
