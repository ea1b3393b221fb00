"""The autoscaler's reconcile cycle against an in-memory fleet, and its webhook endpoint.

The in-memory fleet stands in for Docker and GitHub (hosts with probes, registrations);
the cycle, the decisions (fleet.core.scaling) and the retire procedure are the real ones.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from fleet.core.github.actions import WorkflowJobStatus
from fleet.core.github.client import GitHubClient
from fleet.core.github.deliveries import RedeliveryReport
from fleet.core.github.errors import GitHubNotFound, GitHubServerError
from fleet.core.github.runners import Runner, Scope
from fleet.core.ledger import JobEvent, JobRecord, JobState
from fleet.core.webhook import QueuedDelivery
from fleet.errors import FleetError
from fleet.local.enrol import HostRow
from fleet.local.hosts import retire_host
from fleet.local.observe import HostProbe, observe
from fleet.local.registration import GitHubSettings, Registrar, RunnerBusyError
from fleet.local.serve.autoscaler import Autoscaler
from fleet.local.serve.catch_up import GitHubJobSource, RedeliverySchedule, stale_jobs
from fleet.local.serve.intake import Intake
from fleet.local.serve.reconciler import Reconciler, ServeOptions
from fleet.local.serve.webhook_server import WebhookServer
from tests.fakes.github import FakeGitHubActions
from tests.fakes.github_jobs import WallClock
from tests.fakes.payloads import SECRET, signed, workflow_job

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LISTENING = HostProbe(unit_state="active", unit_started=True, booted=True)
WORKING = HostProbe(unit_state="active", unit_started=True, worker=True, booted=True)
FINISHED = HostProbe(unit_state="inactive", unit_started=True, unit_exit_status=0, booted=True)
LABELS = ("self-hosted", "linux", "fleet-a")


def wall_now() -> datetime:
    """The Autoscaler reads the real clock: its in-memory hosts must be created on it too."""
    return datetime.now(UTC)


class MemoryFleet:
    """Hosts and GitHub registrations in memory, behaving like LocalFleet + GitHub."""

    name = "f"
    labels = LABELS

    def __init__(self, registered: bool = True, now=lambda: NOW) -> None:
        self.registered = registered
        self.now = now  # what a host's creation time is taken from
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
        self.hosts[name] = (self.now() - age, probe)
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


TOO_OLD = HostProbe(unit_state="failed", unit_started=True, unit_exit_status=7, booted=True)


def test_a_runner_whose_agent_is_too_old_is_named_and_launches_back_off():
    """Exit 7 (ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1): GitHub refused the
    agent. The host is cleared away like a finished one, the cycle says why and how to
    re-bake, and new hosts (from the same image) wait for a back-off that keeps growing
    until a host takes a job again (the scale-set mode's test: test_serve_scale_set.py)."""
    fleet = MemoryFleet()
    outdated = fleet.host(TOO_OLD)
    rec = reconciler(fleet)
    result = rec.cycle()
    assert result.removed == [outdated]
    (problem,) = [e for e in result.errors if "exit 7" in e]
    assert problem.startswith(f"{outdated}: the runner agent baked into this fleet's image")
    assert "python -m fleet up --agent-version latest" in problem
    assert problem.endswith("next launch in 10 s")
    assert result.launched == []  # postponed: the next host would be just as old
    rec.times["now"] += 11  # past the first back-off (10 s)
    first, second = rec.cycle().launched
    # A new host from the same image exits 7 too: no host took a job since, so the back-off
    # doubles instead of starting over.
    fleet.hosts[first] = (fleet.hosts[first][0], TOO_OLD)
    (problem,) = [e for e in rec.cycle().errors if "exit 7" in e]
    assert problem.startswith(f"{first}: ") and problem.endswith("next launch in 20 s")
    # A host that takes a job: the image's agent is accepted, and the back-off starts over.
    fleet.hosts[second] = (fleet.hosts[second][0], WORKING)
    rec.times["now"] += 21
    third, *_ = rec.cycle().launched
    fleet.hosts[third] = (fleet.hosts[third][0], TOO_OLD)
    (problem,) = [e for e in rec.cycle().errors if "exit 7" in e]
    assert problem.startswith(f"{third}: ") and problem.endswith("next launch in 10 s")


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
    fleet = MemoryFleet(now=wall_now)
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
    from fleet.core.jobs import parse_workflow_job_event
    from fleet.core.ledger import JobEvent

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


# --- catching up on what webhooks missed --------------------------------------------------


def _queued(job_id: int, repository: str = "acme/app") -> JobEvent:
    return JobEvent(
        job_id=job_id,
        state=JobState.QUEUED,
        run_id=job_id * 10,
        repository=repository,
        created_at=NOW - timedelta(hours=1),
        labels=LABELS,
    )


def _on_github(job_id: int, status: str, *, runner_name: str | None = None):
    return WorkflowJobStatus(
        job_id=job_id,
        run_id=job_id * 10,
        repository="acme/app",
        status=status,
        conclusion="success" if status == "completed" else None,
        created_at=NOW - timedelta(hours=1),
        labels=LABELS,
        started_at=NOW - timedelta(minutes=50) if status != "queued" else None,
        completed_at=NOW - timedelta(minutes=40) if status == "completed" else None,
        runner_id=7 if runner_name else None,
        runner_name=runner_name,
    )


class MemoryGitHub:
    """A ``JobSource`` in memory: where GitHub says jobs stand, and outages on demand."""

    def __init__(self) -> None:
        self.jobs: dict[int, WorkflowJobStatus] = {}
        self.passes: list[tuple[datetime, datetime]] = []  # (since, now) of each pass
        self.lookups: list[int] = []
        self.down = False

    def redeliver_failed(self, since, now):
        if self.down:
            raise GitHubServerError("GET", "/app/hook/deliveries", 502, "Bad Gateway")
        self.passes.append((since, now))
        return RedeliveryReport(examined=0)

    def job(self, repository, job_id):
        if self.down:
            raise GitHubServerError("GET", f"/repos/{repository}/actions/jobs", 503, "Unavailable")
        self.lookups.append(job_id)
        if job_id not in self.jobs:
            raise GitHubNotFound("GET", f"/repos/{repository}/actions/jobs/{job_id}", 404, "Gone")
        return self.jobs[job_id]


class Moments:
    """One injected clock for the intake and the reconciler; moves only when told to."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def catching_up(fleet, github, clock, **options):
    """A reconciler that catches up with ``github``, and its intake, on clock ``clock``."""
    intake = Intake(clock=clock)
    rec = reconciler(fleet, intake, clock=clock, **options)
    rec.jobs = github
    return rec, intake


def test_stale_jobs_are_the_open_ones_silent_too_long_longest_silent_first_and_bounded():
    def record(job_id, state):
        return replace(JobRecord.from_event(_queued(job_id)), state=state)

    news = [
        (record(1, JobState.QUEUED), NOW - timedelta(minutes=11)),
        (record(2, JobState.IN_PROGRESS), NOW - timedelta(minutes=30)),
        (record(3, JobState.QUEUED), NOW - timedelta(minutes=9)),  # heard of recently
        (record(4, JobState.COMPLETED), NOW - timedelta(hours=2)),  # nothing left to learn
        (record(5, JobState.WAITING), NOW - timedelta(hours=2)),  # waits for an approval
        (record(6, JobState.QUEUED), NOW - timedelta(minutes=20)),
    ]
    ten_minutes = timedelta(minutes=10)
    stale = stale_jobs(news, now=NOW, stale_after=ten_minutes, limit=20)
    assert [r.job_id for r in stale] == [2, 6, 1]
    bounded = stale_jobs(news, now=NOW, stale_after=ten_minutes, limit=2)
    assert [r.job_id for r in bounded] == [2, 6]


def test_a_redelivery_pass_is_due_at_once_then_every_interval_overlapping_the_last():
    schedule = RedeliverySchedule(every=timedelta(minutes=5), lookback=timedelta(hours=1))
    assert schedule.due(NOW) == NOW - timedelta(hours=1)
    schedule.done(NOW, NOW - timedelta(hours=1), ok=True)
    assert schedule.due(NOW + timedelta(minutes=4, seconds=59)) is None
    later = NOW + timedelta(minutes=5)
    assert schedule.due(later) == NOW - schedule.overlap


def test_a_failed_redelivery_pass_waits_the_interval_and_then_covers_its_window():
    schedule = RedeliverySchedule(every=timedelta(minutes=5), lookback=timedelta(hours=1))
    since = schedule.due(NOW)
    schedule.done(NOW, since, ok=False)
    assert schedule.due(NOW + timedelta(minutes=1)) is None
    assert schedule.due(NOW + timedelta(minutes=5)) == since, "nothing of the window lost"


def test_redelivery_every_zero_is_off():
    assert RedeliverySchedule(every=timedelta(0)).due(NOW) is None


def test_redelivery_passes_run_on_the_first_cycle_and_never_more_often_than_the_interval():
    clock, github = Moments(), MemoryGitHub()
    rec, _ = catching_up(MemoryFleet(), github, clock, redeliver_every=300.0)
    for _ in range(11):  # a cycle every 30 s for 5 minutes
        rec.cycle()
        clock.advance(seconds=30)
    starts = [now for _, now in github.passes]
    assert starts == [NOW, NOW + timedelta(minutes=5)]
    assert github.passes[0][0] == NOW - timedelta(hours=1), "the first pass looks back an hour"
    assert github.passes[1][0] == NOW - timedelta(minutes=5), "from the last pass, overlapping"


def test_a_stale_queued_job_github_says_completed_no_longer_holds_an_extra_host():
    """A lost `completed`: queued in the intake, done on GitHub. Once looked up, the decision
    drops the host that was kept for it."""
    clock, github = Moments(), MemoryGitHub()
    fleet = MemoryFleet()
    fleet.host(LISTENING)
    fleet.host(LISTENING)
    rec, intake = catching_up(fleet, github, clock, idle=1, stale_after=600.0)
    intake.accept(QueuedDelivery("d-1", _queued(41)))
    github.jobs[41] = _on_github(41, "completed")

    fresh = rec.cycle()  # heard of just now: not looked up, still counts
    assert github.lookups == [] and fresh.decision.queued == 1 and fresh.retired == []

    clock.advance(minutes=11)
    result = rec.cycle()
    assert github.lookups == [41]
    assert result.converged_jobs == [41]
    assert result.decision.queued == 0 and intake.queued() == 0
    assert len(result.retired) == 1 and len(fleet.hosts) == 1


def test_a_stale_job_github_shows_running_makes_its_runner_busy():
    """A lost `in_progress`: the job's runner looks idle unless GitHub is asked."""
    clock, github = Moments(), MemoryGitHub()
    fleet = MemoryFleet()
    running = fleet.host(LISTENING)
    spare = fleet.host(LISTENING)
    rec, intake = catching_up(fleet, github, clock, idle=0, stale_after=600.0)
    intake.accept(QueuedDelivery("d-1", _queued(42)))
    github.jobs[42] = _on_github(42, "in_progress", runner_name=running)
    clock.advance(minutes=11)

    result = rec.cycle()
    assert result.converged_jobs == [42]
    assert intake.busy_runner_names() == {running}
    assert result.retired == [spare]
    assert running in fleet.hosts and running not in fleet.deregistered


def test_a_job_github_no_longer_knows_is_dropped():
    clock, github = Moments(), MemoryGitHub()
    rec, intake = catching_up(MemoryFleet(), github, clock, idle=0, stale_after=600.0)
    intake.accept(QueuedDelivery("d-1", _queued(43)))  # its run was deleted since
    clock.advance(minutes=11)
    result = rec.cycle()
    assert result.dropped_jobs == [43]
    assert intake.records() == []
    assert result.errors == []


def test_a_job_looked_up_is_asked_about_again_only_after_another_stale_period():
    clock, github = Moments(), MemoryGitHub()
    rec, intake = catching_up(MemoryFleet(), github, clock, stale_after=600.0)
    intake.accept(QueuedDelivery("d-1", _queued(44)))
    github.jobs[44] = _on_github(44, "queued")  # really still waiting for a runner
    clock.advance(minutes=11)
    for _ in range(20):  # a cycle every 30 s for the next 10 minutes
        rec.cycle()
        clock.advance(seconds=30)
    assert github.lookups == [44]
    clock.advance(seconds=30)
    rec.cycle()
    assert github.lookups == [44, 44]
    assert intake.queued() == 1


def test_job_lookups_per_cycle_are_bounded():
    clock, github = Moments(), MemoryGitHub()
    rec, intake = catching_up(MemoryFleet(), github, clock, stale_after=600.0, max_job_lookups=3)
    for n in range(10):
        intake.accept(QueuedDelivery(f"d-{n}", _queued(100 + n)))
        github.jobs[100 + n] = _on_github(100 + n, "completed")
    clock.advance(minutes=11)
    first = rec.cycle()
    assert len(github.lookups) == 3 and first.converged_jobs == [100, 101, 102]
    rec.cycle()
    assert len(github.lookups) == 6
    assert intake.queued() == 4


def test_github_trouble_while_catching_up_is_a_cycle_problem_and_the_loop_goes_on():
    clock, github = Moments(), MemoryGitHub()
    fleet = MemoryFleet()
    github.down = True
    rec, intake = catching_up(fleet, github, clock, idle=1, stale_after=600.0)
    intake.accept(QueuedDelivery("d-1", _queued(45)))
    github.jobs[45] = _on_github(45, "completed")
    clock.advance(minutes=11)

    troubled = rec.cycle()
    assert any("redelivery" in e and "502" in e for e in troubled.errors), troubled.errors
    assert any("stale job 45" in e and "503" in e for e in troubled.errors), troubled.errors
    assert troubled.decision is not None and troubled.launched, "the cycle itself went on"

    github.down = False
    clock.advance(seconds=30)
    recovered = rec.cycle()
    assert recovered.converged_jobs == [45], "looked up again at the next cycle"
    assert github.passes == [], "redelivery waits its interval after a failure"
    clock.advance(minutes=5)
    rec.cycle()
    assert github.passes[0][0] == NOW - timedelta(hours=1) + timedelta(minutes=11)


def test_the_serve_loop_survives_github_trouble_and_catches_up_only_with_webhooks():
    github = MemoryGitHub()
    github.down = True
    options = ServeOptions(idle=1, interval=0, max_cycles=3, port=0, webhook_secret="s")
    autoscaler = Autoscaler(MemoryFleet(now=wall_now), options, lambda _m: None, jobs=github)
    autoscaler.start_webhooks = lambda: None  # type: ignore[method-assign]
    autoscaler.run()
    assert autoscaler.cycle_count == 3, "the loop ran on after the problem"
    assert "redelivery" in autoscaler.cycles[0].errors[0]
    assert all(cycle.decision is not None for cycle in autoscaler.cycles)

    quiet = MemoryGitHub()
    once = ServeOptions(idle=1, once=True)
    without = Autoscaler(MemoryFleet(now=wall_now), once, lambda _m: None, jobs=quiet)
    assert without.run() == 0
    assert quiet.passes == [] and without.reconciler.jobs is None


def test_the_serve_loop_keeps_only_the_last_cycles_but_counts_them_all():
    options = ServeOptions(idle=1, interval=0, max_cycles=5)
    autoscaler = Autoscaler(MemoryFleet(now=wall_now), options, lambda _m: None, keep_cycles=2)
    assert autoscaler.run() == 0
    assert autoscaler.cycle_count == 5
    assert len(autoscaler.cycles) == 2
    assert [len(cycle.launched) for cycle in autoscaler.cycles] == [0, 0]


# --- the GitHub side, against the FAKE GitHub ---------------------------------------------

APP_ID = "31337"
REPO = "octo-org/app"


@pytest.fixture
def fake_github(httpserver, app_keys) -> FakeGitHubActions:
    fake = FakeGitHubActions(
        server=httpserver, app_id=APP_ID, public_key=app_keys[1], clock=WallClock()
    )
    fake.install("octo-org", 1)
    fake.install(REPO, 1)
    return fake


@pytest.fixture
def job_source(fake_github, app_keys) -> GitHubJobSource:
    settings = GitHubSettings(
        app_id=APP_ID,
        private_key=app_keys[0].decode(),
        scope=Scope.for_org("octo-org"),
        api_url=fake_github.base_url,
    )
    # No sleeping between retries of a 5xx: the test runs in milliseconds.
    client = GitHubClient(fake_github.base_url, sleep=lambda _s: None, jitter=lambda: 0.0)
    return GitHubJobSource(Registrar(settings, client=client))


def test_failed_deliveries_are_redelivered_once_per_pass_and_succeeded_ones_never(
    fake_github, job_source
):
    clock = Moments()
    ok = fake_github.add_delivery("arrived", 202, NOW - timedelta(minutes=30))
    lost = fake_github.add_delivery("lost", 502, NOW - timedelta(minutes=20))
    fake_github.add_delivery("long-ago", 502, NOW - timedelta(hours=2))  # before the window
    rec, _ = catching_up(MemoryFleet(), job_source, clock, redeliver_every=300.0)

    first = rec.cycle()
    assert fake_github.redelivered == [lost]
    assert first.redelivered == ["lost"] and first.errors == []

    clock.advance(minutes=1)
    assert rec.cycle().redelivered == [], "not due yet"
    # GitHub records the redelivery, which this time arrived.
    fake_github.add_delivery("lost", 202, NOW + timedelta(seconds=5), redelivery=True)
    still_lost = fake_github.add_delivery("lost-later", 0, NOW + timedelta(minutes=2))
    clock.advance(minutes=4)
    later = rec.cycle()
    assert later.redelivered == ["lost-later"]
    assert fake_github.redelivered == [lost, still_lost]
    assert ok not in fake_github.redelivered
    assert len(fake_github.calls("GET", "/app/hook/deliveries")) == 2


def test_stale_jobs_converge_to_what_the_fake_github_says(fake_github, job_source):
    clock = Moments()
    fleet = MemoryFleet()
    runner = fleet.host(LISTENING)
    done = fake_github.new_job(REPO, LABELS, NOW - timedelta(hours=1))
    done.status, done.conclusion, done.completed_at = "completed", "success", NOW
    running = fake_github.new_job(REPO, LABELS, NOW - timedelta(hours=1))
    running.status, running.runner_id, running.runner_name = "in_progress", 7, runner
    running.started_at = NOW - timedelta(minutes=30)
    rec, intake = catching_up(fleet, job_source, clock, idle=0, stale_after=600.0)
    for job_id in (done.id, running.id, 99_999):  # 99_999: its run was deleted
        intake.accept(QueuedDelivery(f"d-{job_id}", _queued(job_id, REPO)))
    clock.advance(minutes=11)

    result = rec.cycle()
    assert result.errors == []
    assert sorted(result.converged_jobs) == [done.id, running.id]
    assert result.dropped_jobs == [99_999]
    states = {r.job_id: r.state for r in intake.records()}
    assert states == {done.id: JobState.COMPLETED, running.id: JobState.IN_PROGRESS}
    assert intake.busy_runner_names() == {runner} and runner in fleet.hosts
    assert fake_github.token_bodies == [{"permissions": {"actions": "read"}}], "read only"


def test_a_fake_github_5xx_is_a_cycle_problem_and_the_next_cycle_catches_up(
    fake_github, job_source
):
    clock = Moments()
    job = fake_github.new_job(REPO, LABELS, NOW - timedelta(hours=1))
    job.status, job.conclusion = "completed", "cancelled"
    lost = fake_github.add_delivery("lost", 502, NOW - timedelta(minutes=20))
    rec, intake = catching_up(MemoryFleet(), job_source, clock, stale_after=600.0)
    intake.accept(QueuedDelivery("d-1", _queued(job.id, REPO)))
    clock.advance(minutes=11)
    fake_github.fail_next(502, times=100, message="server error", path_prefix="/app/hook/")
    fake_github.fail_next(503, times=100, message="server error", path_prefix="/repos/")

    troubled = rec.cycle()
    assert len(troubled.errors) == 2, troubled.errors
    assert "502" in troubled.errors[0] and "503" in troubled.errors[1]
    assert troubled.decision is not None
    assert intake.queued() == 1 and fake_github.redelivered == []

    fake_github.faults.clear()
    clock.advance(minutes=5)
    recovered = rec.cycle()
    assert recovered.errors == []
    assert recovered.redelivered == ["lost"] and fake_github.redelivered == [lost]
    assert recovered.converged_jobs == [job.id] and intake.queued() == 0
